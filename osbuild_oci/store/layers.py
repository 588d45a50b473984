"""The layer budget: which layers a tree image at a given depth is made of.

Podman mounts one overlay lower directory per layer, and mounting gets slower
with every one (and fails past a few dozen on some setups); containerd refuses
images of more than 127 layers.  So no tree image has more than BUDGET layers.

A tree's layers depend only on its depth (how many stages lie between it and
its root), never on build history, so two machines that share a prefix of
stages make the same layer layout and a registry stores each merged layer once.
Every completed unit of 16, 64 and 256 stages is one
layer holding that unit's combined change (like the digits of a number in
mixed radix), everything below the newest multiple of 1024 stages is one
layer, and the newest stages (fewer than 16 since the last unit) keep a layer
each.  So a pipeline of fewer than 16 stages never merges, and building a tree
merges at most once: tree d is the image of tree `merge_start(d)` plus one
layer, that image is one of its parent's layers' trees, and only the merged
layer itself is new to a registry.
"""

from __future__ import annotations

UNITS = (16, 64, 256, 1024)
_SIZES = (1, *UNITS)
STAGE_LAYERS = 1 + sum(big // small - 1 for small, big in zip(_SIZES, _SIZES[1:]))
BUDGET = 32
BASE_KEEP = BUDGET - STAGE_LAYERS


def ends(depth: int) -> list[int]:
    """The depths where the layers of a tree at this depth end, oldest first (its root is depth 0)."""
    if depth < 0:
        raise ValueError(f"depth {depth} is negative")
    top = UNITS[-1]
    out = [depth // top * top] if depth >= top else []
    start = out[-1] if out else 0
    for unit in reversed(_SIZES[:-1]):
        while start + unit <= depth:
            start += unit
            out.append(start)
    return out


def merge_start(depth: int) -> int:
    """The depth of the tree whose image a tree at this depth is one layer on top of (0: the root)."""
    layers = ends(depth)
    return layers[-2] if len(layers) > 1 else 0


def keeps_base(base_layers: int) -> bool:
    """Whether a base image's own layers stay as they are; a deeper base is flattened into the first stage's layer."""
    return base_layers <= BASE_KEEP
