"""Plans a pipeline: resolve every stage image, check every option, compute every stage id.

Planning happens before any container starts, so a bad pipeline fails with
nothing run and nothing stored.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import lastplan
from ..ids import output_id, stage_id
from ..pipeline import arch
from ..registry import references as registry
from .lockfile import Lock, Pin
from .options import Policy, Remote
from ..engine.host import Network, isolated_network
from ..engine.model import ImageInfo
from ..errors import RegistryError, UserError
from ..pipeline.model import Pipeline, Step, secret_refs
from ..stages.image import LABEL_ARCH, ArchMode, Kind, LOCAL_PREFIX, StageImage, local_ref
from ..store import transfer
from ..store.objects import ObjectStore
from ..store.refs import is_cache_ref, output_ref, tree_ref

TREE_ID = re.compile(r"^[0-9a-f]{64}$")


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
    source_epoch: int
    arch: str
    # The secrets the assembler's options name: name -> the file given with --secret.
    secrets: dict[str, Path] = field(default_factory=dict)
    # What a stage granted the network gets: a namespace of its own, or (asked for) the host's.
    network: Network = Network.ISOLATED

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


def _pull_for(store: ObjectStore, ref: str, remote: Remote, where: str) -> ImageInfo:
    """Pull ref; with trust keys, only the manifest one of them signed, by its digest (else errors.Untrusted)."""
    try:
        return transfer.pull(store, ref, remote.tls_verify, remote.trust)
    except RegistryError as err:
        if not err.missing:
            raise
        pinned = " (no image there has that digest)" if "@" in ref else ""
        raise UserError(f"{ref} is not in its registry{pinned}: {err.reason}", where) from None


def _locked(store: ObjectStore, pin: Pin, remote: Remote, lock: Lock, where: str) -> ImageInfo:
    """Exactly the locked image: from the store by its id, else pulled by its digest."""
    info = store.image(pin.id)
    if info is None and pin.pull:
        info = _pull_for(store, pin.pull, remote, where)
    if info is None or info.id != pin.id:
        found = f"{pin.pull} is image {info.id}" if info else f"no image {pin.id[:12]} is in the store"
        raise UserError(f"the lock file {lock.path} pins {pin.image} to image {pin.id[:12]}, but {found}; "
                        "rebuild that image, or rewrite the lock with --lock and without --locked", where)
    return info


def pin(store: ObjectStore, ref: str, image_id: str) -> Pin:
    """How the lock records an image: its id, plus the manifest digest to pull it by if it is a registry's."""
    if not registry.is_remote(ref):
        return Pin(ref, image_id)
    if "@" in ref:
        return Pin(ref, image_id, ref)
    info = store.image(image_id)
    pulled = [d for d in (info.digests if info else ()) if registry.repository(d) == registry.repository(ref)]
    return Pin(ref, image_id, pulled[0] if pulled else None)


def image_ref(step: Step, remote: Remote) -> str:
    """The image a step runs: its pinned `image`, else its name under --stages-from or the local prefix."""
    return step.image or local_ref(step.name, remote.stages_from or LOCAL_PREFIX)


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


def resolve(store: ObjectStore, step: Step, kind: Kind, remote: Remote, policy: Policy,
            lock: Lock | None = None) -> StageImage:
    ref = image_ref(step, remote)
    where = f"{step.where}.image" if step.image else f"{step.where}.name"
    if lock is not None:
        info: ImageInfo | None = _locked(store, lock.image(step.name, f"{step.where}.name"), remote, lock, where)
    else:
        info = store.image(ref)
        # With trust keys a remote image is checked every time: the copy in the store proves nothing about the tag now.
        if registry.is_remote(ref) and (info is None or remote.trust):
            info = _pull_for(store, ref, remote, where)
    if info is None:
        hint = ("pull it first or check the reference" if step.image else
                "run `osbuild-oci stages build` to build this repo's stages, or `osbuild-oci stages list` to see them")
        raise UserError(f"no {kind} image {ref} for {step.name!r}; {hint}", where)
    image = StageImage.from_labels(step.name, ref, info.id, info.labels, step.where, info.annotations)
    if image.kind != kind:
        article = "an" if kind[0] in "aeiou" else "a"
        raise UserError(f"{step.name} is a {image.kind} image; it cannot be used as {article} {kind}",
                        f"{step.where}.name")
    image.check_capabilities(policy.capabilities, f"{step.where}.name")
    image.check_network(policy.network, f"{step.where}.name")
    return image


def _resolve_base(store: ObjectStore, base: str | None, remote: Remote, lock: Lock | None,
                  tree_arch: str) -> tuple[str | None, str | None]:
    """The base as (tree id, image to adopt as that tree); a remote base is pulled first."""
    if base is None:
        return None, None
    if lock is not None and not TREE_ID.match(base):
        info = _locked(store, lock.base_for(base), remote, lock, "base")
        _check_base_arch(info, base, tree_arch)
        return info.id, info.id
    if TREE_ID.match(base):
        if store.has_tree(base) or any(transfer.fetch(store, base, repo, remote.tls_verify, remote.trust)
                                       for repo in remote.cache_from):
            _check_base_arch(store.tree_image(base), base, tree_arch)
            return base, None
        raise UserError(f"no tree {base} in this store{' or the --cache-from registries' if remote.cache_from else ''}"
                        "; build its pipeline first or give an image reference", "base")
    info = store.image(base)
    if registry.is_remote(base) and (info is None or remote.trust):
        info = _pull_for(store, base, remote, "base")
    if info is None:
        raise UserError(f"no image {base} in this store; give a registry reference to pull it", "base")
    _check_base_arch(info, base, tree_arch)
    return info.id, info.id


def _check_base_arch(info: ImageInfo | None, base: str, tree_arch: str) -> None:
    """Refuse a base of another architecture: the stages would add the pipeline's arch's programs to a tree
    of the base's, and the tree's image would name only one of them.  An image that names none passes."""
    wanted = arch.ARCHES[tree_arch].oci
    if info is None or not info.arch or info.arch == wanted:
        return
    named = next((a.debian for a in arch.ARCHES.values() if a.oci == info.arch), info.arch)
    raise UserError(f"{base} is an image for {named}, not for the pipeline's arch {tree_arch}; give a base "
                    f'built for {tree_arch}, or set "arch": "{named}"', "base")


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
         lock: Lock | None = None, secrets: dict[str, Path] | None = None) -> Plan:
    """The plan; with a lock, every image is the one it pins (a stage it lacks is refused)."""
    used_secrets = _secrets(pipeline, secrets or {})
    tree_arch = pipeline.tree_arch
    arch.check_runnable(tree_arch)
    steps = [*pipeline.stages, *([pipeline.assembler] if pipeline.assembler else [])]
    bases = [pipeline.base] if pipeline.base and not TREE_ID.match(pipeline.base) else []
    # The guess is a file anyone who can write the store may have edited: only the store's own names reach podman.
    guessed = [ref for ref in lastplan.guess(store.path, pipeline.name) if is_cache_ref(ref)]
    store.prefetch([*bases, *(image_ref(step, remote) for step in steps), *guessed])
    base, base_image = _resolve_base(store, pipeline.base, remote, lock, tree_arch)
    stages, parent = [], base

    def checked(given: Step, kind: Kind) -> tuple[Step, StageImage]:
        """The step's image, and the step with the options it runs with, checked against the image's schema."""
        image = resolve(store, given, kind, remote, policy, lock)
        step = with_arch(given, image, tree_arch)
        image.check_options(step.options, step.where)
        return step, image

    for given in pipeline.stages:
        step, image = checked(given, Kind.STAGE)
        planned = PlannedStage(step, image, stage_id(parent, image.id, step.options, pipeline.source_epoch,
                                                     tree_arch), parent)
        stages.append(planned)
        parent = planned.id
    assembler = None
    if pipeline.assembler is not None:
        assembler = checked(pipeline.assembler, Kind.ASSEMBLER)
    network = _network([*((stage.step, stage.image) for stage in stages), *([assembler] if assembler else [])],
                       policy)
    the_plan = Plan(pipeline.name, base, base_image, stages, assembler, pipeline.source_epoch, tree_arch, used_secrets,
                    network)
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
    return Lock(path, base_pin, images)


def check_output(output: Path | None, has_assembler: bool) -> None:
    """The seed's rule: the assembler writes into an empty directory, so nothing stale mixes in."""
    if output is None:
        if has_assembler:
            raise UserError("the pipeline has an assembler; give -o OUTPUT_DIR for what it makes", "assembler")
        return
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"output directory {output} is not empty; give a new or empty directory with -o")
