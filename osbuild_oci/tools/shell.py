"""A person's look into a tree: a throwaway container of its image, no network, nothing kept.

It runs through the podman CLI on the store's storage, because only the CLI
hands the terminal to the container.  The caller holds the store's lock for
as long as the shell runs: any other command on the store would take the
shell's container for a leftover of a killed build and remove it.
"""

from __future__ import annotations

import subprocess
import sys

from dataclasses import replace
from pathlib import Path

from ..build.build import Build, load_pipeline
from ..build.monitor import ProgressMonitor
from ..build.options import Options
from ..engine.host import ulimits
from ..errors import UserError, in_file
from ..pipeline.model import Pipeline
from ..store.lock import open_store
from ..store.refs import failed_ref, tree_ref

# bash when the tree has it, else the POSIX shell every Debian tree has.
_INTERACTIVE = "command -v bash >/dev/null 2>&1 && exec bash; exec sh"


def pick_stage(pipeline: Pipeline, stage: str | None) -> int:
    """How many stages the tree of `--stage N|NAME` has: N (1-based), or the one stage named NAME; all by default."""
    count = len(pipeline.stages)
    if stage is None:
        if count == 0 and pipeline.base is None:
            raise UserError("the pipeline has no stages and no base: there is no tree to open a shell in")
        return count
    if stage.isdigit():
        if not (1 if pipeline.base is None else 0) <= int(stage) <= count:
            raise UserError(f"--stage {stage}: the pipeline has stages 1 to {count}"
                            f"{' (0 is its base)' if pipeline.base is not None else ''}")
        return int(stage)
    found = [index + 1 for index, step in enumerate(pipeline.stages) if step.name == stage]
    if len(found) != 1:
        names = ", ".join(sorted({step.name for step in pipeline.stages})) or "none"
        raise UserError(f"--stage {stage}: " + (f"the pipeline has no stage of that name (it has {names})"
                                                if not found else
                                                f"stages {', '.join(map(str, found))} have that name; give its number"))
    return found[0]


def run_shell(podman_args: list[str], image: str, command: str | None) -> int:
    """Run COMMAND (or an interactive shell) in a throwaway container of image; its exit status."""
    tty = ["-t"] if sys.stdin.isatty() and sys.stdout.isatty() else []
    limits = [f"--ulimit={u['Name']}={u['Soft']}:{u['Hard']}" for u in ulimits()]
    argv = ["podman", *podman_args, "run", "--rm", "-i", *tty, "--network=none", *limits,
            "--entrypoint", "/bin/sh", image, "-c", command if command is not None else _INTERACTIVE]
    return subprocess.run(argv).returncode


def open_shell(options: Options, path: Path | None, stage: str | None, failed: str | None,
               command: str | None) -> int:
    """A shell in the tree after `stage` of the pipeline at path (built first where missing), or in the partial
    tree a failed stage left; its exit status."""
    if (path is None) == (failed is None):
        raise UserError("give either PIPELINE (with --stage) or --failed ID")
    if failed is not None and stage is not None:
        raise UserError("--stage belongs to PIPELINE; --failed names the tree itself")
    pipeline = load_pipeline(path) if path is not None else None
    if pipeline is not None:
        with in_file(path):
            count = pick_stage(pipeline, stage)
    with open_store(options.store, options.lock_timeout) as store:
        if failed is not None:
            image = failed_ref(failed)
            if store.image(image) is None:
                kept = "".join(f"\n    {stage_id}" for stage_id, _ in store.failed()) or " none"
                raise UserError(f"--failed {failed}: no failed tree of that id in {store.path}; kept failures:{kept}")
        else:
            build = Build(options, path, replace(pipeline, stages=pipeline.stages[:count], assembler=None),
                          ProgressMonitor())
            image = tree_ref(build.run_in(store))
        return run_shell(store.podman_args(), image, command)
