"""The object store: every tree is an image in the store's own containers-storage.

A tree's image is tagged `localhost/osbuild-oci/trees:<tree id>`; its newest
layer holds exactly the change set of the stage that made it.  The seed's
semantics are kept: `has_tree`, `get_tree` (a read-only view, empty for None)
and `new_tree` (writable, initialised from a base, committed only when the
block exits without an exception).  The store's engine (its podman) stays
inside store/: the rest of the program asks the store, never podman.
"""

from __future__ import annotations

import re
import shlex
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ..engine.client import Engine
from ..engine.model import ContainerSpec, ImageInfo
from ..errors import BuildError, EngineError, RegistryError, StageFailed, UserError
from ..pipeline import arch
from ..stages.image import empty_ref
from . import layers
from .lineage import Lineage
from .refs import (FAILED, LABEL_DEPTH, LABEL_EPOCH, LABEL_FAILED, LABEL_LAYERS, LABEL_ROOT, LABEL_STAGE, LABEL_TREE,
                   TREES, failed_ref, image_name, tree_ref)
from .usage import Usage

_MOUNT_DATA = re.compile(r'\s*mount_data="[^"]*"|\s*mount_data=\S+')


class ObjectStore:
    """The trees of one store, and the verbs the planner, runner and commands need of its podman."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.path: Path = engine.store
        self.usage = Usage(engine.store)
        # Registries this store pulled trees from: (tls_verify, trust keys) by repository (store/transfer.py).
        self.sources: dict[str, tuple[bool, tuple]] = {}

    # -- what the store's podman is asked, for the rest of the program ----------------------------------------

    def image(self, ref: str) -> ImageInfo | None:
        return self.engine.image(ref)

    def image_again(self, ref: str) -> ImageInfo | None:
        """The image under ref as podman sees it now, after its stage storage changed behind the store."""
        self.engine.forget(ref)
        return self.engine.image(ref)

    def prefetch(self, refs: list[str]) -> None:
        """Ask podman about these images in one go, before they are needed one by one."""
        self.engine.prefetch(refs)

    def run(self, spec: ContainerSpec, on_output: Callable[[int, bytes], None], remove_discarded: bool = False) -> int:
        """Run a stage's or assembler's container to its end; its exit status."""
        return self.engine.run(spec, on_output, remove_discarded)

    def clamp(self, tree: str, epoch: int, since: float) -> None:
        self.engine.clamp(tree, epoch, since)

    def scratch(self) -> Path:
        """A directory for the command's short-lived files, removed with the command's service."""
        return self.engine.scratch()

    def finish(self) -> None:
        """Remove the working containers of committed trees, so the store holds no container."""
        self.engine.remove_discarded()

    def podman_args(self) -> list[str]:
        """The podman flags that reach this store (`store podman-args`, a shell in a tree)."""
        return self.engine.podman_args()

    def disk_use(self) -> int:
        return self.engine.disk_use()

    @contextmanager
    def unchanged_on_user_error(self) -> Iterator[None]:
        """Planning may pull images; if the input turns out bad, take back every image and name it added."""
        mark = len(self.engine.journal)
        try:
            yield
        except UserError:
            self.engine.undo(mark)
            raise

    @contextmanager
    def taken_back(self) -> Iterator[None]:
        """For commands that only look: every image and name the block added is taken back at its end."""
        mark = len(self.engine.journal)
        try:
            yield
        finally:
            self.engine.undo(mark)

    # -- trees ---------------------------------------------------------------------------------------------------

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

    def empty_image(self, tree_arch: str) -> str:
        """The image with no layers at all, base of a tree of tree_arch that starts from nothing (made by
        `osbuild-oci stages build` in the user's storage, which every store sees)."""
        info = self.engine.image(empty_ref(tree_arch))
        if info is None:
            raise EngineError(f"{empty_ref(tree_arch)} is missing; run `osbuild-oci stages build` first")
        return info.id

    def _base_info(self, tree_id: str | None) -> ImageInfo | None:
        if tree_id is None:
            return None
        info = self.tree_image(tree_id)
        if info is None:
            raise BuildError(f"tree {tree_id} is not in the store")
        return info

    @contextmanager
    def get_tree(self, tree_id: str | None) -> Iterator[str]:
        """A view of the tree for readers; fails if the reader changed it anyway."""
        info = self._base_info(tree_id)
        container, path = self.engine.mount_working_container(info.id if info else self.empty_image(arch.host()))
        try:
            yield path
            if self.engine.changes(container):
                raise BuildError(f"tree {tree_id} was altered by a reader that must only read it")
        finally:
            self.engine.remove_container(container)

    @contextmanager
    def new_tree(self, tree_id: str, base_id: str | None, stage: str = "", epoch: int = 0,
                 reported: dict[str, str] | None = None, keep_failed: bool = False,
                 tree_arch: str | None = None) -> Iterator[str]:
        """A writable tree with the content of base_id, committed as tree_id when the block succeeds.

        `reported` is read at commit time: labels the block learnt from the stage (a tree inherits
        its parent's labels, so a Release date stays until a stage reports a newer one).

        Its image is the parent's plus one layer, except where the layer budget
        merges: then it starts on an older tree's image (see layers.py), the
        parent's content is synced into it, and the one new layer holds
        everything since that older tree.  When the stage fails (StageFailed)
        and keep_failed is set, the partial tree is committed under
        `failed_ref`, which no lookup by tree id can reach; an interruption or
        any other error keeps nothing.  A tree without a base starts from the empty image of
        tree_arch (default: the host's), whose architecture every commit on it keeps.
        """
        info = self._base_info(base_id)
        empty = self.empty_image(tree_arch or arch.host())
        parent = info.id if info else empty
        lineage = Lineage.of(base_id, info)
        start, root, image = lineage.start(self._available, empty)
        with self._mount_errors("mount the image the tree starts on", stage, tree_id, image):
            container, path = self.engine.mount_working_container(image)
        try:
            if image != parent:
                self._sync(parent, path, stage, tree_id)
            yield path
            with self._mount_errors("commit the tree", stage, tree_id, image):
                self.engine.commit(container, tree_ref(tree_id), {
                    LABEL_TREE: tree_id, LABEL_STAGE: stage, LABEL_EPOCH: str(epoch),
                    **lineage.child_labels(tree_id, start, root), **(reported or {})})
            self.engine.remove_image(failed_ref(tree_id))
        except BaseException as err:
            if keep_failed and isinstance(err, StageFailed):
                err.kept = self._keep_failed(container, tree_id, stage, err)
            self.engine.remove_container(container)
            raise
        self.engine.discard_container(container)

    def _keep_failed(self, container: str, tree_id: str, stage: str, failure: StageFailed) -> str:
        """Commit a failed stage's tree under failed_ref; how to open a shell in it (or why it is not kept).

        Its labels say it is no tree (an empty tree id), so even a label check cannot take it for one.
        An earlier failure of the same stage is replaced, not left behind unnamed.
        """
        try:
            self.engine.remove_image(failed_ref(tree_id))
            self.engine.commit(container, failed_ref(tree_id), {
                LABEL_TREE: "", LABEL_FAILED: tree_id, LABEL_STAGE: stage, LABEL_DEPTH: "", LABEL_ROOT: "",
                LABEL_LAYERS: ""})
        except EngineError as err:
            return f"its partial tree could not be kept: {err}"
        failure.kept_ref = failed_ref(tree_id)
        podman = shlex.join(["podman", *self.podman_args(), "run", "--rm", "-it", "--network=none",
                             failed_ref(tree_id), "/bin/sh"])
        return (f"its partial tree is kept as {failed_ref(tree_id)}; open a shell in it with\n"
                f"    osbuild-oci shell --failed {tree_id} --store {shlex.quote(str(self.path))}\n"
                f"or\n    {podman}")

    def _available(self, tree_id: str) -> str | None:
        """The tree's image id: from the store, or pulled from a registry this store already pulled trees from.

        A registry that fails now only costs the shared layout, not the build.
        """
        from .transfer import fetch
        info = self.tree_image(tree_id)
        for repository, (tls_verify, trust) in list(self.sources.items()):
            if info is not None:
                break
            try:
                if fetch(self, tree_id, repository, tls_verify, trust):
                    info = self.tree_image(tree_id)
            except RegistryError:
                continue
        return info.id if info else None

    def _sync(self, parent: str, path: str, stage: str, tree_id: str) -> None:
        """Make the working tree at path equal the parent image's tree; overlay copies up only what differs."""
        with self._mount_errors("mount the parent tree to merge layers", stage, tree_id, parent):
            source, source_path = self.engine.mount_working_container(parent)
        try:
            self.engine.sync(source_path, path)
        finally:
            self.engine.remove_container(source)

    @contextmanager
    def _mount_errors(self, action: str, stage: str, tree_id: str, image: str) -> Iterator[None]:
        """A podman failure while mounting or committing a tree becomes one line a user can act on."""
        try:
            yield
        except EngineError as err:
            info = self.engine.image(image)
            count = f"{len(info.layers)} layers" if info else "an unknown number of layers"
            # podman's own words, without the mount data and the "podman refused to ..." we already say.
            reason = _MOUNT_DATA.sub("", str(err)).strip()
            reason = reason.split(": ", 1)[1] if reason.startswith("podman refused to") else reason
            raise BuildError(
                f"stage {stage or '(none)'}, tree {tree_id}: podman could not {action} (image {image[:12]}, "
                f"{count}; the layer budget is {layers.BUDGET}): {reason}; check the store's storage with "
                f"`podman {' '.join(self.podman_args())} info`, then `osbuild-oci store clean` "
                "and build again") from None

    def tag(self, tree_id: str, name: str) -> str:
        """Give a tree another name (e.g. --tag), so it can be run or used as a base by that name."""
        info = self.tree_image(tree_id)
        if info is None:
            raise BuildError(f"tree {tree_id} is not in the store")
        name = image_name(name)
        self.engine.tag(info.id, name)
        return name

    def _tagged(self) -> list[tuple[str, ImageInfo]]:
        prefix = tree_ref("")
        return [(name[len(prefix):], info) for info in self.engine.images(TREES)
                for name in info.names if name.startswith(prefix)]

    def trees(self) -> list[tuple[str, ImageInfo]]:
        """(tree id, image) of every tree, by its tag; kept failures are no trees."""
        return [(tag, info) for tag, info in self._tagged() if not tag.startswith(FAILED)]

    def failed(self) -> list[tuple[str, ImageInfo]]:
        """(stage id, image) of every kept failed tree."""
        return [(tag[len(FAILED):], info) for tag, info in self._tagged() if tag.startswith(FAILED)]

    def record_use(self, tree_ids: list[str]) -> None:
        """A build used these trees (built or hit): gc removes them last."""
        self.usage.touch([tree_id for tree_id in tree_ids if tree_id and self.has_tree(tree_id)])
