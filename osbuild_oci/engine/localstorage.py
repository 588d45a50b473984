"""The stage images' storage: osbuild-oci's own containers-storage, overlay whatever the user's podman default is.

podman's default for a user without a storage.conf is vfs, which copies every
layer whole (about 10x the disk and time); osbuild-oci does not depend on that
setting: its stage images live in `$XDG_DATA_HOME/osbuild-oci/storage`
(`~/.local/share/...`), on native overlay where the kernel lets this user mount
it, else through fuse-overlayfs, else not at all (one line saying what to
install).  Every store sees this storage read-only as its additional image
store, so a new store neither rebuilds nor copies them.

Builds go through the CLI because it streams their output as it happens (and
builds through the API service left buildah's working containers mounted);
pushes go through it because it writes the digest it pushed.  skopeo copies in
what no Containerfile can make (an image with no layers).

podman 4.3's containers-storage takes an additional image store's locks in the
opposite order of a write in that store (a reader: images, then layers; a commit
or a removal: layers, then images), and a build reading the stage images beside
a `podman rmi` of one of them hung both for good.  So a command on a store holds
the stage storage in use (`in_use`), and whoever writes it here waits until no
such command runs (`changing`); a waiting writer holds back new commands, so it
is never starved.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from ..errors import EngineError
from .host import native_overlay, runtime_dir
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
class StageStorage:
    """Where stage images are built, and what a podman command passes to reach them."""

    graph_root: Path
    run_root: Path
    mount_program: str | None

    @classmethod
    @functools.cache
    def get(cls) -> "StageStorage":
        root = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "osbuild-oci" / "storage"
        native = native_overlay(root)
        mount_program = None if native else shutil.which("fuse-overlayfs")
        if not native and mount_program is None:
            raise EngineError(f"this user cannot mount overlay at {root} (a kernel before 5.11, or a directory on "
                              "an overlay such as a container's own root), and fuse-overlayfs is not installed: "
                              "install fuse-overlayfs, or set XDG_DATA_HOME to a directory on another filesystem "
                              "(a volume)")
        return cls(root, runtime_dir() / "stages", mount_program)

    def options(self) -> list[str]:
        """The storage driver's options, as podman's --storage-opt takes them; a store's podman takes them too.
        skip_mount_home: podman 4.3 bind-mounts an overlay storage's folder onto itself while a command runs and
        detaches it when the command ends, and a build whose layer path crossed that folder just then had its
        overlay mount refused with EINVAL (record 042)."""
        return ["overlay.skip_mount_home=true", *([f"overlay.mount_program={self.mount_program}"]
                                                  if self.mount_program else [])]

    def args(self) -> list[str]:
        """podman's global flags for this storage (`osbuild-oci stages podman-args`)."""
        return ["--root", str(self.graph_root), "--runroot", str(self.run_root), "--storage-driver", "overlay",
                *(arg for option in self.options() for arg in ("--storage-opt", option))]

    def transport(self, ref: str) -> str:
        """skopeo's name of ref in this storage."""
        return f"containers-storage:[overlay@{self.graph_root}+{self.run_root}:{','.join(self.options())}]{ref}"


# The lock this process holds on the stage storage: ("shared" or "exclusive", its open file), innermost last.
_held: list[tuple[str, IO]] = []


def _lock_file(name: str) -> IO:
    folder = StageStorage.get().graph_root.parent
    folder.mkdir(parents=True, exist_ok=True)
    return open(folder / f"storage.{name}.lock", "a")


@contextlib.contextmanager
def _holding(kind: str, lock: IO) -> Iterator[None]:
    _held.append((kind, lock))
    try:
        yield
    finally:
        _held.pop()


@contextlib.contextmanager
def in_use() -> Iterator[None]:
    """Held while a command works on a store, whose podman reads the stage images: no writer runs meanwhile."""
    if _held:
        yield
        return
    with _lock_file("intent") as intent, _lock_file("use") as use:
        fcntl.flock(intent, fcntl.LOCK_SH)  # waits while a writer waits or writes
        fcntl.flock(use, fcntl.LOCK_SH)
        fcntl.flock(intent, fcntl.LOCK_UN)
        with _holding("shared", use):
            yield


@contextlib.contextmanager
def changing() -> Iterator[None]:
    """Held while this process writes the stage storage: waits, saying so, until no other command uses it.
    Within a command that holds it in use (a build adopting a local image), its own hold becomes exclusive."""
    if _held and _held[-1][0] == "exclusive":
        yield
        return
    own = _held[-1][1] if _held else None
    if own is not None:  # two commands turning exclusive at once must not each wait for the other's hold
        fcntl.flock(own, fcntl.LOCK_UN)
    with _lock_file("intent") as intent, (contextlib.nullcontext(own) if own else _lock_file("use")) as use:
        fcntl.flock(intent, fcntl.LOCK_EX)
        try:
            fcntl.flock(use, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("waiting for the osbuild-oci commands that use the stage images to end", file=sys.stderr,
                  flush=True)
            fcntl.flock(use, fcntl.LOCK_EX)
        fcntl.flock(intent, fcntl.LOCK_UN)
        try:
            with _holding("exclusive", use):
                yield
        finally:
            fcntl.flock(use, fcntl.LOCK_SH if own else fcntl.LOCK_UN)


def stage_podman(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    """The podman CLI on the stage images' storage."""
    return podman_cli(*StageStorage.get().args(), *args, check=check, capture=capture)


def build(context: Path, containerfile: Path, tag: str, labels: dict[str, str],
          build_args: dict[str, str] | None = None, verbose: bool = False, user_storage: bool = False) -> None:
    """Build an image into the stage images' storage (or, user_storage, the user's own podman storage, for an
    image the user runs with plain podman); podman's steps stream to the terminal only when verbose, and the last
    of them are shown when the build fails."""
    args = ["build", "-f", str(containerfile), "-t", tag]
    for key, value in labels.items():
        args += ["--label", f"{key}={value}"]
    for key, value in (build_args or {}).items():
        args += ["--build-arg", f"{key}={value}"]
    storage = [] if user_storage else StageStorage.get().args()
    with contextlib.nullcontext() if user_storage else changing():
        if verbose:  # the steps go to stderr: stdout says what was built, one line an image
            proc = subprocess.run(["podman", *storage, *args, str(context)], stdout=sys.stderr)
        else:
            proc = podman_cli(*storage, *args, str(context), check=False)
    if proc.returncode != 0:
        tail = "\n".join(f"    {line}" for line in ((proc.stdout or "") + (proc.stderr or "")).splitlines()[-20:])
        raise EngineError(f"podman build of {tag} failed (exit {proc.returncode})" + (f"; its last lines:\n{tail}"
                                                                                     if tail else ""))


def import_tarball(tarball: Path, tag: str) -> None:
    with changing():
        stage_podman("import", str(tarball), tag)


def to_user_storage(ref: str) -> None:
    """Copy a stage storage's image into the user's own podman storage (to build FROM it there)."""
    copy(StageStorage.get().transport(ref), f"containers-storage:{ref}")


def copy(source: str, destination: str) -> None:
    """skopeo copy between two of its transports (`oci:DIR`, `containers-storage:...`)."""
    proc = subprocess.run(["skopeo", "copy", "--quiet", source, destination], capture_output=True, text=True)
    if proc.returncode != 0:
        raise EngineError(f"skopeo could not copy {source} to {destination}: {proc.stderr.strip()}")


def copy_in(source: str, tag: str) -> None:
    """Copy an image from a skopeo transport (e.g. `oci:DIR`) into the stage images' storage."""
    with changing():
        copy(source, StageStorage.get().transport(tag))


def adopt_user_image(ref: str, known: ImageInfo | None) -> bool:
    """Copy ref from the user's own podman storage (`podman images`: what `podman build` made) into the stage
    storage, where every store sees it, unless the image known under ref is already the same; whether it
    copied.  The user's storage is read, never changed, whatever its driver (skopeo reads vfs too)."""
    proc = podman_cli("image", "inspect", "--format", "{{.Id}}", "--", ref, check=False)
    if proc.returncode != 0 or (known is not None and known.id == proc.stdout.strip()):
        return False
    copy_in(f"containers-storage:{ref}", ref)
    return True


def push(ref: str, destination: str, tls_verify: bool) -> str:
    """Push with the CLI (which reads the auth files); return the manifest digest."""
    with tempfile.NamedTemporaryFile("r") as digest:
        stage_podman("push", f"--tls-verify={str(tls_verify).lower()}", "--digestfile", digest.name, ref,
                   f"docker://{destination}")
        return digest.read().strip()


def image(ref: str) -> ImageInfo | None:
    proc = stage_podman("image", "inspect", "--", ref, check=False)
    if proc.returncode != 0:
        return None
    return ImageInfo.from_inspect(json.loads(proc.stdout)[0])
