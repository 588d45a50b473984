"""`osbuild-oci sbom REF`: print a tree's SPDX document, from the store or from a registry."""

from __future__ import annotations

import re
import sys

import typer

from ..build.options import Options
from .common import app, command

_LOCAL_TREE = re.compile(r"^(?:localhost/osbuild-oci/trees:)?([0-9a-f]{64})$")


@command(app, "store", "tls_verify", "trust_keys")
def sbom(options: Options, ref: str = typer.Argument(..., metavar="REF", help="A tree id, localhost/osbuild-oci/"
                                                     "trees:<id>, or a registry reference of a tree pushed with "
                                                     "--push or --cache-to")) -> None:
    """Print the SPDX 2.3 document of a tree's Debian packages; from a registry, with trust keys, only if one of
    them signed both the tree and its SBOM."""
    local = _LOCAL_TREE.match(ref)
    if local is None:
        from ..build.options import Remote
        from ..registry.artifacts import pull_sbom
        sys.stdout.write(pull_sbom(ref, options.tls_verify, Remote.of(options).trust))
        return
    from ..store import sboms
    from ..store.lock import open_store
    with open_store(options.store) as store:
        sys.stdout.write(sboms.read(store, local[1]))
