"""The assembler step: the final tree, read-only, made into an image file in `-o`, or the same output copied
from where it was kept before.

The assembler writes into a private directory of the store, never into `-o`:
what it leaves is hostile until checked (store/files.py), and only then kept
and copied into `-o`.  Its tree's SBOM goes beside the output, and is kept
with it, so a cached output needs no tree mounted to read the packages.  An
output made with secrets is neither kept nor looked up: its id cannot name them.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..engine.model import Mount
from ..pipeline.model import SECRETS_MOUNT
from ..store import files, outputs, sboms
from ..store.objects import ObjectStore
from .locate import Registries
from .monitor import Monitor
from .planner import Plan, Remote
from .runner import TREE_MOUNT, run_container

OUTPUT_MOUNT = "/run/osbuild/output"


def _write_sbom(private: Path, name: str, document: str) -> None:
    """The SBOM into the private output, never through a link the assembler planted under its name."""
    fd = os.open(private / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(document)
        out.flush()
        os.fsync(out.fileno())


def _run(the_plan: Plan, store: ObjectStore, monitor: Monitor, private: Path) -> None:
    step, image = the_plan.assembler
    secrets = [Mount(str(path), f"{SECRETS_MOUNT}/{name}", read_only=True) for name, path in the_plan.secrets.items()]
    with store.get_tree(the_plan.final) as tree:
        run_container(store, the_plan, step, image,
                      [Mount(tree, TREE_MOUNT, read_only=True), Mount(str(private), OUTPUT_MOUNT), *secrets],
                      {"tree": TREE_MOUNT, "output": OUTPUT_MOUNT, "options": step.options}, monitor,
                      remove_discarded=True)
    files.sanitize(private)
    if the_plan.final is not None:
        _write_sbom(private, f"{step.options.get('filename', step.name)}.spdx.json", sboms.read(store, the_plan.final))


def assemble(the_plan: Plan, store: ObjectStore, monitor: Monitor, output: Path, remote: Remote,
             registries: Registries, refresh: bool = False) -> bool:
    """Run the assembler into output, or copy what it wrote before for the same tree, image and options (not
    after --refresh: the trees were rebuilt under their old ids).  Whether the output may be shared."""
    step, _ = the_plan.assembler
    oid = the_plan.output_id
    t0 = time.monotonic()
    monitor.assembler_start(assembler=step.name)
    cacheable = not the_plan.secrets
    source = None
    if cacheable and not refresh:
        source = "store" if outputs.has(store, oid) else registries.first(
            lambda repo: outputs.remote_tag(repo, oid),
            lambda repo: outputs.fetch(store, oid, repo, remote.tls_verify, remote.trust), monitor.busy)
    target = files.open_target(output)
    try:
        if source is not None:
            copied = outputs.restore(store, oid, target)
        else:
            private = outputs.private_dir(store)
            try:
                _run(the_plan, store, monitor, private)
                kept = outputs.keep(store, oid, private) if cacheable else private
                copied = files.copy_out(kept, target, files.invoking_user())
            finally:
                shutil.rmtree(private, ignore_errors=True)
    finally:
        os.close(target)
    if cacheable:
        store.usage.touch([oid])
    monitor.assembler_done(assembler=step.name, seconds=round(time.monotonic() - t0, 3), output=str(output),
                           files=sorted(name for name in copied if "/" not in name), id=oid,
                           cached=source is not None, source=source or "built")
    return cacheable
