"""The podman CLI on the user's ordinary storage, where stage images are built and published from.

Builds go through the CLI because it streams their output as it happens (and
builds through the API service left buildah's working containers mounted);
pushes go through it because it reads the containers auth files itself.  skopeo
copies in what no Containerfile can make (an image with no layers).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import EngineError
from .host import private_dir, runtime_dir
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
        """Asked of podman once, then remembered (`podman info` takes 0.5 s); warns when the storage copies
        every layer whole.

        The answer is kept in the user's private runtime directory under a key of everything that
        chooses the storage (storage.conf files, the environment naming them, podman itself), so
        editing storage.conf asks podman again.
        """
        cache = private_dir(runtime_dir() / "default-storage") / f"{_storage_key()}.json"
        try:
            store = json.loads(cache.read_text())
            found = Path(store["graphRoot"]).is_dir()
        except (OSError, ValueError, KeyError, TypeError):
            found = False
        if not found:
            store = json.loads(podman_cli("info", "--format", "json").stdout)["store"]
            store = {key: store.get(key) for key in ("graphRoot", "graphDriverName", "graphOptions")}
            cache.write_text(json.dumps(store))
        opts = {k: str(v) for k, v in (store.get("graphOptions") or {}).items() if isinstance(v, (str, int))}
        if store["graphDriverName"] == "vfs":
            print("warning: podman's storage driver is vfs, which copies every layer whole (about 10x the disk "
                  "and time of overlay); run scripts/setup-host to configure overlay (native, or fuse-overlayfs)",
                  file=sys.stderr)
        return cls(store["graphRoot"], store["graphDriverName"], opts)


def _storage_key() -> str:
    """What decides the user's default storage: storage.conf wherever podman reads it, and podman's binary."""
    home = Path.home()
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    files = [os.environ.get("CONTAINERS_STORAGE_CONF", ""), "/etc/containers/storage.conf",
             "/usr/share/containers/storage.conf", str(config / "containers" / "storage.conf"),
             shutil.which("podman") or ""]
    facts = [os.geteuid(), *(os.environ.get(v, "") for v in ("CONTAINERS_STORAGE_CONF", "STORAGE_DRIVER",
                                                          "STORAGE_OPTS", "XDG_CONFIG_HOME", "XDG_DATA_HOME")),
             str(home)]
    for name in files:
        try:
            info = os.stat(name)
            facts.append(f"{name}:{info.st_mtime_ns}:{info.st_size}")
        except OSError:
            facts.append(f"{name}:-")
    return hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:24]


def build(context: Path, containerfile: Path, tag: str, labels: dict[str, str],
          build_args: dict[str, str] | None = None, verbose: bool = False) -> None:
    """Build an image into the default storage; podman's steps stream to the terminal only when verbose, and
    the last of them are shown when the build fails."""
    args = ["build", "-f", str(containerfile), "-t", tag]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    proc = podman_cli(*args, str(context), capture=not verbose, check=False)
    if proc.returncode != 0:
        tail = "\n".join(f"    {line}" for line in ((proc.stdout or "") + (proc.stderr or "")).splitlines()[-20:])
        raise EngineError(f"podman build of {tag} failed (exit {proc.returncode})" + (f"; its last lines:\n{tail}"
                                                                                     if tail else ""))


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
