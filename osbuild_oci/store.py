"""The object store: every tree is an image in the store's containers-storage.

A tree's image is tagged `localhost/osbuild-oci/trees:<tree id>`; its newest
layer holds exactly the change set of the stage that made it.  The seed's
semantics are kept: `has_tree`, `get_tree` (a read-only view, empty for None)
and `new_tree` (writable, initialised from a base, committed only when the
block exits without an exception).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from .engine.model import ImageInfo
from .engine.service import Engine
from .errors import BuildError, RegistryError

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
        container, path = self.engine.working_container(self._base_image(tree_id))
        try:
            yield path
            if self.engine.changes(container):
                raise BuildError(f"tree {tree_id} was altered by a reader that must only read it")
        finally:
            self.engine.remove_container(container)

    @contextmanager
    def new_tree(self, tree_id: str, base_id: str | None, stage: str = "") -> Iterator[str]:
        container, path = self.engine.working_container(self._base_image(base_id))
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
        """Remove every tree and every layer only trees used; stage images are not the store's."""
        for _, info in self.trees():
            self.engine.remove_image(info.id)
        self.engine.prune()
