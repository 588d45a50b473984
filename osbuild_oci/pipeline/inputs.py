"""The inputs a stage's options name, `{"from": "context"|"source"|"image", "source": ...}`, found and checked.

An input is what a stage reads from outside the tree: files of the build
context (`build --context DIR`), a source the pipeline declares by its digest
(`sources`), or files of an OCI image.  Wherever a stage's schema puts such an
object, the orchestrator finds it here, before any image is resolved, and
refuses a path that could leave the context or the image.  The stage finds the
input under INPUTS_MOUNT at `InputRef.mounted` (osbuild_stage.input_path).
"""

from __future__ import annotations

import enum
import re
import urllib.parse
from dataclasses import dataclass

from ..errors import UserError
from .model import REFERENCE, find_objects

# Where a stage's container finds its inputs, read-only.
INPUTS_MOUNT = "/run/osbuild/inputs"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_MAX_PATH = 4096


class From(enum.StrEnum):
    """Where an input comes from: the build context, the pipeline's sources, or an image."""

    CONTEXT = "context"
    SOURCE = "source"
    IMAGE = "image"


@dataclass(frozen=True)
class InputRef:
    """One input as the options name it; `source` normalised: a context path `a/b`, a digest `sha256:...`, or a
    path in the image without its leading slash."""

    kind: From
    source: str
    where: str
    image: str | None = None

    @property
    def key(self) -> str:
        """How a stage id names the input (ids.stage_id): the same input always under the same key."""
        return f"image:{self.image}:/{self.source}" if self.kind == From.IMAGE else f"{self.kind}:{self.source}"

    @property
    def mounted(self) -> str:
        """Where the stage finds it, below INPUTS_MOUNT (osbuild_stage.input_path computes the same)."""
        if self.kind == From.SOURCE:
            return f"sources/sha256/{self.source.removeprefix('sha256:')}"
        if self.kind == From.IMAGE:
            return f"images/{image_folder(self.image or '')}/{self.source}"
        return f"context/{self.source}"


def image_folder(ref: str) -> str:
    """The one folder name an image's files get below INPUTS_MOUNT/images: its reference, quoted."""
    return urllib.parse.quote(ref, safe="")


def relative_path(value: object, where: str, what: str) -> str:
    """A path inside the context or an image as its parts joined by `/`: no `..`, nothing empty, no NUL."""
    if not isinstance(value, str):
        raise UserError(f"expected a path (string) {what}, got {type(value).__name__}", where)
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if not parts or ".." in parts or "\0" in value or len(value) > _MAX_PATH:
        raise UserError(f"{value[:80]!r} is no path {what}: give one without '..' that names a file or folder",
                        where)
    return "/".join(parts)


def _checked(found: dict, where: str) -> InputRef:
    kind, source = From(found["from"]), found.get("source")
    if kind == From.SOURCE:
        if not isinstance(source, str) or not DIGEST.match(source):
            raise UserError(f"a source is named by its digest, sha256: and 64 lower-case hex digits, as the "
                            f"pipeline's \"sources\" declares it; got {str(source)[:80]!r}", f"{where}.source")
        return InputRef(kind, source, where)
    if kind == From.CONTEXT:
        if isinstance(source, str) and source.startswith("/"):
            raise UserError(f"{source[:80]!r} is absolute; a context path is relative to the --context directory",
                            f"{where}.source")
        return InputRef(kind, relative_path(source, f"{where}.source", "inside the build context"), where)
    image = found.get("image")
    if not isinstance(image, str) or not REFERENCE.fullmatch(image):
        raise UserError(f"{str(image)[:80]!r} is no image reference; give [REGISTRY[:PORT]/]lower-case/path[:TAG]"
                        "[@sha256:DIGEST]", f"{where}.image")
    if not isinstance(source, str) or not source.startswith("/"):
        raise UserError(f"{str(source)[:80]!r}: a path in an image is absolute, e.g. /usr/bin/tool",
                        f"{where}.source")
    return InputRef(kind, relative_path(source, f"{where}.source", "in an image"), where, image)


def input_refs(options: object, where: str) -> list[InputRef]:
    """Every input the options name, in the order they appear; each checked (exit 2 naming its JSON path)."""
    found = find_objects(options, where, lambda value: value.get("from") in tuple(From))
    return [_checked(value, path) for value, path in found]
