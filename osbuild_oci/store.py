"""The object store: every tree is an image in the store's containers-storage.

A tree's image is tagged `localhost/osbuild-oci/trees:<tree id>`; its newest
layer holds exactly the change set of the stage that made it.  The seed's
semantics are kept: `has_tree`, `get_tree` (a read-only view, empty for None)
and `new_tree` (writable, initialised from a base, committed only when the
block exits without an exception).  One command at a time works on a store
(`open_store` holds its lock); it first removes what a killed command left.
"""

from __future__ import annotations

import fcntl
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .engine.model import ImageInfo
from .engine.client import Engine
from .errors import BuildError, RegistryError, UserError

TREES = "localhost/osbuild-oci/trees"
LABEL_TREE = "org.osbuild-oci.tree-id"
LABEL_STAGE = "org.osbuild-oci.stage"


def tree_ref(tree_id: str) -> str:
    return f"{TREES}:{tree_id}"


def image_name(name: str) -> str:
    """A name as podman tags it: `:latest` unless the last path part has a tag."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


class ObjectStore:
    """The trees of one store, reached through that store's engine."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def tree_image(self, tree_id: str) -> ImageInfo | None:
        """The tree's image, only if it really is that tree (a checked cache hit)."""
        info = self.engine.image(tree_ref(tree_id))
        if info is None:
            return None
        if info.labels.get(LABEL_TREE) == tree_id or info.id == tree_id:
            return info
        return None

    def has_tree(self, tree_id: str) -> bool:
        return self.tree_image(tree_id) is not None

    def adopt(self, image_id: str) -> None:
        """Make any image a tree of this store; its id is the image id (the base image digest)."""
        if not self.has_tree(image_id):
            self.engine.tag(image_id, tree_ref(image_id))

    def _base_image(self, tree_id: str | None) -> str:
        if tree_id is None:
            return self.engine.empty_image()
        info = self.tree_image(tree_id)
        if info is None:
            raise BuildError(f"tree {tree_id} is not in the store")
        return info.id

    @contextmanager
    def get_tree(self, tree_id: str | None) -> Iterator[str]:
        """A view of the tree for readers; fails if the reader changed it anyway."""
        container, path = self.engine.mount_working_container(self._base_image(tree_id))
        try:
            yield path
            if self.engine.changes(container):
                raise BuildError(f"tree {tree_id} was altered by a reader that must only read it")
        finally:
            self.engine.remove_container(container)

    @contextmanager
    def new_tree(self, tree_id: str, base_id: str | None, stage: str = "") -> Iterator[str]:
        container, path = self.engine.mount_working_container(self._base_image(base_id))
        try:
            yield path
            self.engine.commit(container, tree_ref(tree_id), {LABEL_TREE: tree_id, LABEL_STAGE: stage})
        finally:
            self.engine.remove_container(container)

    def fetch(self, tree_id: str, repository: str, tls_verify: bool) -> bool:
        """Pull REPOSITORY:<tree id> and keep it as that tree if it really is it; False if absent."""
        try:
            info = self.engine.pull(f"{repository}:{tree_id}", tls_verify)
        except RegistryError as err:
            if err.missing:
                return False
            raise
        if info.labels.get(LABEL_TREE) != tree_id:
            raise BuildError(f"{repository}:{tree_id} is not the tree it is tagged as (its "
                             f"{LABEL_TREE} label says {info.labels.get(LABEL_TREE)!r}); refusing to use it")
        self.engine.tag(info.id, tree_ref(tree_id))
        return True

    def push(self, tree_id: str, destination: str, tls_verify: bool) -> None:
        self.engine.push(tree_ref(tree_id), destination, tls_verify)

    @contextmanager
    def unchanged_on_user_error(self) -> Iterator[None]:
        """Planning may pull images; if the input turns out bad, take back every image and name it added."""
        before = {info.id: set(info.names) for info in self.engine.images()}
        try:
            yield
        except UserError:
            for info in self.engine.images():
                added = [info.id] if info.id not in before else sorted(set(info.names) - before[info.id])
                for name in added:
                    self.engine.remove_image(name)
            raise

    def tag(self, tree_id: str, name: str) -> str:
        """Give a tree another name (e.g. --tag), so it can be run or used as a base by that name."""
        info = self.tree_image(tree_id)
        if info is None:
            raise BuildError(f"tree {tree_id} is not in the store")
        name = image_name(name)
        self.engine.tag(info.id, name)
        return name

    def trees(self) -> list[tuple[str, ImageInfo]]:
        """(tree id, image) of every tree, by its tag."""
        prefix = tree_ref("")
        return [(name[len(prefix):], info) for info in self.engine.images(TREES)
                for name in info.names if name.startswith(prefix)]

    def clear(self) -> None:
        """Remove every tree and every layer only trees used; stage images are not the store's.

        Trees go by name: an adopted base image seen from the user's storage is read-only
        here, and loses only its tree name.
        """
        for tree_id, _ in self.trees():
            self.engine.remove_image(tree_ref(tree_id))
        self.engine.prune()


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
def open_store(path: Path, lock_timeout: float = 3600.0) -> Iterator[ObjectStore]:
    """The store, locked against other osbuild-oci processes, with its podman service running.

    A store this command created is removed again when the input turns out bad,
    so a refused build leaves no trace.
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
            with Engine(path) as engine:
                left = engine.remove_all_containers()
                if left:
                    print(f"note: removed {left} container(s) an interrupted osbuild-oci left in {path}",
                          file=sys.stderr)
                yield ObjectStore(engine)
    except UserError:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise
