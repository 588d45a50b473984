"""What a build of a pipeline would do, without doing it: where each stage's tree is, what each image is.

The plan is made as for a build, and whatever planning pulled (a stage image
from --stages-from, a base) is taken back; a --cache-from registry is only
asked whether it holds a tree, nothing is pulled; no container starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import references as registry
from ..errors import RegistryError
from .planner import Plan, Remote
from ..stages.image import StageImage
from ..store.objects import ObjectStore


@dataclass(frozen=True)
class Where:
    """A stage's tree: in the store, in a --cache-from registry, covered by a newer tree, or to build."""

    place: str  # "store", "remote", "covered" or "build"
    registry: str | None = None


def _remote(tree_id: str, remote: Remote, unreachable: dict[str, str]) -> str | None:
    for repo in remote.cache_from:
        if repo in unreachable:
            continue
        try:
            if registry.has_image(f"{repo}:{tree_id}", remote.tls_verify):
                return repo
        except RegistryError as err:
            unreachable[repo] = str(err)
    return None


def locate(the_plan: Plan, store: ObjectStore, remote: Remote) -> tuple[list[Where], dict[str, str]]:
    """Where each stage's tree is, as a build would find it: newest first, local before remote.

    A stage older than the newest tree a build would take needs no tree of its own
    (that tree holds its layer): it is "covered".  Also: the registries that could not be asked, why.
    """
    unreachable: dict[str, str] = {}
    found: list[Where] = []
    for stage in reversed(the_plan.stages):
        local = store.has_tree(stage.id)
        repo = None if local else _remote(stage.id, remote, unreachable)
        if local:
            found.append(Where("store"))
        elif repo is not None:
            found.append(Where("remote", repo))
        elif any(w.place != "build" for w in found):
            found.append(Where("covered"))
        else:
            found.append(Where("build"))
    return found[::-1], unreachable


def _image(image: StageImage) -> dict:
    return {"image": image.ref, "digest": image.id, "capabilities": list(image.capabilities), "network": image.network}


def describe(the_plan: Plan, store: ObjectStore, remote: Remote) -> dict:
    """The whole picture as one JSON-ready document."""
    where, unreachable = locate(the_plan, store, remote)
    cached = {row["tree"]: row for row in store.listing() if not row["failed"]}
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
