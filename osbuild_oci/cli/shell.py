"""`osbuild-oci shell`: a shell (or one command) in the tree after any stage, or in a failed stage's tree."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..build.options import Options
from .common import app, command


@command(app, "store", "context", "stages_from", "cache_from", "tls_verify", "lock_timeout", "allow_capability",
         "allow_network", "allow_host_network")
def shell(
    options: Options,
    pipeline: Optional[Path] = typer.Argument(None, help="JSON file describing the pipeline", dir_okay=False),
    stage: Optional[str] = typer.Option(None, "--stage", metavar="N|NAME",
                                        help="The tree after stage N (1 is the first, 0 the base) or after the "
                                             "stage named NAME [default: the last stage]"),
    failed: Optional[str] = typer.Option(None, "--failed", metavar="ID",
                                         help="The partial tree a failed stage left (its id is in the error)"),
    command: Optional[str] = typer.Option(None, "--command", "-c", metavar="CMD",
                                          help="Run CMD with /bin/sh -c instead of an interactive shell"),
) -> None:
    """Open a shell in a tree: what is missing up to that stage is built first.

    The shell runs in a throwaway container without network; nothing it does is kept.
    Other commands on the store wait until it ends.
    """
    from ..tools.shell import open_shell
    sys.exit(open_shell(options, pipeline, stage, failed, command))
