"""`osbuild-oci shell`: a shell (or one command) in the tree after any stage, or in a failed stage's tree."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UserError
from .common import (ALLOW_CAPABILITY, CACHE_FROM, LOCK_TIMEOUT, STAGES_FROM, STORE, TLS_VERIFY, load_pipeline,
                     naming, store_path, where_from)


def shell(
    pipeline: Optional[Path] = typer.Argument(None, help="JSON file describing the pipeline", dir_okay=False),
    stage: Optional[str] = typer.Option(None, "--stage", metavar="N|NAME",
                                        help="The tree after stage N (1 is the first, 0 the base) or after the "
                                             "stage named NAME [default: the last stage]"),
    failed: Optional[str] = typer.Option(None, "--failed", metavar="ID",
                                         help="The partial tree a failed stage left (its id is in the error)"),
    command: Optional[str] = typer.Option(None, "--command", "-c", metavar="CMD",
                                          help="Run CMD with /bin/sh -c instead of an interactive shell"),
    store: Optional[Path] = STORE,
    stages_from: Optional[str] = STAGES_FROM,
    cache_from: List[str] = CACHE_FROM,
    tls_verify: bool = TLS_VERIFY,
    lock_timeout: float = LOCK_TIMEOUT,
    allow_capability: List[str] = ALLOW_CAPABILITY,
) -> None:
    """Open a shell in a tree: what is missing up to that stage is built first.

    The shell runs in a throwaway container without network; nothing it does is kept.
    Other commands on the store wait until it ends.
    """
    from ..build import planner, runner
    from ..build.monitor import ProgressMonitor
    from ..tools.shell import pick_stage, run_shell
    from ..store.objects import failed_ref, open_store, tree_ref
    if (pipeline is None) == (failed is None):
        raise UserError("give either PIPELINE (with --stage) or --failed ID")
    if failed is not None and stage is not None:
        raise UserError("--stage belongs to PIPELINE; --failed names the tree itself")
    remote, policy = where_from(stages_from, cache_from, None, tls_verify, allow_capability)
    model = load_pipeline(pipeline) if pipeline is not None else None
    with naming(pipeline) if pipeline is not None else nullcontext():
        count = pick_stage(model, stage) if model is not None else 0
    with open_store(store_path(store), lock_timeout) as objects:
        if failed is not None:
            image = failed_ref(failed)
            if objects.engine.image(image) is None:
                kept = "".join(f"\n    {stage_id}" for stage_id, _ in objects.failed()) or " none"
                raise UserError(f"--failed {failed}: no failed tree of that id in {objects.engine.store}; "
                                f"kept failures:{kept}")
        else:
            partial = replace(model, stages=model.stages[:count], assembler=None)
            with naming(pipeline), objects.unchanged_on_user_error():
                the_plan = planner.plan(partial, objects, remote, policy)
            image = tree_ref(runner.run(the_plan, objects, ProgressMonitor(), None, remote))
        status = run_shell(objects.engine.podman_args(), image, command)
    sys.exit(status)

