"""Plans a pipeline: resolve every stage image, check every option, resolve every input, compute every stage id.

Planning happens before any container starts, so a bad pipeline fails with
nothing run and nothing stored.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import lastplan
from .images import TREE_ID, image_ref, input_image, pin, resolve, resolve_base
from .inputs import Input, Resolver, keyed
from ..ids import output_id, stage_id
from ..pipeline import arch
from .lockfile import Lock, Pin
from .options import Policy, Remote
from ..engine.host import Network, isolated_network
from ..errors import UserError
from ..pipeline.inputs import input_refs
from ..pipeline.model import Pipeline, Step, secret_refs
from ..stages.image import LABEL_ARCH, ArchMode, Kind, StageImage
from ..store.objects import ObjectStore
from ..store.refs import is_cache_ref, output_ref, tree_ref


@dataclass(frozen=True)
class PlannedStage:
    step: Step
    image: StageImage
    id: str
    parent: str | None
    # What the stage reads besides its tree (build/inputs.py), each as the digest its id names.
    inputs: tuple[Input, ...] = ()


@dataclass(frozen=True)
class Plan:
    name: str
    base: str | None
    base_image: str | None
    stages: list[PlannedStage]
    assembler: tuple[Step, StageImage] | None
    source_epoch: int
    arch: str
    # The secrets the assembler's options name: name -> the file given with --secret.
    secrets: dict[str, Path] = field(default_factory=dict)
    # What a stage granted the network gets: a namespace of its own, or (asked for) the host's.
    network: Network = Network.ISOLATED
    # The build context (--context) that inputs {"from": "context"} are read from.
    context: Path | None = None

    @property
    def final(self) -> str | None:
        return self.stages[-1].id if self.stages else self.base

    @property
    def output_id(self) -> str | None:
        """The assembler output's cache key (outputs.py), None without an assembler."""
        if self.assembler is None:
            return None
        step, image = self.assembler
        return output_id(self.final, image.id, step.options)

    def cache_refs(self) -> list[str]:
        """The store names under which this plan's trees and output would be cached."""
        return [tree_ref(stage.id) for stage in self.stages] + \
            ([output_ref(self.output_id)] if self.output_id else [])


def with_arch(step: Step, image: StageImage, tree_arch: str) -> Step:
    """The step as the image takes the pipeline's architecture (docs/decisions/023-*.md): as its `arch`
    option, which the pipeline need not repeat; on any tree; or only on a tree of the host's."""
    if image.arch == ArchMode.NATIVE and not arch.runs_natively(tree_arch):
        raise UserError(f"{step.name} works only on trees of the host's architecture ({arch.host()}), not "
                        f"{tree_arch}: its image {image.ref} has no {LABEL_ARCH} label of \"any\" or \"option\"",
                        f"{step.where}.name")
    if image.arch != ArchMode.OPTION:
        return step
    given = step.options.get("arch", tree_arch)
    if given != tree_arch:
        raise UserError(f"arch {given!r} differs from the pipeline's arch {tree_arch!r}; write the architecture "
                        "once, as the pipeline's top-level \"arch\"", f"{step.where}.options.arch")
    return replace(step, options={**step.options, "arch": tree_arch})


def _secrets(pipeline: Pipeline, given: dict[str, Path]) -> dict[str, Path]:
    """The secrets the assembler names, each given with --secret; stages get none (their trees are layers that
    registries carry, and their ids would not change with the secret)."""
    for step in pipeline.stages:
        for name, where in secret_refs(step.options, f"{step.where}.options").items():
            raise UserError(f"secret {name!r}: secrets are given to assemblers only; a stage's tree is a layer "
                            "shared through registries", where)
    used = secret_refs(pipeline.assembler.options, "assembler.options") if pipeline.assembler else {}
    for name, where in used.items():
        if name not in given:
            raise UserError(f"the options name secret {name!r}; give its file with --secret {name}=FILE", where)
    return {name: given[name] for name in used}


def _network(steps: list[tuple[Step, StageImage]], policy: Policy) -> Network:
    """A namespace of its own for every stage or assembler granted the network; where none can be made, the
    host's only when asked for, else the build is refused before anything runs."""
    needing = [step for step, image in steps if image.network]
    if isolated_network() is not None or not needing:
        return Network.ISOLATED
    if policy.host_network:
        print("note: --allow-host-network: stages with network share this host's network namespace (they can "
              "reach its 127.0.0.1)", file=sys.stderr)
        return Network.HOST
    raise UserError(f"{needing[0].name} needs the network, and no network namespace of its own can be made here: "
                    "install slirp4netns and make /dev/net/tun usable (scripts/setup-host does both), or pass "
                    "--allow-host-network to let it share this host's", f"{needing[0].where}.name")


def plan(pipeline: Pipeline, store: ObjectStore, remote: Remote = Remote(), policy: Policy = Policy(),
         lock: Lock | None = None, secrets: dict[str, Path] | None = None, context: Path | None = None) -> Plan:
    """The plan; with a lock, every image is the one it pins (a stage it lacks is refused)."""
    used_secrets = _secrets(pipeline, secrets or {})
    tree_arch = pipeline.tree_arch
    arch.check_runnable(tree_arch)
    inputs = Resolver(context, pipeline.sources, lambda ref, where: input_image(store, ref, remote, lock, where), lock)
    if pipeline.assembler is not None and input_refs(pipeline.assembler.options, "assembler.options"):
        raise UserError("inputs are read by stages; an assembler reads only the final tree (copy what it needs into "
                        "the tree with a stage first)", "assembler.options")
    steps = [*pipeline.stages, *([pipeline.assembler] if pipeline.assembler else [])]
    bases = [pipeline.base] if pipeline.base and not TREE_ID.match(pipeline.base) else []
    read = [ref.image for step in pipeline.stages for ref in inputs.refs(step) if ref.image]
    # The guess is a file anyone who can write the store may have edited: only the store's own names reach podman.
    guessed = [ref for ref in lastplan.guess(store.path, pipeline.name) if is_cache_ref(ref)]
    store.prefetch([*bases, *(image_ref(step, remote) for step in steps), *read, *guessed])
    base, base_image = resolve_base(store, pipeline.base, remote, lock, tree_arch)
    stages, parent = [], base

    def checked(given: Step, kind: Kind) -> tuple[Step, StageImage]:
        """The step's image, and the step with the options it runs with, checked against the image's schema."""
        image = resolve(store, given, kind, remote, policy, lock)
        step = with_arch(given, image, tree_arch)
        image.check_options(step.options, step.where)
        return step, image

    for given in pipeline.stages:
        step, image = checked(given, Kind.STAGE)
        read_inputs = inputs.resolve(step)
        planned = PlannedStage(step, image, stage_id(parent, image.id, step.options, pipeline.source_epoch,
                                                     tree_arch, keyed(read_inputs)), parent, read_inputs)
        stages.append(planned)
        parent = planned.id
    assembler = None
    if pipeline.assembler is not None:
        assembler = checked(pipeline.assembler, Kind.ASSEMBLER)
    network = _network([*((stage.step, stage.image) for stage in stages), *([assembler] if assembler else [])],
                       policy)
    the_plan = Plan(pipeline.name, base, base_image, stages, assembler, pipeline.source_epoch, tree_arch, used_secrets,
                    network, inputs.context)
    lastplan.remember(store.path, pipeline.name, the_plan.cache_refs())
    return the_plan


def lock_of(the_plan: Plan, store: ObjectStore, path: Path, base: str | None) -> Lock:
    """The lock that pins every image the plan uses; one name meaning two images cannot be locked."""
    images: dict[str, Pin] = {}
    steps = [(s.step, s.image) for s in the_plan.stages] + ([the_plan.assembler] if the_plan.assembler else [])
    for step, image in steps:
        pinned = pin(store, image.ref, image.id)
        if images.setdefault(step.name, pinned).id != image.id:
            raise UserError(f"{step.name!r} names two different images in this pipeline, which a lock file "
                            "(keyed by stage name) cannot tell apart", f"{step.where}.image")
    base_pin = pin(store, base, the_plan.base_image) if base is not None and the_plan.base_image else None
    read = [item for stage in the_plan.stages for item in stage.inputs]
    pinned = {item.ref.image: pin(store, item.ref.image, item.digest) for item in read if item.ref.image}
    sources = {item.digest: {"context": item.origin.context} if item.origin.context else
               {"urls": list(item.origin.urls)} for item in read if item.origin is not None}
    return Lock(path, base_pin, images, pinned, sources)


def check_output(output: Path | None, has_assembler: bool) -> None:
    """The seed's rule: the assembler writes into an empty directory, so nothing stale mixes in."""
    if output is None:
        if has_assembler:
            raise UserError("the pipeline has an assembler; give -o OUTPUT_DIR for what it makes", "assembler")
        return
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"output directory {output} is not empty; give a new or empty directory with -o")
