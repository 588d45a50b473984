"""`osbuild-oci inspect`: what a build of a pipeline would do, where every stage's tree is; builds nothing."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..build.options import Options
from .common import app, command


@command(app, "store", "json", "context", "stages_from", "cache_from", "tls_verify", "lock_timeout", "allow_capability",
         "allow_network", "allow_host_network")
def inspect(options: Options, pipeline: Path = typer.Argument(..., dir_okay=False,
                                                              help="JSON file describing the pipeline")) -> None:
    """Show, for every stage, its id, where its tree is (store, --cache-from registry, or to build),
    its image digest, capabilities and network, and for cached trees their layer size and last use.

    Nothing is built, pulled or changed, and no container starts.
    """
    from ..build.overview import describe, render
    document = describe(options, pipeline)
    print(json.dumps(document, indent=2) if options.json else render(document))
