"""Runs a plan's stages: each one the store lacks in its own container, its tree committed under its id.

A stage's tree is committed under its id only when its container exits 0;
anything else (a failure, Ctrl-C, SIGTERM) removes the working container, so
nothing is ever stored half-built under a stage id.  A failed stage's tree is
kept under another name (`store.refs.failed_ref`) for a shell to look into.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .. import safefiles
from ..engine.host import Network
from ..engine.model import ContainerSpec, Mount
from ..errors import StageFailed
from ..pipeline import arch
from ..pipeline.model import Step
from ..stages.image import StageImage
from ..store import sboms
from ..store.objects import ObjectStore
from ..store.refs import LABEL_RELEASE
from .inputs import tree_label
from .locate import Place, Registries, Where, fetch, locate
from .monitor import Monitor
from .planner import Plan, Remote
from .snapshot import prepared

TREE_MOUNT = "/run/osbuild/tree"
# Where a stage may report facts about its tree (osbuild_stage.record_release_date).
META_MOUNT = "/run/osbuild/meta"
# Outside the tree: nothing under it can reach a layer, and it is no input of a stage id.
CACHE_MOUNT = "/run/osbuild/cache"
_RELEASE_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")


class _Tail:
    """The last lines a container printed, for the error message when it fails."""

    def __init__(self, monitor: Monitor):
        self.monitor, self.data = monitor, b""

    def __call__(self, fd: int, chunk: bytes) -> None:
        self.monitor.output(fd, chunk)
        self.data = (self.data + chunk)[-4096:]

    def lines(self, n: int = 10) -> str:
        return "\n".join("    " + line for line in self.data.decode(errors="replace").splitlines()[-n:])


def run_container(store: ObjectStore, the_plan: Plan, step: Step, image: StageImage, mounts: list[Mount],
                  document: dict, monitor: Monitor, package_cache: Path | None = None,
                  remove_discarded: bool = False) -> None:
    """Run a stage's or the assembler's container; its environment names the tree's architecture both ways
    (Debian's, as the pipeline's arch, and OCI's, as image configs), for a program that must say it."""
    tail = _Tail(monitor)
    if image.package_cache and package_cache is not None:
        mounts = [*mounts, Mount(str(package_cache), CACHE_MOUNT)]
    env = {"OSBUILD_STAGE": step.name, "SOURCE_DATE_EPOCH": str(the_plan.source_epoch),
           "OSBUILD_ARCH": the_plan.arch, "OSBUILD_OCI_ARCH": arch.ARCHES[the_plan.arch].oci}
    network = the_plan.network if image.network else Network.NONE
    spec = ContainerSpec(image=image.id, mounts=mounts, network=network, capabilities=list(image.capabilities),
                         env=env, stdin=json.dumps(document).encode())
    status = store.run(spec, tail, remove_discarded)
    if status != 0:
        raise StageFailed(f"{image.kind} {step.name} ({step.where}) failed with exit status {status}; "
                          f"its last output:\n{tail.lines()}")


def _reported(meta: str) -> dict[str, str]:
    """The labels a stage reported; what is not a well-formed UTC time is ignored, as any stage output
    (also a link, a FIFO or an endless file: the stage wrote the directory, so it is read as a tree)."""
    try:
        date = (safefiles.read(meta, "release-date", 64) or b"").decode("utf-8", errors="replace").strip()
    except safefiles.Refused:
        return {}
    return {LABEL_RELEASE: date} if _RELEASE_DATE.match(date) else {}


def refresh_from(the_plan: Plan) -> int:
    """The first stage that fetches packages (its image asks for the network): --refresh runs it and all after."""
    return next((i for i, stage in enumerate(the_plan.stages) if stage.image.network), len(the_plan.stages))


@contextmanager
def _phase(phases: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.monotonic()
    yield
    phases[name] = round(time.monotonic() - t0, 3)


def _build_stage(store: ObjectStore, the_plan: Plan, index: int, monitor: Monitor, keep_failed: bool,
                 package_cache: Path | None, inputs: list[Mount]) -> dict[str, float]:
    """Run one stage (with the mounts of its inputs) into a new tree; where its time went: its container, the
    clamp of file times, the SBOM, the commit (the rest: mounting the tree)."""
    stage = the_plan.stages[index]
    phases: dict[str, float] = {}
    reported: dict[str, str] = tree_label(the_plan.name, index, stage.id, stage.inputs)
    with tempfile.TemporaryDirectory(prefix="meta-", dir=store.scratch()) as meta, \
            store.new_tree(stage.id, stage.parent, stage.step.name, the_plan.source_epoch, reported,
                           keep_failed, the_plan.arch) as tree:
        # A second back: file times come from a coarse clock that may lag time.time() by a tick.
        since = time.time() - 1
        with _phase(phases, "container"):
            run_container(store, the_plan, stage.step, stage.image,
                          [Mount(tree, TREE_MOUNT), Mount(meta, META_MOUNT), *inputs],
                          {"tree": TREE_MOUNT, "options": stage.step.options}, monitor, package_cache)
        with _phase(phases, "clamp"):
            store.clamp(tree, the_plan.source_epoch, since)
        with _phase(phases, "sbom"):
            sbom = sboms.of_mounted(store, tree, stage.id, the_plan.source_epoch)
        reported.update(_reported(meta))
        committing = time.monotonic()
    phases["commit"] = round(time.monotonic() - committing, 3)
    sboms.save(store, stage.id, sbom)
    return phases


def run_stages(the_plan: Plan, store: ObjectStore, monitor: Monitor, remote: Remote, registries: Registries,
               keep_failed: bool = True, refresh: bool = False, package_cache: Path | None = None) -> list[Where]:
    """Build what the store (and the cache registries) lack; where each stage's tree came from.

    refresh: run again, from the first stage that fetches packages on, what the cache holds (a moving
    suite's newer packages); the new trees replace the old ones under the same ids.
    """
    total = len(the_plan.stages)
    store.prefetch(the_plan.cache_refs())
    found = locate(the_plan.stages, store, registries, fetch(store, remote),
                   refresh_from(the_plan) if refresh else None, monitor.busy)
    newest = max((i for i, where in enumerate(found) if where.place != Place.BUILD), default=-1)
    source = (found[newest].registry if newest >= 0 else None) or "store"
    used = [the_plan.base or "", *(stage.id for stage in the_plan.stages)]
    try:
        with prepared(store, the_plan, list(range(newest + 1, total)), monitor.busy) as inputs:
            _run_all(the_plan, store, monitor, newest, source, keep_failed, package_cache, inputs)
    except StageFailed:
        store.record_use(used)  # the cached prefix was a use too
        raise
    store.record_use(used)
    return found


def _run_all(the_plan: Plan, store: ObjectStore, monitor: Monitor, newest: int, source: str, keep_failed: bool,
             package_cache: Path | None, inputs: dict[int, list[Mount]]) -> None:
    """Tell every stage, cached up to newest, and build those after it."""
    total = len(the_plan.stages)
    for index, stage in enumerate(the_plan.stages):
        t0 = time.monotonic()
        monitor.stage_start(stage=stage.step.name, index=index, total=total, id=stage.id)
        cached = index <= newest
        try:
            phases = {} if cached else _build_stage(store, the_plan, index, monitor, keep_failed, package_cache,
                                                    inputs.get(index, []))
        except StageFailed as err:
            monitor.stage_failed(stage=stage.step.name, index=index, total=total, id=stage.id,
                                 seconds=round(time.monotonic() - t0, 3), error=err.args[0], kept=err.kept_ref)
            raise
        monitor.stage_done(stage=stage.step.name, index=index, total=total, id=stage.id, cached=cached,
                           source=source if cached else "built", seconds=round(time.monotonic() - t0, 3),
                           phases=phases)
