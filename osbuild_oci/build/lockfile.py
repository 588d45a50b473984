"""The lock file: which image every stage, the assembler and the base of a pipeline were built with.

`build --lock FILE` writes it after a successful build; `build --lock FILE
--locked` builds with exactly those images, so a rebuilt or re-pushed
`:latest` cannot change the result.  It is sorted JSON, meant to be committed
next to the pipeline:

    {"base": {"image": REF, "id": IMAGE_ID, "pull": REPO@DIGEST},
     "images": {STAGE_NAME: {"image": REF, "id": IMAGE_ID, "pull": REPO@DIGEST}, ...},
     "version": 1}

`id` is the image id (its config digest, what stage ids hash); `pull` is there
for an image from a registry: the manifest digest to pull it by where the
store lacks it.  Images are keyed by the name the pipeline gives the stage.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
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

    def image(self, name: str, where: str) -> Pin:
        if name not in self.images:
            raise UserError(f"the lock file {self.path} has no image for {name!r}; build once with "
                            f"--lock {self.path} and without --locked to record it", where)
        return self.images[name]

    def base_for(self, base: str) -> Pin:
        if self.base is None or self.base.image != base:
            locked = self.base.image if self.base else "no base"
            raise UserError(f"the lock file {self.path} was written for {locked}, not {base}; build once with "
                            f"--lock {self.path} and without --locked to record it", "base")
        return self.base

    def write(self) -> None:
        """Sorted, indented JSON, replaced atomically so a killed build never leaves half a lock."""
        doc = {"version": VERSION, "images": {name: pin.to_json() for name, pin in self.images.items()},
               **({"base": self.base.to_json()} if self.base else {})}
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
    return Lock(path, base, images)
