"""One command at a time on a store: its lock, waited for with a word to the user, and the store opened
(with what a killed command left removed) or, for bad input, left as it was; and a store deleted whole."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..engine import localstorage
from ..engine.client import Engine
from ..engine.host import unmount_below
from ..engine.service import Service
from ..errors import BuildError, UserError
from . import gc, outputs
from .objects import ObjectStore


def _wait_for_lock(lock, path: Path, timeout: float) -> None:
    """Take the store's lock; while another process holds it, say so once and wait up to timeout."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise BuildError(f"store {path} is still in use by another osbuild-oci process after "
                                 f"{timeout:g} s; raise --lock-timeout or use another --store") from None
            if not told:
                print(f"waiting for store {path}: another osbuild-oci process is using it "
                      f"(--lock-timeout {timeout:g} s)", file=sys.stderr, flush=True)
                told = True
            time.sleep(0.2)


@contextmanager
def open_store(path: Path, lock_timeout: float = 3600.0, look_only: bool = False) -> Iterator[ObjectStore]:
    """The store, locked against other osbuild-oci processes, with its podman service running.

    A store this command created is removed again when the input turns out bad,
    so a refused build leaves no trace, and always for a command that only looks.
    """
    if path.exists() and not path.is_dir():
        raise UserError(f"--store {path} is not a directory")
    created = path
    while not created.parent.exists():
        created = created.parent
    created = created if not created.exists() else None
    path.mkdir(parents=True, exist_ok=True)
    try:
        with open(path / ".lock", "w") as lock:
            _wait_for_lock(lock, path, lock_timeout)
            with localstorage.in_use(), Engine(path) as engine:
                objects = ObjectStore(engine)
                outputs.remove_partial(objects)
                yield objects
    except UserError:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
    if look_only and created is not None:
        shutil.rmtree(created, ignore_errors=True)


def delete_store(path: Path) -> None:
    """Remove the store's trees, its podman state and its directory, with the mounts podman left in it."""
    if not (path / "storage").is_dir():
        raise UserError(f"{path} is not an osbuild-oci store (no storage/ inside); refusing to delete it")
    with open_store(path) as store:
        gc.clear(store)
        service = store.engine.service
    unmount_below(path)
    if os.geteuid() == 0:
        shutil.rmtree(path)
    else:
        # Files of the user's subordinate ids are removable only inside the user namespace.
        proc = subprocess.run(["podman", "unshare", "rm", "-rf", str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"cannot remove {path}: {proc.stderr.strip()}")
    service.remove_run_dir()


def podman_args(path: Path) -> list[str]:
    """The podman flags that reach the store at path, without opening it (a user's own podman commands)."""
    return Service(path).podman_args()
