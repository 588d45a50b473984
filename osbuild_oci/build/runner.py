"""Runs a plan: every stage the store lacks in its own container, then the assembler.

A stage's tree is committed under its id only when its container exits 0;
anything else (a failure, Ctrl-C, SIGTERM) removes the working container, so
nothing is ever stored half-built under a stage id.  A failed stage's tree is
kept under another name (`store.failed_ref`) for a shell to look into.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .. import safefiles
from ..pipeline import arch
from ..store import outputs
from ..registry.artifacts import push_sbom
from ..engine.model import ContainerSpec, Mount
from ..errors import RegistryError, StageFailed, Untrusted
from .monitor import Monitor
from ..pipeline.model import Step
from .planner import Plan, Remote
from ..stages.image import StageImage
from ..store.objects import LABEL_RELEASE, ObjectStore, tree_ref

TREE_MOUNT = "/run/osbuild/tree"
OUTPUT_MOUNT = "/run/osbuild/output"
# Where a stage may report facts about its tree (osbuild_stage.record_release_date).
META_MOUNT = "/run/osbuild/meta"
_RELEASE_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
# Outside the tree: nothing under it can reach a layer, and it is no input of a stage id.
CACHE_MOUNT = "/run/osbuild/cache"


class _Tail:
    """The last lines a container printed, for the error message when it fails."""

    def __init__(self, monitor: Monitor):
        self.monitor, self.data = monitor, b""

    def __call__(self, fd: int, chunk: bytes) -> None:
        self.monitor.output(fd, chunk)
        self.data = (self.data + chunk)[-4096:]

    def lines(self, n: int = 10) -> str:
        return "\n".join("    " + line for line in self.data.decode(errors="replace").splitlines()[-n:])


def _run_container(store: ObjectStore, step: Step, image: StageImage, mounts: list[Mount], document: dict,
                   monitor: Monitor, the_plan: Plan, package_cache: Path | None = None,
                   remove_discarded: bool = False) -> None:
    """Run a stage's or the assembler's container; its environment names the tree's architecture both ways
    (Debian's, as the pipeline's arch, and OCI's, as image configs), for a program that must say it."""
    tail = _Tail(monitor)
    if image.package_cache and package_cache is not None:
        mounts = [*mounts, Mount(str(package_cache), CACHE_MOUNT)]
    env = {"OSBUILD_STAGE": step.name, "SOURCE_DATE_EPOCH": str(the_plan.source_epoch),
           "OSBUILD_ARCH": the_plan.arch, "OSBUILD_OCI_ARCH": arch.ARCHES[the_plan.arch].oci}
    spec = ContainerSpec(image=image.id, mounts=mounts, network=image.network, capabilities=list(image.capabilities),
                         env=env, stdin=json.dumps(document).encode())
    status = store.engine.run(spec, tail, remove_discarded)
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


def _refresh_from(the_plan: Plan) -> int:
    """The first stage that fetches packages (its image asks for the network): --refresh runs it and all after."""
    return next((i for i, stage in enumerate(the_plan.stages) if stage.image.network), len(the_plan.stages))


def _cached_prefix(the_plan: Plan, store: ObjectStore, remote: Remote, monitor: Monitor, repos: list[str],
                   limit: int) -> tuple[int, str]:
    """How many leading stages (at most limit) need not run, and where their tree is: newest first,
    local before remote.

    Only the newest cached tree is pulled; it holds every earlier stage's layer.  With
    trust keys, a tree none of them signed is a miss, never pulled (`_first_registry`).
    """
    store.engine.prefetch(the_plan.cache_refs())
    for index in reversed(range(limit)):
        tree_id = the_plan.stages[index].id
        if store.has_tree(tree_id):
            return index + 1, "store"
        repo = _first_registry(repos, monitor, lambda repo: f"{repo}:{tree_id}",
                               lambda repo: store.fetch(tree_id, repo, remote.tls_verify, remote.trust))
        if repo is not None:
            return index + 1, repo
    return 0, "store"


def _first_registry(repos: list[str], monitor: Monitor, image: Callable[[str], str],
                    fetch: Callable[[str], bool]) -> str | None:
    """The first cache registry fetch(repo) pulled from, else None.  An image no trusted key signed is
    a miss (`cache-untrusted`); a registry that cannot be reached is reported once and dropped from repos."""
    for repo in list(repos):
        monitor.busy(f"looking up and pulling {image(repo)}")
        try:
            if fetch(repo):
                return repo
        except Untrusted as err:
            monitor.cache_untrusted(image=image(repo), reason=err.reason)
        except RegistryError as err:
            repos.remove(repo)
            monitor.cache_unavailable(registry=repo, error=str(err))
    return None


def _push_trees(the_plan: Plan, store: ObjectStore, remote: Remote, monitor: Monitor) -> None:
    """Push every tree of the pipeline the store holds, oldest first, so each push adds one layer."""
    for stage in the_plan.stages:
        if store.has_tree(stage.id):
            t0 = time.monotonic()
            destination = f"{remote.cache_to}:{stage.id}"
            monitor.busy(f"pushing {destination}")
            store.push(stage.id, destination, remote.tls_verify, remote.sign_key)
            push_sbom(store.sbom(stage.id), destination, remote.tls_verify, remote.sign_key)
            monitor.tree_pushed(stage=stage.step.name, id=stage.id, image=destination,
                                seconds=round(time.monotonic() - t0, 3))


def _cached_output(oid: str, store: ObjectStore, remote: Remote, monitor: Monitor, repos: list[str]) -> str | None:
    """Where the assembler's output is already kept: the store, or a cache registry (pulled), else None."""
    if outputs.has(store, oid):
        return "store"
    return _first_registry(repos, monitor, lambda repo: outputs.remote_tag(repo, oid),
                           lambda repo: outputs.fetch(store.engine, oid, repo, remote.tls_verify, remote.trust))


def _assemble(the_plan: Plan, store: ObjectStore, monitor: Monitor, output: Path, remote: Remote,
              repos: list[str], refresh: bool) -> None:
    """Run the assembler into output, or copy what it wrote before for the same tree, image and options
    (not after --refresh: the trees were rebuilt under their old ids).  Its tree's SBOM goes beside it,
    and is kept with it, so a cached output needs no tree mounted to read the packages."""
    assert the_plan.assembler is not None
    step, image = the_plan.assembler
    oid = the_plan.output_id
    assert oid is not None
    t0 = time.monotonic()
    monitor.assembler_start(assembler=step.name)
    output.mkdir(parents=True, exist_ok=True)
    source = None if refresh else _cached_output(oid, store, remote, monitor, repos)
    if source is not None:
        outputs.restore(store, oid, output)
    else:
        with store.get_tree(the_plan.final) as tree:
            _run_container(store, step, image, [Mount(tree, TREE_MOUNT, read_only=True),
                                                Mount(str(output.resolve()), OUTPUT_MOUNT)],
                           {"tree": TREE_MOUNT, "output": OUTPUT_MOUNT, "options": step.options}, monitor,
                           the_plan, remove_discarded=True)
        if the_plan.final is not None:
            sbom = output / f"{step.options.get('filename', step.name)}.spdx.json"
            sbom.write_text(store.sbom(the_plan.final), encoding="utf-8")
        outputs.keep(store, oid, output)
    store.record_output_use(oid)
    monitor.assembler_done(assembler=step.name, seconds=round(time.monotonic() - t0, 3), output=str(output),
                           files=sorted(os.listdir(output)), id=oid, cached=source is not None,
                           source=source or "built")
    if remote.cache_to:
        t0 = time.monotonic()
        destination = outputs.remote_tag(remote.cache_to, oid)
        monitor.busy(f"pushing {destination}")
        outputs.push(store, oid, destination, remote.tls_verify, remote.sign_key)
        monitor.output_pushed(assembler=step.name, id=oid, image=destination,
                              seconds=round(time.monotonic() - t0, 3))


def _run_stages(the_plan: Plan, store: ObjectStore, monitor: Monitor, remote: Remote, repos: list[str],
                keep_failed: bool, refresh: bool, package_cache: Path | None) -> None:
    total = len(the_plan.stages)
    limit = _refresh_from(the_plan) if refresh else total
    done, source = _cached_prefix(the_plan, store, remote, monitor, repos, limit)
    for index, stage in enumerate(the_plan.stages):
        t0 = time.monotonic()
        monitor.stage_start(stage=stage.step.name, index=index, total=total, id=stage.id)
        cached = index < done
        # Where a built stage's time went: its container, the clamp, the SBOM, the commit (the rest: the mount).
        phases: dict[str, float] = {}
        if not cached:
            reported: dict[str, str] = {}
            with tempfile.TemporaryDirectory(prefix="meta-", dir=store.engine.scratch()) as meta, \
                    store.new_tree(stage.id, stage.parent, stage.step.name, the_plan.source_epoch, reported,
                                   keep_failed, the_plan.arch) as tree:
                # A second back: file times come from a coarse clock that may lag time.time() by a tick.
                since = time.time() - 1
                with _phase(phases, "container"):
                    _run_container(store, stage.step, stage.image, [Mount(tree, TREE_MOUNT), Mount(meta, META_MOUNT)],
                                   {"tree": TREE_MOUNT, "options": stage.step.options}, monitor,
                                   the_plan, package_cache)
                with _phase(phases, "clamp"):
                    store.engine.clamp(tree, the_plan.source_epoch, since)
                with _phase(phases, "sbom"):
                    sbom = store.engine.sbom(tree, stage.id, the_plan.source_epoch)
                reported.update(_reported(meta))
                committing = time.monotonic()
            phases["commit"] = round(time.monotonic() - committing, 3)
            store.save_sbom(stage.id, sbom)
        monitor.stage_done(stage=stage.step.name, index=index, total=total, id=stage.id, cached=cached,
                           source=source if cached else "built", seconds=round(time.monotonic() - t0, 3),
                           phases=phases)


@contextmanager
def _phase(phases: dict[str, float], name: str) -> Iterator[None]:
    t0 = time.monotonic()
    yield
    phases[name] = round(time.monotonic() - t0, 3)


def run(the_plan: Plan, store: ObjectStore, monitor: Monitor, output: Path | None,
        remote: Remote = Remote(), keep_failed: bool = True, refresh: bool = False,
        package_cache: Path | None = None) -> str | None:
    """Build the plan; return the final tree id.  A failed stage's tree is kept unless keep_failed is off;
    stages that ask for it get package_cache mounted.

    refresh: run again, from the first stage that fetches packages on, what the cache holds (a moving
    suite's newer packages); the new trees replace the old ones under the same ids.
    """
    started = time.monotonic()
    total = len(the_plan.stages)
    monitor.pipeline_start(name=the_plan.name, stages=total)
    if the_plan.base_image is not None:
        store.adopt(the_plan.base_image)
    used = [the_plan.base or "", *(stage.id for stage in the_plan.stages)]
    repos = list(remote.cache_from)  # the cache registries still worth asking
    try:
        _run_stages(the_plan, store, monitor, remote, repos, keep_failed, refresh, package_cache)
    except StageFailed:
        store.record_use(used)  # the cached prefix was a use too
        raise
    store.record_use(used)
    if the_plan.assembler is not None and output is not None:
        _assemble(the_plan, store, monitor, output, remote, repos, refresh)
    final = the_plan.final
    if remote.cache_to:
        _push_trees(the_plan, store, remote, monitor)
    store.engine.remove_discarded()
    monitor.build_done(tree=final, image=tree_ref(final) if final else None,
                       seconds=round(time.monotonic() - started, 3))
    return final
