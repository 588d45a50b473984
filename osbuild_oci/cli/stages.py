"""`osbuild-oci stages`: build, list, show and publish stage and assembler images."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UserError
from .common import SIGN_KEY, SIGN_PASSPHRASE, SOURCE, TLS_VERIFY, signing_key

stages_app = typer.Typer(help="Build, list, inspect and publish stage and assembler images.", no_args_is_help=True, rich_markup_mode=None)


@stages_app.command("build")
def stages_build(
    only: List[str] = typer.Option([], "--only", help="Build only this stage or assembler (repeatable)"),
    source: Path = SOURCE,
) -> None:
    """Build every stage and assembler folder into a local image; unchanged ones are kept."""
    from ..stages import build as stagebuild
    for src, built in stagebuild.build_all(source, only or None, lambda msg: print(msg, file=sys.stderr)):
        print(f"{src.ref}  {'built' if built else 'up to date'}")


@stages_app.command("push")
def stages_push(
    namespace: str = typer.Argument(..., metavar="REGISTRY/NAMESPACE"),
    tls_verify: bool = TLS_VERIFY,
    source: Path = SOURCE,
    sign_key: Optional[Path] = SIGN_KEY,
    sign_passphrase_file: Optional[Path] = SIGN_PASSPHRASE,
) -> None:
    """Publish every built stage and assembler image as REGISTRY/NAMESPACE/NAME, printing pinned references."""
    from ..registry import references as registry, signing
    from ..stages import build as stagebuild
    from ..engine import localstorage
    from ..stages.image import local_ref
    if not registry.is_remote(namespace):
        raise UserError(f"{namespace} names no registry; give REGISTRY/NAMESPACE such as registry.example.com/osbuild")
    key = signing_key(sign_key, sign_passphrase_file)
    images = {src: localstorage.image(src.ref) for src in stagebuild.find_sources(source)}
    for src, info in images.items():
        if info is None:
            raise UserError(f"{src.ref} is not built; run `osbuild-oci stages build` first")
    for src, info in images.items():
        destination = local_ref(src.name, namespace)
        digest = localstorage.push(src.ref, destination, tls_verify)
        if key is not None:
            signing.sign(destination, info.id, key, tls_verify)
        print(f"{destination.rsplit(':', 1)[0]}@{digest}")


@stages_app.command("list")
def stages_list(json_out: bool = typer.Option(False, "--json", help="JSON output"), source: Path = SOURCE) -> None:
    """List the stage and assembler images of the source tree, and whether they are built."""
    from rich.console import Console
    from rich.table import Table

    from ..stages import build as stagebuild
    from ..engine import localstorage
    from ..stages.image import LABEL_CAPABILITIES, LABEL_KIND, LABEL_NETWORK
    rows = []
    for src in stagebuild.find_sources(source):
        info = localstorage.image(src.ref)
        labels = info.labels if info else {}
        rows.append({"name": src.name, "image": src.ref, "id": info.id if info else None,
                     "kind": labels.get(LABEL_KIND), "network": labels.get(LABEL_NETWORK, "false") == "true",
                     "capabilities": labels.get(LABEL_CAPABILITIES, "").split()})
    if json_out:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "kind", "image id", "network", "capabilities")
    for r in rows:
        table.add_row(r["name"], r["kind"] or "-", (r["id"] or "not built")[:12], "yes" if r["network"] else "no",
                      " ".join(r["capabilities"]))
    Console(highlight=False).print(table)


@stages_app.command("show")
def stages_show(name: str = typer.Argument(..., metavar="NAME")) -> None:
    """Print the options schema a stage image carries."""
    from ..engine import localstorage
    from ..stages.image import LABEL_SCHEMA, local_ref
    info = localstorage.image(local_ref(name))
    if info is None or LABEL_SCHEMA not in info.labels:
        raise UserError(f"no stage image {local_ref(name)}; run `osbuild-oci stages list`")
    print(json.dumps(json.loads(info.labels[LABEL_SCHEMA]), indent=2))
