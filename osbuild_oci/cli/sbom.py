"""`osbuild-oci sbom REF`: print a tree's SPDX document, from the store or from a registry."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .common import STORE, TLS_VERIFY, TRUST_KEY, store_path, where_from

_LOCAL_TREE = re.compile(r"^(?:localhost/osbuild-oci/trees:)?([0-9a-f]{64})$")


def sbom(ref: str = typer.Argument(..., metavar="REF",
                                   help="A tree id, localhost/osbuild-oci/trees:<id>, or a registry reference "
                                        "of a tree pushed with --push or --cache-to"),
         store: Optional[Path] = STORE, tls_verify: bool = TLS_VERIFY, trust_key: List[Path] = TRUST_KEY) -> None:
    """Print the SPDX 2.3 document of a tree's Debian packages; from a registry, with trust keys, only if
    one of them signed both the tree and its SBOM."""
    local = _LOCAL_TREE.match(ref)
    if local is None:
        from ..registry.artifacts import pull_sbom
        remote, _ = where_from(None, [], None, tls_verify, [], trust_key)
        sys.stdout.write(pull_sbom(ref, tls_verify, remote.trust))
        return
    from ..store.objects import open_store
    with open_store(store_path(store)) as objects:
        sys.stdout.write(objects.sbom(local[1]))
