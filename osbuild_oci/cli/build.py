"""`osbuild-oci build`: plan a pipeline, run what the store lacks, assemble, publish."""

from __future__ import annotations

from pathlib import Path

import typer

from ..build.options import Options
from .common import app, command

BUILD_OPTIONS = ("output", "store", "json", "tags", "pushes", "stages_from", "cache_from", "cache_to", "tls_verify",
                 "lock_timeout", "keep_failed", "refresh", "context", "package_cache", "allow_capability",
                 "allow_network", "allow_host_network", "trust_keys",
                 "sign_key", "sign_passphrase_file", "lock", "locked", "secrets", "store_max_size", "report", "junit")


@command(app, *BUILD_OPTIONS)
def build(options: Options, pipeline: Path = typer.Argument(..., metavar="PIPELINE", dir_okay=False,
                                                            help="JSON file describing the pipeline")) -> None:
    """Build PIPELINE: run the stages the store lacks, then the assembler into OUTPUT."""
    from ..build.build import run_build
    run_build(options, pipeline)
