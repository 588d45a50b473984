"""What a build of a pipeline would do, without doing it: where each stage's tree is, what each image is.

The plan is made as for a build, and whatever planning pulled (a stage image
from --stages-from, a base) is taken back; a --cache-from registry is only
asked whether it holds a tree, nothing is pulled; no container starts.
"""

from __future__ import annotations

from pathlib import Path

from ..stages.image import StageImage
from ..store import gc
from ..store.lock import open_store
from ..units import human, local_time
from .build import Build
from .locate import Place, ask, locate

_PLACES = {Place.STORE: "in the store", Place.REMOTE: "remote", Place.COVERED: "not needed (a later tree holds it)",
           Place.BUILD: "to build"}


def _image(image: StageImage) -> dict:
    return {"image": image.ref, "digest": image.id, "capabilities": list(image.capabilities), "network": image.network}


def describe(options, path: Path) -> dict:
    """The whole picture as one JSON-ready document."""
    build = Build(options, path)
    unreachable: dict[str, str] = {}
    build.registries.unavailable = unreachable.__setitem__
    with open_store(options.store, options.lock_timeout, look_only=True) as store, store.taken_back():
        the_plan = build.plan(store)
        where = locate(the_plan.stages, store, build.registries, ask(build.remote))
        cached = {row["tree"]: row for row in gc.listing(store) if not row["failed"]}
    stages = []
    for index, (stage, place) in enumerate(zip(the_plan.stages, where)):
        row = cached.get(stage.id, {})
        stages.append({"index": index + 1, "stage": stage.step.name, "id": stage.id, "tree": place.place,
                       "registry": place.registry, **_image(stage.image), "size": row.get("size"),
                       "created": row.get("created"), "last_used": row.get("last_used")})
    assembler = None
    if the_plan.assembler is not None:
        step, image = the_plan.assembler
        assembler = {"stage": step.name, **_image(image)}
    return {"pipeline": the_plan.name, "base": the_plan.base, "stages": stages, "assembler": assembler,
            "unreachable": unreachable}


def render(document: dict) -> str:
    """The document for people."""
    lines = [f"{document['pipeline']}: {len(document['stages'])} stages"
             + (f" on {document['base']}" if document["base"] else "")]
    for row in document["stages"]:
        place = _PLACES[Place(row["tree"])] + (f" {row['registry']}" if row["registry"] else "")
        lines += [f"[{row['index']}] {row['stage']}  {row['id']}", f"    tree: {place}"]
        if row["size"] is not None:
            used = local_time(row["last_used"]) if row["last_used"] else "never"
            lines.append(f"    layer {human(row['size'])}, created {local_time(row['created'])}, last used {used}")
        lines += _image_lines(row)
    if document["assembler"]:
        lines += [f"assembler {document['assembler']['stage']}", *_image_lines(document["assembler"])]
    lines += [f"note: could not ask {repo}: {error}" for repo, error in document["unreachable"].items()]
    return "\n".join(lines)


def _image_lines(row: dict) -> list[str]:
    caps = " ".join(row["capabilities"]) or "none"
    return [f"    image {row['image']} {row['digest'][:19]}",
            f"    network {'yes' if row['network'] else 'no'}, capabilities {caps}"]
