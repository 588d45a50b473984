"""What a build of a pipeline would do, without doing it: where each stage's tree is, what each image is, which
inputs each stage reads and which of them changed.

The plan is made as for a build, and whatever planning pulled (a stage image
from --stages-from, a base, an input's image) is taken back; a --cache-from
registry is only asked whether it holds a tree, nothing is pulled; no container
starts.  An input changed when the store's newest tree of the same stage of
this pipeline (its inputs label) was made from other content.
"""

from __future__ import annotations

from pathlib import Path

from ..engine.model import ImageInfo
from ..stages.image import StageImage
from ..store import gc
from ..store.lock import open_store
from ..units import human, local_time
from .build import Build
from .inputs import LABEL_INPUTS, keyed, read_label
from .locate import Place, Where, ask, locate
from .planner import Plan

_CHANGED = {True: "changed", False: "unchanged", None: "no earlier tree of this stage to compare with"}
_PLACES = {Place.STORE: "in the store", Place.REMOTE: "remote", Place.COVERED: "not needed (a later tree holds it)",
           Place.BUILD: "to build"}


def _image(image: StageImage) -> dict:
    return {"image": image.ref, "digest": image.id, "capabilities": list(image.capabilities), "network": image.network}


def _inputs(the_plan: Plan, where: list[Where], trees: list[tuple[str, ImageInfo]]) -> list[list[dict]]:
    """Each stage's inputs, with their digest and whether they changed since the store's newest tree of the same
    stage of this pipeline (None: the store has none to tell)."""
    before: dict[int, tuple[float, dict]] = {}
    for tree_id, info in trees:
        made = read_label(info.labels.get(LABEL_INPUTS, ""), tree_id)
        if made and made.get("pipeline") == the_plan.name and isinstance(made.get("index"), int):
            created = float(info.created or 0)
            if created >= before.get(made["index"], (-1.0, {}))[0]:
                before[made["index"]] = (created, made["inputs"])
    found = []
    for index, (stage, place) in enumerate(zip(the_plan.stages, where)):
        last = keyed(stage.inputs) if place.place != Place.BUILD else before.get(index, (0.0, None))[1]
        found.append([{"from": item.ref.kind, "source": ("/" if item.ref.image else "") + item.ref.source,
                       "image": item.ref.image,
                       "digest": item.digest,
                       "changed": None if last is None else last.get(item.ref.key) != item.digest}
                      for item in stage.inputs])
    return found


def describe(options, path: Path) -> dict:
    """The whole picture as one JSON-ready document."""
    build = Build(options, path)
    unreachable: dict[str, str] = {}
    build.registries.unavailable = unreachable.__setitem__
    with open_store(options.store, options.lock_timeout, look_only=True) as store, store.taken_back():
        the_plan = build.plan(store)
        where = locate(the_plan.stages, store, build.registries, ask(build.remote))
        cached = {row["tree"]: row for row in gc.listing(store) if not row["failed"]}
        inputs = _inputs(the_plan, where, store.trees()) if any(s.inputs for s in the_plan.stages) else []
    stages = []
    for index, (stage, place) in enumerate(zip(the_plan.stages, where)):
        row = cached.get(stage.id, {})
        stages.append({"index": index + 1, "stage": stage.step.name, "id": stage.id, "tree": place.place,
                       "registry": place.registry, **_image(stage.image), "size": row.get("size"),
                       "created": row.get("created"), "last_used": row.get("last_used"),
                       "inputs": inputs[index] if inputs else []})
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
        lines += [f"    input {item['from']} {(item['image'] + ' ') if item['image'] else ''}{item['source']} "
                  f"{item['digest'][:19]}: {_CHANGED[item['changed']]}" for item in row["inputs"]]
    if document["assembler"]:
        lines += [f"assembler {document['assembler']['stage']}", *_image_lines(document["assembler"])]
    lines += [f"note: could not ask {repo}: {error}" for repo, error in document["unreachable"].items()]
    return "\n".join(lines)


def _image_lines(row: dict) -> list[str]:
    caps = " ".join(row["capabilities"]) or "none"
    return [f"    image {row['image']} {row['digest'][:19]}",
            f"    network {'yes' if row['network'] else 'no'}, capabilities {caps}"]
