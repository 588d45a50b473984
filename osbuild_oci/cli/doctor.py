"""`osbuild-oci doctor`: whether stage containers can run here, and which privilege to add if not."""

from __future__ import annotations

import sys

import typer

from .common import app, command


@command(app)
def doctor(quiet: bool = typer.Option(False, "--quiet", help="Print nothing when all is well")) -> None:
    """Check what rootless stage containers need (user namespaces, unmasked /proc, newuidmap's capabilities,
    subordinate ids, no no_new_privs, SETUID/SETGID, overlay storage); exit 1 naming each missing one and its fix."""
    from ..engine import doctor as checks
    found = checks.findings()
    for finding in found:
        print(f"error: {finding}", file=sys.stderr)
    if found:
        raise typer.Exit(1)
    if not quiet:
        print("ok: stage containers can run here")
