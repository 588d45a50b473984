"""A stage's inputs resolved while planning: each one its options name, as the digest of what the stage will read.

Before anything runs, every input becomes a content digest that enters the stage
id (ids.stage_id): the files a context path names, hashed (only those: a change
elsewhere in the context reruns nothing); a source, by the digest the pipeline
declares for it (so no download is needed to know the id); an image's files, by
the image's id (the image is resolved and pulled under the trust rules of stage
images, and never run).  What a stage may not read is refused here, with exit 2:
a context path that is missing, leaves the context or passes a link; a source
the pipeline does not declare; an image reference that is none.
"""

from __future__ import annotations

import base64
import binascii
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .. import safefiles
from ..engine.model import ImageInfo
from ..errors import UserError
from ..ids import files_digest
from ..pipeline.inputs import From, InputRef, input_refs, relative_path
from ..pipeline.model import Source, Step
from ..store.files import selection
from .lockfile import Lock

CONTEXT = "the build context"
# On a tree a stage with inputs made: what they were, for `inspect` to tell which changed since.
LABEL_INPUTS = "org.osbuild-oci.inputs"


@dataclass(frozen=True)
class Input:
    """One input of a stage: as the options name it, the digest of its content, and for a source where it is
    fetched from (its context path made relative and checked)."""

    ref: InputRef
    digest: str
    origin: Source | None = None


def context_files(context: Path, path: str) -> list[tuple[str, str, bytes]]:
    """What a context path names, as files_digest takes it; read through safefiles (no link is followed)."""
    return selection(str(context), path, CONTEXT)


def context_digest(files: list[tuple[str, str, bytes]]) -> str:
    return "sha256:" + files_digest(files, "osbuild-oci context")


@dataclass
class Resolver:
    """Resolves the inputs of a plan's stages; a context path named twice is hashed once."""

    context: Path | None
    sources: dict[str, Source]
    # (image reference, JSON path) -> the image, resolved and pulled as the planner resolves stage images.
    image: Callable[[str, str], ImageInfo]
    # With --locked: only the sources it names may be read.
    lock: Lock | None = None
    _hashed: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.context is not None:
            self.context = self.context.resolve()
            if not self.context.is_dir():
                raise UserError(f"--context {self.context}: no such directory; give the directory the pipeline's "
                                "{\"from\": \"context\"} inputs are read from")

    def refs(self, step: Step) -> list[InputRef]:
        return input_refs(step.options, f"{step.where}.options")

    def resolve(self, step: Step) -> tuple[Input, ...]:
        return tuple(self._one(ref) for ref in self.refs(step))

    def _needs_context(self, where: str) -> Path:
        if self.context is None:
            raise UserError("this reads from the build context; give its directory with --context DIR", where)
        return self.context

    def _one(self, ref: InputRef) -> Input:
        if ref.kind == From.IMAGE:
            return Input(ref, self.image(ref.image or "", f"{ref.where}.image").id)
        if ref.kind == From.SOURCE:
            origin = self.sources.get(ref.source)
            if self.lock is not None:
                self.lock.source(ref.source, f"{ref.where}.source")
            if origin is None:
                raise UserError(f"{ref.source} is not among the pipeline's sources; declare it there: \"sources\": "
                                f"{{\"{ref.source}\": URL}}", f"{ref.where}.source")
            if origin.context is not None:
                where = f"sources.{ref.source}.context"
                path = relative_path(origin.context, where, "inside the build context")
                self._check_file(self._needs_context(where), path, where)
                origin = Source(context=path)
            return Input(ref, ref.source, origin)
        if ref.source not in self._hashed:
            context = self._needs_context(f"{ref.where}.from")
            self._hashed[ref.source] = context_digest(self._read(context, ref.source, f"{ref.where}.source"))
        return Input(ref, self._hashed[ref.source])

    @staticmethod
    def _read(context: Path, path: str, where: str) -> list[tuple[str, str, bytes]]:
        with _reading(context, path, where):
            return context_files(context, path)

    @staticmethod
    def _check_file(context: Path, path: str, where: str) -> None:
        """A context source must be one regular file; its bytes are checked against the digest when fetched."""
        walker = safefiles.walk(str(context), path, CONTEXT)
        try:
            with _reading(context, path, where):
                first = next(walker)
        finally:
            walker.close()
        if first.directory:
            raise UserError(f"{path} is a folder of the build context; a source is one file", where)


@contextmanager
def _reading(context: Path, path: str, where: str) -> Iterator[None]:
    """What reading a context path can meet, told as the user's mistake (exit 2) naming where the pipeline
    names it."""
    try:
        yield
    except FileNotFoundError:
        raise UserError(f"the build context {context} has no {path}", where) from None
    except safefiles.Refused as err:
        raise UserError(f"{err}: a stage reads only regular files and folders of the context, never through a "
                        "link; copy what the link points to into the context instead", where) from None
    except OSError as err:
        raise UserError(f"cannot read {path} of the build context {context}: {err.strerror}", where) from None


def keyed(inputs: tuple[Input, ...]) -> dict[str, str]:
    """The inputs as a stage id names them: key -> content digest."""
    return {item.ref.key: item.digest for item in inputs}


def tree_label(pipeline: str, index: int, tree_id: str, inputs: tuple[Input, ...]) -> dict[str, str]:
    """The label of a tree whose stage read inputs: the pipeline, the stage's place in it and each input's digest,
    as base64 of JSON (podman keeps a label's quotes escaped).  It names its own tree, because a tree's children
    inherit its labels."""
    if not inputs:
        return {}
    document = {"tree": tree_id, "pipeline": pipeline, "index": index, "inputs": keyed(inputs)}
    return {LABEL_INPUTS: base64.b64encode(json.dumps(document, sort_keys=True).encode()).decode()}


def read_label(value: str, tree_id: str) -> dict | None:
    """What tree_label wrote on this very tree (not inherited), None for anything else: labels of a pulled tree
    are anyone's."""
    try:
        document = json.loads(base64.b64decode(value.encode(), validate=True))
    except (ValueError, binascii.Error, RecursionError):
        return None
    if not isinstance(document, dict) or document.get("tree") != tree_id or \
            not isinstance(document.get("inputs"), dict):
        return None
    return document
