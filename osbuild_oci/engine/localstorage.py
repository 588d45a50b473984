"""The podman CLI on the user's ordinary storage, where stage images are built and published from.

Builds go through the CLI because it streams their output as it happens (and
builds through the API service left buildah's working containers mounted);
pushes go through it because it reads the containers auth files itself.  skopeo
copies in what no Containerfile can make (an image with no layers).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import EngineError
from .model import ImageInfo


def podman_cli(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    if shutil.which("podman") is None:
        raise EngineError("podman is not installed; run scripts/setup-host (or apt-get install podman)")
    proc = subprocess.run(["podman", *args], text=True, capture_output=capture)
    if check and proc.returncode != 0:
        detail = (proc.stderr or "").strip().splitlines()[-1:] if capture else []
        raise EngineError(f"podman {args[0]} failed: {' '.join(detail) or f'exit {proc.returncode}'}")
    return proc


@dataclass(frozen=True)
class DefaultStorage:
    """The user's ordinary podman storage, where stage images are built."""

    graph_root: str
    driver: str
    driver_options: dict[str, str]

    @classmethod
    @functools.cache
    def detect(cls) -> "DefaultStorage":
        """Asked of podman once per command; warns once when the storage copies every layer whole."""
        info = json.loads(podman_cli("info", "--format", "json").stdout)
        store = info["store"]
        opts = {k: str(v) for k, v in (store.get("graphOptions") or {}).items() if isinstance(v, (str, int))}
        if store["graphDriverName"] == "vfs":
            print("warning: podman's storage driver is vfs, which copies every layer whole (about 10x the disk "
                  "and time of overlay); run scripts/setup-host to configure overlay (native, or fuse-overlayfs)",
                  file=sys.stderr)
        return cls(store["graphRoot"], store["graphDriverName"], opts)


def build(context: Path, containerfile: Path, tag: str, labels: dict[str, str],
          build_args: dict[str, str] | None = None) -> None:
    """Build an image into the default storage, streaming podman's output to the terminal."""
    args = ["build", "-f", str(containerfile), "-t", tag]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    podman_cli(*args, str(context), capture=False)


def import_tarball(tarball: Path, tag: str) -> None:
    podman_cli("import", str(tarball), tag)


def copy_in(source: str, tag: str) -> None:
    """Copy an image from a skopeo transport (e.g. `oci:DIR`) into the default storage."""
    proc = subprocess.run(["skopeo", "copy", "--quiet", source, f"containers-storage:{tag}"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise EngineError(f"skopeo could not copy {source} into the podman storage: {proc.stderr.strip()}")


def push(ref: str, destination: str, tls_verify: bool) -> str:
    """Push with the CLI (which reads the auth files); return the manifest digest."""
    with tempfile.NamedTemporaryFile("r") as digest:
        podman_cli("push", f"--tls-verify={str(tls_verify).lower()}", "--digestfile", digest.name, ref,
                   f"docker://{destination}")
        return digest.read().strip()


def image(ref: str) -> ImageInfo | None:
    proc = podman_cli("image", "inspect", ref, check=False)
    if proc.returncode != 0:
        return None
    return ImageInfo.from_inspect(json.loads(proc.stdout)[0])
