"""The assembler output cache: what an assembler wrote, kept as an image in the store.

An output's id hashes the final tree id, the assembler image id and its
canonical options, exactly like a stage id, so an unchanged pipeline copies its
output instead of running the assembler again (11 s for a 700 MB qcow2).  The
files are one layer of `localhost/osbuild-oci/outputs:<id>`, labelled with the
id, so they go through a registry like trees (`--cache-to` pushes
`REPO:output-<id>`, `--cache-from` pulls it, and a pulled output whose label
does not match is refused).  Keeping streams the files into `podman import`
(one write); restoring mounts the image read-only and copies (reflinks where
the filesystem can) its files into `-o`, without a container or the service.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

from .engine.client import Engine
from .errors import BuildError
from .store import output_ref, pull_checked

LABEL_OUTPUT = "org.osbuild-oci.output-id"


def output_id(tree: str | None, image_id: str, options: dict) -> str:
    """The cache key: the tree the assembler reads, its image digest, its canonical options."""
    doc = {"tree": tree or "", "assembler": image_id, "options": options}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def remote_tag(repository: str, oid: str) -> str:
    """Where --cache-to puts an output: beside the trees, under a tag no tree id can be."""
    return f"{repository}:output-{oid}"


def has(engine: Engine, oid: str) -> bool:
    """Whether the store holds that output (checked by label, like a tree)."""
    info = engine.image(output_ref(oid))
    return info is not None and info.labels.get(LABEL_OUTPUT) == oid


def fetch(engine: Engine, oid: str, repository: str, tls_verify: bool, trust: tuple = ()) -> bool:
    """Pull the output from a cache repository; False if it is not there, refused if it is not that output
    (or, with trust keys, if none of them signed it: errors.Untrusted)."""
    return pull_checked(engine, remote_tag(repository, oid), "output", LABEL_OUTPUT, oid, output_ref(oid),
                        tls_verify, trust)


def keep(engine: Engine, oid: str, directory: Path) -> None:
    """Store the files of directory as the output's image: tar streams straight into `podman import`."""
    tar = subprocess.Popen(["tar", "-C", str(directory), "-cf", "-", "."], stdout=subprocess.PIPE)
    assert tar.stdout is not None
    importer = subprocess.Popen(["podman", *engine.podman_args(), "import", "--quiet", "--change",
                                 f"LABEL {LABEL_OUTPUT}={oid}", "-", output_ref(oid)],
                                stdin=tar.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tar.stdout.close()  # podman's alone now: if it dies, tar gets SIGPIPE instead of blocking
    _, err = importer.communicate()
    if tar.wait() != 0 or importer.returncode != 0:
        raise BuildError(f"could not keep the assembler's output {directory} in the store: "
                         f"{err.strip() or f'tar exit status {tar.returncode}'}")


def restore(engine: Engine, oid: str, directory: Path) -> None:
    """Copy the output's files into directory: the image is mounted read-only, files are reflinked if possible.

    Rootless, the mount exists only in podman's user namespace, so the copy runs there
    (its root is the user, so the files are the user's).
    """
    podman = ["podman", *engine.podman_args()]
    script = ('set -e; src=$("$@" image mount "$REF"); trap \'"$@" image unmount "$REF" >/dev/null\' EXIT; '
              'find "$src" -mindepth 1 -maxdepth 1 -exec cp -R --reflink=auto --preserve=mode,timestamps -t "$DEST" {} +')
    proc = subprocess.run([*engine.in_userns(), "sh", "-c", script, "sh", *podman], capture_output=True, text=True,
                          env={**os.environ, "REF": output_ref(oid), "DEST": str(directory.resolve())})
    if proc.returncode != 0:
        raise BuildError(f"could not copy the cached output {output_ref(oid)} into {directory}: "
                         f"{proc.stderr.strip()}")
