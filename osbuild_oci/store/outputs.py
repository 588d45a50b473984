"""The assembler output cache: what an assembler wrote, kept by the store.

An output's id hashes the final tree id, the assembler image id and its
canonical options, exactly like a stage id, so an unchanged pipeline copies its
output instead of running the assembler again.

A built output is kept as plain files, `STORE/outputs/<id>/` (copied under a
dot name, then renamed, so a half-written copy is never a hit): a copy costs a
fraction of a second where `podman import` of the same 700 MB qcow2 took 9.6 s,
hashing and unpacking it, on every cold build.  Only when an output travels does
it become an image: `--cache-to` imports it as `localhost/osbuild-oci/outputs:<id>`
(one layer, labelled with the id) and pushes it as `REPO:output-<id>`;
`--cache-from` pulls it into that name and refuses one whose label does not
match.  Restoring copies the files (reflinked where the filesystem can) into
`-o`; from an image, it mounts it read-only, without a container or the service.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from ..engine.client import Engine
from ..errors import BuildError
from .objects import ObjectStore, output_ref, pull_checked, push_signed

if TYPE_CHECKING:
    from ..registry.signing import SigningKey

LABEL_OUTPUT = "org.osbuild-oci.output-id"


def remote_tag(repository: str, oid: str) -> str:
    """Where --cache-to puts an output: beside the trees, under a tag no tree id can be."""
    return f"{repository}:output-{oid}"


def has(store: ObjectStore, oid: str) -> bool:
    """Whether the store holds that output: as files, or as an image (checked by label, like a tree)."""
    return store.output_files(oid).is_dir() or _has_image(store.engine, oid)


def fetch(engine: Engine, oid: str, repository: str, tls_verify: bool, trust: tuple = ()) -> bool:
    """Pull the output from a cache repository; False if it is not there, refused if it is not that output
    (or, with trust keys, if none of them signed it: errors.Untrusted)."""
    return pull_checked(engine, remote_tag(repository, oid), "output", LABEL_OUTPUT, oid, output_ref(oid),
                        tls_verify, trust)


def keep(store: ObjectStore, oid: str, directory: Path) -> None:
    """Keep a copy of the files of directory as the output oid; each file is on disk before the copy counts."""
    target, partial = store.output_files(oid), store.partial_output_files(oid)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _copy(directory, partial)
        for path in [*partial.rglob("*"), partial]:
            if path.is_file() or path.is_dir():
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a full disk gets its space back now, not at the next command
        raise
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def push(store: ObjectStore, oid: str, destination: str, tls_verify: bool, sign_key: SigningKey | None) -> None:
    """Push the output to destination, as an image: made from its files the first time it travels."""
    if not _has_image(store.engine, oid):
        _import(store.engine, oid, store.output_files(oid))
    push_signed(store.engine, output_ref(oid), destination, tls_verify, sign_key)


def _has_image(engine: Engine, oid: str) -> bool:
    info = engine.image(output_ref(oid))
    return info is not None and info.labels.get(LABEL_OUTPUT) == oid


def _import(engine: Engine, oid: str, directory: Path) -> None:
    """The files of directory as the output's image: tar streams straight into `podman import`."""
    tar = subprocess.Popen(["tar", "-C", str(directory), "-cf", "-", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    importer = subprocess.Popen(["podman", *engine.podman_args(), "import", "--quiet", "--change",
                                 f"LABEL {LABEL_OUTPUT}={oid}", "-", output_ref(oid)],
                                stdin=tar.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env=engine.podman_env())
    tar.stdout.close()  # podman's alone now: if it dies, tar gets SIGPIPE instead of blocking
    _, err = importer.communicate()
    if tar.wait() != 0 or importer.returncode != 0:
        raise BuildError(f"could not make an image of the assembler's output {directory}: "
                         f"{err.strip() or f'tar exit status {tar.returncode}'}")


def _copy(source: Path, destination: Path) -> None:
    """Copy the files of source into destination, reflinked where the filesystem can."""
    proc = subprocess.run(["cp", "-R", "--reflink=auto", "--preserve=mode,timestamps", "-T", str(source),
                           str(destination)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"could not copy the assembler's output from {source} to {destination}: "
                         f"{proc.stderr.strip()}")


def restore(store: ObjectStore, oid: str, directory: Path) -> None:
    """Copy the output's files into directory: from its kept files, else from its image mounted read-only.

    Rootless, an image's mount exists only in podman's user namespace, so that copy runs there
    (its root is the user, so the files are the user's).
    """
    if store.output_files(oid).is_dir():
        _copy(store.output_files(oid), directory)
        return
    engine = store.engine
    podman = ["podman", *engine.podman_args()]
    script = ('set -e; src=$("$@" image mount "$REF"); trap \'"$@" image unmount "$REF" >/dev/null\' EXIT; '
              'find "$src" -mindepth 1 -maxdepth 1 -exec cp -R --reflink=auto --preserve=mode,timestamps -t "$DEST" {} +')
    proc = subprocess.run([*engine.in_userns(), "sh", "-c", script, "sh", *podman], capture_output=True, text=True,
                          env={**os.environ, "REF": output_ref(oid), "DEST": str(directory.resolve())})
    if proc.returncode != 0:
        raise BuildError(f"could not copy the cached output {output_ref(oid)} into {directory}: "
                         f"{proc.stderr.strip()}")
