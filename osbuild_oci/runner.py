"""Runs a pipeline: plan every stage id first, then run only what the store lacks.

Planning resolves every stage image and checks every option before any
container starts, so a bad pipeline fails with nothing run and nothing stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from . import registry
from .engine import ContainerSpec, Engine, ImageInfo, Mount, RegistryError
from .errors import BuildError, UserError
from .events import Reporter
from .pipeline import Pipeline, Step
from .stageimage import LOCAL_PREFIX, StageImage, local_ref
from .store import ObjectStore, tree_ref

TREE_MOUNT = "/run/osbuild/tree"
OUTPUT_MOUNT = "/run/osbuild/output"
TREE_ID = re.compile(r"^[0-9a-f]{64}$")


def stage_id(parent: str | None, image_id: str, options: dict) -> str:
    """The cache key: parent tree (or base image digest), stage image digest, canonical options."""
    doc = {"parent": parent or "", "image": image_id, "options": options}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Remote:
    """Where stages and cached trees may come from and go to."""

    stages_from: str | None = None
    cache_from: tuple[str, ...] = ()
    cache_to: str | None = None
    tls_verify: bool = True


@dataclass(frozen=True)
class PlannedStage:
    step: Step
    image: StageImage
    id: str
    parent: str | None


@dataclass(frozen=True)
class Plan:
    name: str
    base: str | None
    base_image: str | None
    stages: list[PlannedStage]
    assembler: tuple[Step, StageImage] | None

    @property
    def final(self) -> str | None:
        return self.stages[-1].id if self.stages else self.base


def _pull_for(engine: Engine, ref: str, remote: Remote, where: str) -> ImageInfo:
    try:
        return engine.pull(ref, remote.tls_verify)
    except RegistryError as err:
        if not err.missing:
            raise
        pinned = " (no image there has that digest)" if "@" in ref else ""
        raise UserError(f"{ref} is not in its registry{pinned}: {err.reason}", where) from None


def resolve(engine: Engine, step: Step, kind: str, remote: Remote) -> StageImage:
    ref = step.image or local_ref(step.name, remote.stages_from or LOCAL_PREFIX)
    where = f"{step.where}.image" if step.image else f"{step.where}.name"
    info = engine.image(ref)
    if info is None and registry.is_remote(ref):
        info = _pull_for(engine, ref, remote, where)
    if info is None:
        hint = ("pull it first or check the reference" if step.image else
                "run `osbuild-oci stages build` to build this repo's stages, or `osbuild-oci stages list` to see them")
        raise UserError(f"no {kind} image {ref} for {step.name!r}; {hint}", where)
    image = StageImage.from_labels(step.name, ref, info.id, info.labels, step.where)
    if image.kind != kind:
        article = "an" if kind[0] in "aeiou" else "a"
        raise UserError(f"{step.name} is a {image.kind} image; it cannot be used as {article} {kind}",
                        f"{step.where}.name")
    image.check_options(step.options, step.where)
    return image


def _resolve_base(engine: Engine, store: ObjectStore, base: str | None,
                  remote: Remote) -> tuple[str | None, str | None]:
    """The base as (tree id, image to adopt as that tree); a remote base is pulled first."""
    if base is None:
        return None, None
    if TREE_ID.match(base):
        if store.has_tree(base) or any(store.fetch(base, repo, remote.tls_verify) for repo in remote.cache_from):
            return base, None
        raise UserError(f"no tree {base} in this store{' or the --cache-from registries' if remote.cache_from else ''}"
                        "; build its pipeline first or give an image reference", "base")
    info = engine.image(base)
    if info is None and registry.is_remote(base):
        info = _pull_for(engine, base, remote, "base")
    if info is None:
        raise UserError(f"no image {base} in this store; give a registry reference to pull it", "base")
    return info.id, info.id


def plan(pipeline: Pipeline, engine: Engine, store: ObjectStore, remote: Remote = Remote()) -> Plan:
    base, base_image = _resolve_base(engine, store, pipeline.base, remote)
    stages, parent = [], base
    for step in pipeline.stages:
        image = resolve(engine, step, "stage", remote)
        planned = PlannedStage(step, image, stage_id(parent, image.id, step.options), parent)
        stages.append(planned)
        parent = planned.id
    assembler = None
    if pipeline.assembler is not None:
        assembler = (pipeline.assembler, resolve(engine, pipeline.assembler, "assembler", remote))
    return Plan(pipeline.name, base, base_image, stages, assembler)


def check_output(output: Path) -> None:
    """The seed's rule: the assembler writes into an empty directory, so nothing stale mixes in."""
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"output directory {output} is not empty; give a new or empty directory with -o")


class _Tail:
    """The last lines a container printed, for the error message when it fails."""

    def __init__(self, reporter: Reporter):
        self.reporter, self.data = reporter, b""

    def __call__(self, fd: int, chunk: bytes) -> None:
        self.reporter.output(fd, chunk)
        self.data = (self.data + chunk)[-4096:]

    def lines(self, n: int = 10) -> str:
        return "\n".join("    " + line for line in self.data.decode(errors="replace").splitlines()[-n:])


def _run_container(engine: Engine, step: Step, image: StageImage, mounts: list[Mount], document: dict,
                   reporter: Reporter) -> None:
    tail = _Tail(reporter)
    spec = ContainerSpec(image=image.id, mounts=mounts, network=image.network, capabilities=list(image.capabilities),
                         env={"OSBUILD_STAGE": step.name}, stdin=json.dumps(document).encode())
    status = engine.run(spec, tail)
    if status != 0:
        raise BuildError(f"{image.kind} {step.name} ({step.where}) failed with exit status {status}; "
                         f"its last output:\n{tail.lines()}")


def _cached_prefix(the_plan: Plan, store: ObjectStore, remote: Remote, reporter: Reporter) -> tuple[int, str]:
    """How many leading stages need not run, and where their tree is: newest first, local before remote.

    Only the newest cached tree is pulled; it holds every earlier stage's layer.
    """
    repos = list(remote.cache_from)
    for index in reversed(range(len(the_plan.stages))):
        tree_id = the_plan.stages[index].id
        if store.has_tree(tree_id):
            return index + 1, "store"
        for repo in list(repos):
            try:
                if store.fetch(tree_id, repo, remote.tls_verify):
                    return index + 1, repo
            except RegistryError as err:
                repos.remove(repo)
                reporter.event("cache-unavailable", registry=repo, error=str(err))
    return 0, "store"


def _push_trees(the_plan: Plan, store: ObjectStore, remote: Remote, reporter: Reporter) -> None:
    """Push every tree of the pipeline the store holds, oldest first, so each push adds one layer."""
    for stage in the_plan.stages:
        if store.has_tree(stage.id):
            t0 = time.monotonic()
            destination = f"{remote.cache_to}:{stage.id}"
            store.push(stage.id, destination, remote.tls_verify)
            reporter.event("tree-pushed", stage=stage.step.name, id=stage.id, image=destination,
                           seconds=round(time.monotonic() - t0, 3))


def run(the_plan: Plan, engine: Engine, store: ObjectStore, reporter: Reporter, output: Path | None,
        remote: Remote = Remote()) -> str | None:
    """Build the plan; return the final tree id."""
    started = time.monotonic()
    total = len(the_plan.stages)
    reporter.event("pipeline-start", name=the_plan.name, stages=total)
    if the_plan.base_image is not None:
        store.adopt(the_plan.base_image)
    done, source = _cached_prefix(the_plan, store, remote, reporter)
    for index, stage in enumerate(the_plan.stages):
        t0 = time.monotonic()
        reporter.event("stage-start", stage=stage.step.name, index=index, total=total, id=stage.id)
        cached = index < done
        if not cached:
            with store.new_tree(stage.id, stage.parent, stage.step.name) as tree:
                _run_container(engine, stage.step, stage.image, [Mount(tree, TREE_MOUNT)],
                               {"tree": TREE_MOUNT, "options": stage.step.options}, reporter)
        reporter.event("stage-done", stage=stage.step.name, index=index, total=total, id=stage.id, cached=cached,
                       source=source if cached else "built", seconds=round(time.monotonic() - t0, 3))
    if the_plan.assembler is not None and output is not None:
        step, image = the_plan.assembler
        t0 = time.monotonic()
        reporter.event("assembler-start", assembler=step.name)
        output.mkdir(parents=True, exist_ok=True)
        with store.get_tree(the_plan.final) as tree:
            _run_container(engine, step, image, [Mount(tree, TREE_MOUNT, read_only=True),
                                                 Mount(str(output.resolve()), OUTPUT_MOUNT)],
                           {"tree": TREE_MOUNT, "output": OUTPUT_MOUNT, "options": step.options}, reporter)
        reporter.event("assembler-done", assembler=step.name, seconds=round(time.monotonic() - t0, 3),
                       output=str(output), files=sorted(os.listdir(output)))
    final = the_plan.final
    if remote.cache_to:
        _push_trees(the_plan, store, remote, reporter)
    reporter.event("build-done", tree=final, image=tree_ref(final) if final else None,
                   seconds=round(time.monotonic() - started, 3))
    return final
