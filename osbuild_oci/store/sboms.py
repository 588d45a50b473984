"""Each tree's bill of materials, a file of the store (`STORE/sboms/<tree id>.spdx.json`): made once, from the
mounted tree, when the tree is committed or first asked for."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import UserError
from . import sbom
from .objects import ObjectStore
from .refs import LABEL_EPOCH


def path(store: ObjectStore, tree_id: str) -> Path:
    return store.path / "sboms" / f"{tree_id}.spdx.json"


def save(store: ObjectStore, tree_id: str, document: str) -> None:
    target = path(store, tree_id)
    target.parent.mkdir(exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_text(document, encoding="utf-8")
    partial.replace(target)


def of_mounted(store: ObjectStore, tree: str, tree_id: str, epoch: int) -> str:
    """The SPDX document of a mounted tree: read here as root, rootless where the mount is visible
    (`python -m osbuild_oci.store.sbom` in podman's user namespace)."""
    if os.geteuid() == 0:
        return sbom.dumps(sbom.of_tree(tree, tree_id, epoch))
    return store.engine.on_mounted_tree([sys.executable, "-m", "osbuild_oci.store.sbom", tree, tree_id, str(epoch)],
                                        f"read the packages of tree {tree_id}")


def read(store: ObjectStore, tree_id: str) -> str:
    """The tree's SPDX document; a tree that came without one (pulled, adopted) gets it made once,
    dated by the tree's source epoch label (0 for an image that is no tree of ours)."""
    target = path(store, tree_id)
    if not target.exists():
        info = store.tree_image(tree_id)
        if info is None:
            raise UserError(f"no tree {tree_id} in this store")
        label = info.labels.get(LABEL_EPOCH, "")
        epoch = int(label) if label.isdigit() else 0
        with store.get_tree(tree_id) as tree:
            save(store, tree_id, of_mounted(store, tree, tree_id, epoch))
    return target.read_text(encoding="utf-8")
