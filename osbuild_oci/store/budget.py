"""Keeps a store within a size budget: least recently used trees go first, shared layers stay while needed.

The store's size here is the sum of its own layers' sizes (containers-storage's
`diff-size`), each layer counted once however many trees share it, and of the
files of the outputs it keeps outside its storage.  Removing a
tree's name frees only the layers no remaining image needs: a prefix tree whose
layers a kept tree still builds on frees nothing, so it is kept, and every kept
tree's image stays whole.  Trees in `keep` (those of the build that is running)
are never chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from ..engine.records import Records
from .refs import Kept


class Trimmable(Protocol):
    """Something else the budget covers (a package cache): its size in bytes, and making it `over` bytes smaller."""

    def size(self) -> int: ...

    def trim(self, over: int) -> None: ...


@dataclass(frozen=True)
class Candidate:
    name: str  # the image name whose removal removes the tree (localhost/osbuild-oci/trees:<id>)
    image: str | None  # None: a cached output kept only as files
    last_used: float
    files: int = 0  # bytes it holds outside the storage (a cached output's files), all freed with it
    kind: Kept = Kept.TREE
    key: str = ""  # its tree, stage or output id


def choose(records: Records, candidates: Sequence[Candidate], max_size: int) -> tuple[list[Candidate], int]:
    """Which candidates to remove, least recently used first, until the store fits; and the size it then has.

    A candidate is taken only when removing it frees bytes: when its image loses its
    last name and some layer of it is needed by no other image left.
    """
    names = {image: set(found) for image, (_, found) in records.images.items()}
    users: dict[str, int] = {}
    for image in records.images:
        for layer in records.chain(image):
            users[layer] = users.get(layer, 0) + 1
    size = records.size(set(users)) + sum(c.files for c in candidates)
    chosen: list[Candidate] = []
    waiting = sorted(candidates, key=lambda c: c.last_used)
    while size > max_size:
        for candidate in waiting:
            freed = set()
            if candidate.image is not None and names[candidate.image] - {candidate.name} == set():
                freed = {layer for layer in records.chain(candidate.image) if users[layer] == 1}
            if records.size(freed) + candidate.files > 0:
                break
        else:
            break
        waiting.remove(candidate)
        chosen.append(candidate)
        if candidate.image is not None:
            names[candidate.image].discard(candidate.name)
            for layer in records.chain(candidate.image):
                users[layer] -= 1
        size -= records.size(freed) + candidate.files
    return chosen, size
