"""The lock file: which image every stage, the assembler and the base of a pipeline were built with.

`build --lock FILE` writes it after a successful build; `build --lock FILE
--locked` builds with exactly those images, so a rebuilt or re-pushed
`:latest` cannot change the result.  It is sorted JSON, meant to be committed
next to the pipeline:

    {"base": {"image": REF, "id": IMAGE_ID, "pull": REPO@DIGEST},
     "images": {STAGE_NAME: {"image": REF, "id": IMAGE_ID, "pull": REPO@DIGEST}, ...},
     "input_images": {REF: {"image": REF, "id": IMAGE_ID, "pull": REPO@DIGEST}, ...},
     "sources": {"sha256:...": {"urls": [URL, ...]} or {"context": PATH}, ...},
     "version": 1}

`id` is the image id (its config digest, what stage ids hash); `pull` is there
for an image from a registry: the manifest digest to pull it by where the
store lacks it.  Images are keyed by the name the pipeline gives the stage;
images that inputs read files of by the reference the pipeline gives.  Sources
are the ones the stages read, by digest, with where they were fetched from;
`--locked` refuses a source the lock does not name.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

VERSION = 1
_ID = re.compile(r"^[0-9a-f]{64}$")
_PULL = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Pin:
    """One locked image: as the pipeline named it, its id, and (from a registry) what to pull."""

    image: str
    id: str
    pull: str | None = None

    def to_json(self) -> dict:
        return {"image": self.image, "id": self.id, **({"pull": self.pull} if self.pull else {})}


@dataclass(frozen=True)
class Lock:
    path: Path
    base: Pin | None
    images: dict[str, Pin]
    input_images: dict[str, Pin] = field(default_factory=dict)
    # digest -> {"urls": [...]} or {"context": PATH}
    sources: dict[str, dict] = field(default_factory=dict)

    def image(self, name: str, where: str) -> Pin:
        if name not in self.images:
            raise UserError(f"the lock file {self.path} has no image for {name!r}; build once with "
                            f"--lock {self.path} and without --locked to record it", where)
        return self.images[name]

    def input_image(self, ref: str, where: str) -> Pin:
        if ref not in self.input_images:
            raise UserError(f"the lock file {self.path} has no image for the input {ref!r}; build once with "
                            f"--lock {self.path} and without --locked to record it", where)
        return self.input_images[ref]

    def source(self, digest: str, where: str) -> None:
        """Refuse a source the lock does not name: a locked build reads only what the lock recorded."""
        if digest not in self.sources:
            raise UserError(f"the lock file {self.path} names no source {digest}; build once with --lock "
                            f"{self.path} and without --locked to record it", where)

    def base_for(self, base: str) -> Pin:
        if self.base is None or self.base.image != base:
            locked = self.base.image if self.base else "no base"
            raise UserError(f"the lock file {self.path} was written for {locked}, not {base}; build once with "
                            f"--lock {self.path} and without --locked to record it", "base")
        return self.base

    def write(self) -> None:
        """Sorted, indented JSON, replaced atomically so a killed build never leaves half a lock."""
        doc = {"version": VERSION, "images": {name: pin.to_json() for name, pin in self.images.items()},
               **({"base": self.base.to_json()} if self.base else {}),
               **({"input_images": {ref: pin.to_json() for ref, pin in self.input_images.items()}}
                  if self.input_images else {}),
               **({"sources": self.sources} if self.sources else {})}
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)


def _pin(value: object, where: str) -> Pin:
    if not isinstance(value, dict) or not isinstance(value.get("image"), str) \
            or not _ID.match(str(value.get("id", ""))) or set(value) - {"image", "id", "pull"} \
            or ("pull" in value and not _PULL.match(str(value["pull"]))):
        raise UserError('expected {"image": REF, "id": 64 hex digits, "pull": REPO@sha256:DIGEST (optional)}; '
                        "rewrite the lock with --lock without --locked", where)
    return Pin(value["image"], value["id"], value.get("pull"))


def load(path: Path) -> Lock:
    """Read a lock file; a malformed one is refused naming the file and the JSON path."""
    try:
        doc = json.loads(path.read_text())
    except OSError as err:
        raise UserError(f"--locked: cannot read the lock file {path}: {err.strerror}") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"--locked: {path} is not JSON: {err}") from None
    except RecursionError:
        raise UserError(f"--locked: {path} is nested without end; no lock file is") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION or not isinstance(doc.get("images"), dict):
        raise UserError(f"{path}: not an osbuild-oci lock file (version {VERSION} with an images object)")
    images = {name: _pin(value, f"{path}: images.{name}") for name, value in doc["images"].items()}
    base = _pin(doc["base"], f"{path}: base") if "base" in doc else None
    inputs = doc.get("input_images", {})
    sources = doc.get("sources", {})
    if not isinstance(inputs, dict) or not isinstance(sources, dict):
        raise UserError(f"{path}: input_images and sources are objects; rewrite the lock with --lock without --locked")
    return Lock(path, base, images, {ref: _pin(value, f"{path}: input_images.{ref}") for ref, value in inputs.items()},
                sources)
