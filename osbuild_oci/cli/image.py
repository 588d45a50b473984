"""`osbuild-oci image`: the image of osbuild-oci itself, for CI and Kubernetes (docs/ci.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from .common import app, command, group

image_app = group("Build the osbuild-oci image, for CI runners and Kubernetes Jobs.")
app.add_typer(image_app, name="image")


def _log(message: str) -> None:
    print(message, file=sys.stderr)


@command(image_app, name="build")
def image_build(
    tag: str = typer.Option("localhost/osbuild-oci:latest", "--tag", help="Name of the image"),
    with_stages: bool = typer.Option(False, "--with-stages",
                                     help="Bake the stage and assembler images in (else builds take them "
                                          "from a registry with --stages-from)"),
    source: Path = typer.Option(None, "--source", file_okay=False,
                                help="Checkout to build from [default: the one this osbuild-oci runs from]"),
) -> None:
    """Build the osbuild-oci image from a checkout: Debian minbase, rootless podman for uid 1000, this package."""
    from ..tools import ciimage
    ciimage.build(tag, with_stages, source or ciimage.CHECKOUT, _log)
    print(tag)


@command(image_app, name="prepare")
def image_prepare() -> None:
    """In the image, at start: create the empty images and copy in the baked stage images (the entrypoint runs it)."""
    from ..tools import ciimage
    ciimage.prepare(_log)
