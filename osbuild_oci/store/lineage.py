"""Where a tree stands under the layer budget (layers.py): the labels that record it, and the image a new tree
starts on."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from ..engine.model import ImageInfo
from . import layers
from .refs import LABEL_DEPTH, LABEL_LAYERS, LABEL_ROOT, LABEL_TREE

_LAYER_END = re.compile(r"^([0-9]+):([0-9a-f]{64})$")
_ROOT = re.compile(r"(?:[0-9a-f]{64})?")


@dataclass(frozen=True)
class Lineage:
    """root: the tree id of the image its layers start on ("" for the empty image); depth: stages since that
    root; ends: (depth, tree id) where each of its own layers ends, oldest first."""

    root: str
    depth: int
    ends: tuple[tuple[int, str], ...]

    @classmethod
    def of(cls, tree_id: str | None, info: ImageInfo | None) -> "Lineage":
        """From a tree image's labels; an image that is not a tree of ours (an adopted base) is a root.

        A base deeper than the budget allows is no root: the first stage's layer flattens it.
        Labels are only ever a layout hint: whatever they say, the tree's content is its parent's.
        """
        if tree_id is None or info is None:
            return cls("", 0, ())
        labels = info.labels
        found = [_LAYER_END.match(end) for end in labels.get(LABEL_LAYERS, "").split()]
        if (labels.get(LABEL_TREE) == tree_id and labels.get(LABEL_DEPTH, "").isdigit() and found
                and all(found) and _ROOT.fullmatch(labels.get(LABEL_ROOT, "-"))):
            return cls(labels[LABEL_ROOT], int(labels[LABEL_DEPTH]),
                       tuple((int(m[1]), m[2]) for m in found if m))
        return cls(tree_id if layers.keeps_base(len(info.layers)) else "", 0, ())

    def child_labels(self, tree_id: str, start: int, root: str) -> dict[str, str]:
        """Labels of the tree one stage deeper: on root, this one's layers up to depth `start`, then its own."""
        depth = self.depth + 1
        kept = [f"{d}:{t}" for d, t in self.ends if d <= start]
        return {LABEL_DEPTH: str(depth), LABEL_ROOT: root,
                LABEL_LAYERS: " ".join([*kept, f"{depth}:{tree_id}"])}

    def start(self, available: Callable[[str], str | None], empty: str) -> tuple[int, str, str]:
        """(depth, root, image) a new tree one stage below this one starts on; available(tree id) is that
        tree's image id, or None.

        The budget names the tree; when that tree is gone (a fresh store that pulled
        only the newest tree, a deleted tree) an older layer end, the root, or at
        last the empty image does, which is still within the budget.
        """
        target = layers.merge_start(self.depth + 1)
        for depth, tree in reversed(self.ends):
            if depth <= target:
                image = available(tree)
                if image is not None:
                    return depth, self.root, image
        image = available(self.root) if self.root else None
        if image is not None:
            return 0, self.root, image
        return 0, "", empty
