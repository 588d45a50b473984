"""`osbuild-oci stages`: build, list, show and publish stage and assembler images."""

from __future__ import annotations

import json
from typing import List

import typer

from ..build.options import Options
from ..errors import UserError
from .common import app, command, group

stages_app = group("Build, list, inspect and publish stage and assembler images.")
app.add_typer(stages_app, name="stages")


@command(stages_app, "source", name="build")
def stages_build(options: Options,
                 only: List[str] = typer.Option([], "--only", metavar="NAME",
                                                help="Build only this stage or assembler (repeatable)"),
                 verbose: bool = typer.Option(False, "--verbose", "-v", help="Show podman's build steps")) -> None:
    """Build every stage and assembler folder into a local image; unchanged ones are kept.  One line an image."""
    import sys

    from ..stages import build
    for src, built in build.build_all(options.source, only or None, lambda msg: print(msg, file=sys.stderr),
                                      verbose):
        print(f"{src.ref}  {'built' if built else 'up to date'}")


@command(stages_app, "tls_verify", "source", "sign_key", "sign_passphrase_file", name="push")
def stages_push(options: Options, namespace: str = typer.Argument(..., metavar="REGISTRY/NAMESPACE")) -> None:
    """Publish every built stage and assembler image as REGISTRY/NAMESPACE/NAME, printing pinned references."""
    from ..build.publish import publish
    from ..engine import localstorage
    from ..registry import references
    from ..stages import build
    from ..stages.image import local_ref
    if not references.is_remote(namespace):
        raise UserError(f"{namespace} names no registry; give REGISTRY/NAMESPACE such as registry.example.com/osbuild")
    key = options.signing_key()
    images = {src: localstorage.image(src.ref) for src in build.find_sources(options.source)}
    missing = [src.ref for src, info in images.items() if info is None]
    if missing:
        raise UserError(f"{missing[0]} is not built; run `osbuild-oci stages build` first")
    for src in images:
        destination = local_ref(src.name, namespace)
        digest = publish(lambda: localstorage.push(src.ref, destination, options.tls_verify), destination,
                         options.tls_verify, key)
        print(f"{destination.rsplit(':', 1)[0]}@{digest}")


@command(stages_app, "json", "source", name="list")
def stages_list(options: Options) -> None:
    """List the stage and assembler images of the source tree, and whether they are built."""
    from rich.console import Console
    from rich.table import Table

    from ..stages import build
    rows = build.describe(options.source)
    if options.json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "kind", "image id", "network", "capabilities")
    for r in rows:
        table.add_row(r["name"], r["kind"] or "-", (r["id"] or "not built")[:12], "yes" if r["network"] else "no",
                      " ".join(r["capabilities"]))
    Console(highlight=False).print(table)


@command(stages_app, name="show")
def stages_show(name: str = typer.Argument(..., metavar="NAME")) -> None:
    """Print the options schema a stage image carries."""
    from ..engine import localstorage
    from ..stages.image import LABEL_SCHEMA, local_ref
    info = localstorage.image(local_ref(name))
    if info is None or LABEL_SCHEMA not in info.labels:
        raise UserError(f"no stage image {local_ref(name)}; run `osbuild-oci stages list`")
    print(json.dumps(json.loads(info.labels[LABEL_SCHEMA]), indent=2))


@command(stages_app, name="podman-args")
def stages_podman_args() -> None:
    """Print the podman flags that reach the stage images' own storage, for `podman $(osbuild-oci stages
    podman-args) images`."""
    import shlex

    from ..engine.localstorage import StageStorage
    print(shlex.join(StageStorage.get().args()))
