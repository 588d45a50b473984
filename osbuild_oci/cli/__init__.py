"""The `osbuild-oci` command line: one module a command or group, each error one line with its exit status.

Each module registers its commands on import; the options they take come from build/options.py.
"""

from __future__ import annotations

import importlib
import signal
import sys

from ..errors import OsbuildOciError
from .common import app

for _module in ("build", "inspect", "shell", "sbom", "boot", "doctor", "stages", "store", "key", "image", "kube"):
    importlib.import_module(f"{__name__}.{_module}")

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
