"""containers-storage's own records of a store: which layer an image ends in, each layer's parent and size.

The API gives neither layer ids nor what two images share; the store's
`DRIVER-images/images.json` and `DRIVER-layers/layers.json` do, for that
store alone (layers of the additional image store, where stage images and
adopted bases live, are not in them and cost this store nothing).  They are
read only while the store's lock is held.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layer:
    parent: str
    size: int


@dataclass(frozen=True)
class Records:
    images: dict[str, tuple[str, frozenset[str]]]  # image id -> (top layer, names)
    layers: dict[str, Layer]  # layer id -> parent and uncompressed size, this store's own only

    def chain(self, image_id: str) -> list[str]:
        """The image's layers stored in this store, newest first."""
        out, layer = [], self.images[image_id][0]
        while layer in self.layers:
            out.append(layer)
            layer = self.layers[layer].parent
        return out

    def size(self, layers: set[str]) -> int:
        return sum(self.layers[layer].size for layer in layers)


def _load(storage: Path, kind: str) -> list[dict]:
    found = list(storage.glob(f"*-{kind}/{kind}.json"))
    return json.loads(found[0].read_text()) if found else []


def read(storage: Path) -> Records:
    images = {i["id"]: (i.get("layer", ""), frozenset(i.get("names") or [])) for i in _load(storage, "images")}
    layers = {layer["id"]: Layer(layer.get("parent", ""), int(layer.get("diff-size") or 0))
              for layer in _load(storage, "layers")}
    return Records(images, layers)
