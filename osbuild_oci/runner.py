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

from .engine import ContainerSpec, Engine, Mount
from .errors import BuildError, UserError
from .events import Reporter
from .pipeline import Pipeline, Step
from .stageimage import StageImage, local_ref
from .store import ObjectStore, tree_ref

TREE_MOUNT = "/run/osbuild/tree"
OUTPUT_MOUNT = "/run/osbuild/output"
TREE_ID = re.compile(r"^[0-9a-f]{64}$")


def stage_id(parent: str | None, image_id: str, options: dict) -> str:
    """The cache key: parent tree (or base image digest), stage image digest, canonical options."""
    doc = {"parent": parent or "", "image": image_id, "options": options}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


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


def resolve(engine: Engine, step: Step, kind: str) -> StageImage:
    ref = step.image or local_ref(step.name)
    info = engine.image(ref)
    if info is None:
        hint = ("pull it first or check the reference" if step.image else
                "run `osbuild-oci stages build` to build this repo's stages, or `osbuild-oci stages list` to see them")
        raise UserError(f"no {kind} image {ref} for {step.name!r}; {hint}", f"{step.where}.name")
    image = StageImage.from_labels(step.name, ref, info.id, info.labels, step.where)
    if image.kind != kind:
        article = "an" if kind[0] in "aeiou" else "a"
        raise UserError(f"{step.name} is a {image.kind} image; it cannot be used as {article} {kind}",
                        f"{step.where}.name")
    image.check_options(step.options, step.where)
    return image


def _resolve_base(engine: Engine, store: ObjectStore, base: str | None) -> tuple[str | None, str | None]:
    """The base as (tree id, image to adopt as that tree); nothing is changed yet."""
    if base is None:
        return None, None
    if TREE_ID.match(base):
        if store.has_tree(base):
            return base, None
        raise UserError(f"no tree {base} in this store; build its pipeline first or give an image reference",
                        "base")
    info = engine.image(base)
    if info is None:
        raise UserError(f"no image {base} in this store", "base")
    return info.id, info.id


def plan(pipeline: Pipeline, engine: Engine, store: ObjectStore) -> Plan:
    base, base_image = _resolve_base(engine, store, pipeline.base)
    stages, parent = [], base
    for step in pipeline.stages:
        image = resolve(engine, step, "stage")
        planned = PlannedStage(step, image, stage_id(parent, image.id, step.options), parent)
        stages.append(planned)
        parent = planned.id
    assembler = None
    if pipeline.assembler is not None:
        assembler = (pipeline.assembler, resolve(engine, pipeline.assembler, "assembler"))
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


def run(the_plan: Plan, engine: Engine, store: ObjectStore, reporter: Reporter, output: Path | None) -> str | None:
    """Build the plan; return the final tree id."""
    started = time.monotonic()
    total = len(the_plan.stages)
    reporter.event("pipeline-start", name=the_plan.name, stages=total)
    if the_plan.base_image is not None:
        store.adopt(the_plan.base_image)
    for index, stage in enumerate(the_plan.stages):
        t0 = time.monotonic()
        reporter.event("stage-start", stage=stage.step.name, index=index, total=total, id=stage.id)
        cached = store.has_tree(stage.id)
        if not cached:
            with store.new_tree(stage.id, stage.parent, stage.step.name) as tree:
                _run_container(engine, stage.step, stage.image, [Mount(tree, TREE_MOUNT)],
                               {"tree": TREE_MOUNT, "options": stage.step.options}, reporter)
        reporter.event("stage-done", stage=stage.step.name, index=index, total=total, id=stage.id, cached=cached,
                       seconds=round(time.monotonic() - t0, 3))
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
    reporter.event("build-done", tree=final, image=tree_ref(final) if final else None,
                   seconds=round(time.monotonic() - started, 3))
    return final
