"""The `osbuild-oci` command line: one module a command group, errors as one line and their exit status.

Command modules import what a command needs inside the command, so `--help`
and quick commands do not pay for podman-py, jsonschema and rich.
"""

from __future__ import annotations

import signal
import sys

from ..errors import OsbuildOciError
from .boot import boot
from .build import build
from .common import app
from .doctor import doctor
from .image import image_app
from .key import key_app
from .kube import kube_app
from .inspect import inspect
from .shell import shell
from .sbom import sbom
from .stages import stages_app
from .store import store_app

app.command()(build)
app.command()(shell)
app.command()(inspect)
app.command()(boot)
app.command()(sbom)
app.command()(doctor)
app.add_typer(stages_app, name="stages")
app.add_typer(store_app, name="store")
app.add_typer(key_app, name="key")
app.add_typer(image_app, name="image")
app.add_typer(kube_app, name="kube")

# podman and skopeo spell it --tls-verify=false; users type it from habit.
_TLS_SPELLINGS = {"--tls-verify=false": "--no-tls-verify", "--tls-verify=true": "--tls-verify"}


def main() -> None:
    # SIGTERM, and SIGHUP of a closed terminal, unwind like an exception: running containers and
    # uncommitted trees are removed and the store's podman service stops.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, lambda *_: sys.exit(129))
    try:
        app(args=[_TLS_SPELLINGS.get(arg.lower(), arg) for arg in sys.argv[1:]], prog_name="osbuild-oci")
    except OsbuildOciError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
