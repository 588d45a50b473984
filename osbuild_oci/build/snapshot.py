"""What a stage's container sees of its inputs: read-only copies of exactly what its id names, ready before any
container of the build starts.

Context files are copied into a private snapshot while they are hashed, and the
snapshot must have the digest planning put into the stage id (a context changed
since is a failure, not a silent other tree).  Sources come from the user's
source cache, fetched once and checked against their digest.  An image's files
are copied out of the image mounted read-only, never run.  Everything is made
for every stage that will run before the first of them starts, so an input that
cannot be had fails the build with nothing run (an image path that is missing
is the pipeline's mistake: exit 2).  Each stage then gets its own mounts under
INPUTS_MOUNT: `context/`, `images/<quoted reference>/` and one file per source
at `sources/sha256/<hex>`.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ..engine.model import Mount
from ..errors import BuildError, UserError
from ..pipeline.inputs import INPUTS_MOUNT, From, image_folder
from ..store import imagefiles
from ..store.files import selection
from ..store.objects import ObjectStore
from ..store.sources import SourceCache, default_dir
from .inputs import CONTEXT, Input, context_digest
from .planner import Plan


def _covered(items: list[Input]) -> list[Input]:
    """The inputs of one kind and image with a path no other one's folder already holds, shortest path first."""
    kept: list[Input] = []
    for item in sorted(items, key=lambda item: (item.ref.image or "", item.ref.source)):
        if not any(item.ref.image == done.ref.image and (item.ref.source + "/").startswith(done.ref.source + "/")
                   for done in kept):
            kept.append(item)
    return kept


def _context(context: Path, items: list[Input], target: Path) -> None:
    for item in _covered(items):
        try:
            copied = context_digest(selection(str(context), item.ref.source, CONTEXT, target))
        except (OSError, BuildError) as err:
            raise BuildError(f"{item.ref.where}: could not copy {item.ref.source} out of the build context: {err}") \
                from None
        if copied != item.digest:
            raise BuildError(f"{item.ref.where}: the build context's {item.ref.source} changed after the build was "
                             "planned (its id names other files); run the build again")


def _images(store: ObjectStore, items: list[Input], target: Path) -> None:
    for item in _covered(items):
        try:
            imagefiles.copy_out_of(store, item.digest, item.ref.source, target / image_folder(item.ref.image or ""))
        except UserError as err:
            raise UserError(f"{err.message} (image {item.ref.image})", f"{item.ref.where}.source") from None


def _mounts(store: ObjectStore, the_plan: Plan, index: int, folder: Path, cache: SourceCache,
            busy: Callable[[str], None]) -> list[Mount]:
    """Make one stage's inputs ready below folder; the mounts that show them to its container."""
    stage = the_plan.stages[index]
    by_kind = {kind: [item for item in stage.inputs if item.ref.kind == kind] for kind in From}
    mounts = []
    if by_kind[From.CONTEXT]:
        assert the_plan.context is not None  # planning refused a context input without --context
        _context(the_plan.context, by_kind[From.CONTEXT], folder / "context")
        mounts.append(Mount(str(folder / "context"), f"{INPUTS_MOUNT}/context", read_only=True))
    if by_kind[From.IMAGE]:
        busy(f"copying files out of {by_kind[From.IMAGE][0].ref.image}")
        _images(store, by_kind[From.IMAGE], folder / "images")
        mounts.append(Mount(str(folder / "images"), f"{INPUTS_MOUNT}/images", read_only=True))
    for item in {item.digest: item for item in by_kind[From.SOURCE]}.values():
        origin = item.origin
        assert origin is not None
        path = cache.fetch(item.digest, origin.urls, the_plan.context / origin.context if origin.context else None,
                           busy)
        mounts.append(Mount(str(path), f"{INPUTS_MOUNT}/{item.ref.mounted}", read_only=True))
    return mounts


@contextmanager
def prepared(store: ObjectStore, the_plan: Plan, indexes: list[int],
             busy: Callable[[str], None] = lambda label: None) -> Iterator[dict[int, list[Mount]]]:
    """The input mounts of each stage that will run (by index), made in a scratch directory of the store that
    goes when the block ends."""
    if not any(the_plan.stages[index].inputs for index in indexes):
        yield {}
        return
    cache = SourceCache(default_dir())
    with tempfile.TemporaryDirectory(prefix="inputs-", dir=store.scratch()) as scratch:
        yield {index: _mounts(store, the_plan, index, Path(scratch) / str(index), cache, busy)
               for index in indexes if the_plan.stages[index].inputs}
