"""`osbuild-oci inspect`: what a build of a pipeline would do, where every stage's tree is; builds nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .common import (ALLOW_CAPABILITY, CACHE_FROM, LOCK_TIMEOUT, STAGES_FROM, STORE, TLS_VERIFY, load_pipeline,
                     naming, store_path, where_from)

_PLACES = {"store": "in the store", "remote": "remote", "covered": "not needed (a later tree holds it)",
           "build": "to build"}


def inspect(
    pipeline: Path = typer.Argument(..., help="JSON file describing the pipeline", dir_okay=False),
    store: Optional[Path] = STORE,
    json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout"),
    stages_from: Optional[str] = STAGES_FROM,
    cache_from: List[str] = CACHE_FROM,
    tls_verify: bool = TLS_VERIFY,
    lock_timeout: float = LOCK_TIMEOUT,
    allow_capability: List[str] = ALLOW_CAPABILITY,
) -> None:
    """Show, for every stage, its id, where its tree is (store, --cache-from registry, or to build),
    its image digest, capabilities and network, and for cached trees their layer size and last use.

    Nothing is built, pulled or changed, and no container starts.
    """
    from ..build import planner
    from ..build.overview import describe
    from ..store.objects import open_store
    remote, policy = where_from(stages_from, cache_from, None, tls_verify, allow_capability)
    model = load_pipeline(pipeline)
    with open_store(store_path(store), lock_timeout, look_only=True) as objects:
        with naming(pipeline), objects.taken_back():
            document = describe(planner.plan(model, objects, remote, policy), objects, remote)
    if json_out:
        print(json.dumps(document, indent=2))
    else:
        _print(document)


def _print(document: dict) -> None:
    from ..store.budget import human
    from .store import _local
    print(f"{document['pipeline']}: {len(document['stages'])} stages"
          + (f" on {document['base']}" if document["base"] else ""))
    for row in document["stages"]:
        place = _PLACES[row["tree"]] + (f" {row['registry']}" if row["registry"] else "")
        print(f"[{row['index']}] {row['stage']}  {row['id']}\n    tree: {place}")
        if row["size"] is not None:
            used = _local(row["last_used"]) if row["last_used"] else "never"
            print(f"    layer {human(row['size'])}, created {_local(row['created'])}, last used {used}")
        _print_image(row)
    if document["assembler"]:
        print(f"assembler {document['assembler']['stage']}")
        _print_image(document["assembler"])
    for repo, error in document["unreachable"].items():
        print(f"note: could not ask {repo}: {error}")


def _print_image(row: dict) -> None:
    caps = " ".join(row["capabilities"]) or "none"
    print(f"    image {row['image']} {row['digest'][:19]}\n    network {'yes' if row['network'] else 'no'}, "
          f"capabilities {caps}")
