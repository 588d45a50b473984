"""Files copied out of an image of the store without running it: a container of it is created and mounted, never
started, and what a path names is copied out through safefiles (store/files.py `selection`).

The copy runs as `python -m osbuild_oci.store.files`: rootless, in podman's user namespace, where the mount
exists and the user is root (the copies are the user's); as root, here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..errors import BuildError, UserError
from .objects import ObjectStore


def copy_out_of(store: ObjectStore, image_id: str, path: str, target: Path) -> None:
    """Copy the regular file or folder at path in the image to the same path below target.  UserError when the
    image has no such path, or it is, holds or passes through a link (the input's fault: nothing ran yet)."""
    container, root = store.engine.mount_working_container(image_id)
    try:
        proc = subprocess.run([*store.engine.in_userns(), sys.executable, "-m", "osbuild_oci.store.files", root,
                               str(target), path], capture_output=True, text=True)
    finally:
        store.engine.remove_container(container)
    reason = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
    if proc.returncode == 2:
        raise UserError(reason[0].removeprefix("error: "))
    if proc.returncode != 0:
        raise BuildError(f"could not copy {path} out of image {image_id[:12]}: {reason[0]}")
