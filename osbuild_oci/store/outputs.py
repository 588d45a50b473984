"""The assembler output cache: what an assembler wrote, kept by the store.

An output's id hashes the final tree id, the assembler image id and its
canonical options, exactly like a stage id, so an unchanged pipeline copies its
output instead of running the assembler again.

A built output is kept as plain files, `STORE/outputs/<id>/`: the assembler
wrote them into a private dot-named directory of the store, which is checked
(store/files.py), made durable and renamed, so a half-written output is never a
hit and keeping costs no copy.  `podman import` of the same 700 MB qcow2 took
9.6 s, hashing and unpacking it, on every cold build.  Only when an output
travels does it become an image: `--cache-to` imports it as
`localhost/osbuild-oci/outputs:<id>` (one layer, labelled with the id) and pushes
it as `REPO:output-<id>`; `--cache-from` pulls it into that name and refuses one
whose label does not match.  Restoring copies the files into `-o` the way
store/files.py copies anything it did not write itself; from an image, it
mounts it read-only, without a container or the service.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import BuildError
from .objects import ObjectStore
from .refs import LABEL_OUTPUT, OUTPUTS, output_ref
from .files import copy_out, invoking_user
from .transfer import pull_checked

if TYPE_CHECKING:
    from ..engine.model import ImageInfo

FILES = "outputs"


def files(store: ObjectStore, oid: str) -> Path:
    """Where a built output's files are kept."""
    return store.path / FILES / oid


def _partial(store: ObjectStore, oid: str) -> Path:
    """Where they are copied first: a dot name, never a hit, and what `remove_partial` sweeps."""
    return store.path / FILES / f".{oid}"


def remove(store: ObjectStore, oid: str) -> None:
    """Remove a cached output in both its forms: its kept files and its image."""
    shutil.rmtree(files(store, oid), ignore_errors=True)
    store.engine.remove_image(output_ref(oid))


def remove_partial(store: ObjectStore) -> None:
    """Remove the output copies a killed command left half written (under the lock, nobody writes one)."""
    directory = store.path / FILES
    for partial in directory.glob(".*") if directory.is_dir() else ():
        shutil.rmtree(partial, ignore_errors=True)


def kept_sizes(store: ObjectStore) -> dict[str, int]:
    """Output id -> bytes its kept files take; read from the directory alone, without podman."""
    directory = store.path / FILES
    return {path.name: _disk_bytes(path) for path in directory.iterdir()
            if path.is_dir() and not path.name.startswith(".")} if directory.is_dir() else {}


def _disk_bytes(path: Path) -> int:
    """Bytes the files under path take on disk (a sparse disk image counts what it holds)."""
    return sum(entry.stat().st_blocks * 512 for entry in path.rglob("*") if entry.is_file())


def listed(store: ObjectStore) -> "list[tuple[str, ImageInfo | None, int]]":
    """(output id, its image or None, bytes its kept files take) of every cached assembler output."""
    prefix = output_ref("")
    images = {name[len(prefix):]: info for info in store.engine.images(OUTPUTS)
              for name in info.names if name.startswith(prefix)}
    kept = kept_sizes(store)
    return [(oid, images.get(oid), kept.get(oid, 0)) for oid in sorted(images.keys() | kept.keys())]


def remote_tag(repository: str, oid: str) -> str:
    """Where --cache-to puts an output: beside the trees, under a tag no tree id can be."""
    return f"{repository}:output-{oid}"


def has(store: ObjectStore, oid: str) -> bool:
    """Whether the store holds that output: as files, or as an image (checked by label, like a tree)."""
    return files(store, oid).is_dir() or _has_image(store, oid)


def fetch(store: ObjectStore, oid: str, repository: str, tls_verify: bool, trust: tuple = ()) -> bool:
    """Pull the output from a cache repository; False if it is not there, refused if it is not that output
    (or, with trust keys, if none of them signed it: errors.Untrusted)."""
    return pull_checked(store, remote_tag(repository, oid), "output", LABEL_OUTPUT, oid, output_ref(oid),
                        tls_verify, trust)


def private_dir(store: ObjectStore) -> Path:
    """A directory of the store's own for an assembler to write into: a dot name (never a hit, swept by the
    next command if this one is killed), 0700, on the store's filesystem so keeping it is a rename."""
    (store.path / FILES).mkdir(exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".assembling-", dir=store.path / FILES))


def keep(store: ObjectStore, oid: str, private: Path) -> Path:
    """Keep a sanitized private output directory (store/files.py) as the output oid; where it is now."""
    target = files(store, oid)
    shutil.rmtree(target, ignore_errors=True)
    private.rename(target)
    return target


def image(store: ObjectStore, oid: str) -> str:
    """The output as an image of the store, to push: made from its files the first time it travels."""
    if not _has_image(store, oid):
        _import(store, oid, files(store, oid))
    return output_ref(oid)


def _has_image(store: ObjectStore, oid: str) -> bool:
    info = store.image(output_ref(oid))
    return info is not None and info.labels.get(LABEL_OUTPUT) == oid


def _import(store: ObjectStore, oid: str, directory: Path) -> None:
    """The files of directory as the output's image: tar streams straight into `podman import`."""
    tar = subprocess.Popen(["tar", "-C", str(directory), "-cf", "-", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    importer = subprocess.Popen(["podman", *store.podman_args(), "import", "--quiet", "--change",
                                 f"LABEL {LABEL_OUTPUT}={oid}", "-", output_ref(oid)],
                                stdin=tar.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env=store.engine.podman_env())
    tar.stdout.close()  # podman's alone now: if it dies, tar gets SIGPIPE instead of blocking
    _, err = importer.communicate()
    if tar.wait() != 0 or importer.returncode != 0:
        raise BuildError(f"could not make an image of the assembler's output {directory}: "
                         f"{err.strip() or f'tar exit status {tar.returncode}'}")


def restore(store: ObjectStore, oid: str, target_fd: int) -> list[str]:
    """Copy the output's files into the directory target_fd (store/files.py): from its kept files, else from its
    image (pulled from a cache registry), which become its kept files first.

    Rootless, an image's mount exists only in podman's user namespace, so that copy runs there (its root is
    the user, so the files are the user's).
    """
    if not files(store, oid).is_dir():
        partial = _partial(store, oid)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        podman = ["podman", *store.podman_args()]
        script = ('set -e; src=$("$@" image mount "$REF"); trap \'"$@" image unmount "$REF" >/dev/null\' EXIT; '
                  '"$PYTHON" -m osbuild_oci.store.files "$src" "$DEST"')
        proc = subprocess.run([*store.engine.in_userns(), "sh", "-c", script, "sh", *podman], capture_output=True,
                              text=True, env={**os.environ, "REF": output_ref(oid), "DEST": str(partial),
                                              "PYTHON": sys.executable})
        if proc.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise BuildError(f"could not copy the cached output {output_ref(oid)}: {proc.stderr.strip()}")
        partial.rename(files(store, oid))
    return copy_out(files(store, oid), target_fd, invoking_user())
