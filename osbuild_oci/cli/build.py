"""`osbuild-oci build`: plan a pipeline, run what the store lacks, assemble, share the trees."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UserError
from .common import LOCK_TIMEOUT, STORE, TLS_VERIFY, naming, store_path


def build(
    pipeline: Path = typer.Argument(..., metavar="PIPELINE", help="JSON file describing the pipeline",
                                   dir_okay=False),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Empty (or new) directory for the assembler's output; "
                                               "needed when the pipeline has an assembler"),
    store: Optional[Path] = STORE,
    json_events: bool = typer.Option(False, "--json", help="Print one JSON object per event on stdout"),
    tag: List[str] = typer.Option([], "--tag", help="Also tag the final tree image with this name (repeatable)"),
    push: List[str] = typer.Option([], "--push", help="Push the final tree image to this reference (repeatable)"),
    stages_from: Optional[str] = typer.Option(None, "--stages-from", metavar="REGISTRY/NAMESPACE",
                                              help="Resolve stage names to REGISTRY/NAMESPACE/NAME:latest"),
    cache_from: List[str] = typer.Option([], "--cache-from", metavar="REGISTRY/NAMESPACE/REPO",
                                         help="Look up trees missing from the store here (tag = tree id)"),
    cache_to: Optional[str] = typer.Option(None, "--cache-to", metavar="REGISTRY/NAMESPACE/REPO",
                                           help="Push every tree of the pipeline here (tag = tree id)"),
    tls_verify: bool = TLS_VERIFY,
    lock_timeout: float = LOCK_TIMEOUT,
    package_cache: Optional[Path] = typer.Option(None, "--package-cache", metavar="DIR", file_okay=False,
                                                 help="Directory of downloaded .debs shared by builds and stores "
                                                      "[default: ~/.cache/osbuild-oci/packages]"),
    allow_capability: List[str] = typer.Option([], "--allow-capability", metavar="CAP",
                                               help="Grant stage images this capability beyond the allowlist "
                                                    "(repeatable; only for images you trust)"),
) -> None:
    """Build PIPELINE: run the stages the store lacks, then the assembler into OUTPUT."""
    from .. import pipeline as pipeline_model
    from .. import packagecache, planner, runner
    from ..monitor import JsonMonitor, ProgressMonitor
    from ..store import open_store
    remote = planner.Remote(stages_from, tuple(cache_from), cache_to, tls_verify)
    extra = {c.upper() if c.upper().startswith("CAP_") else f"CAP_{c.upper()}" for c in allow_capability}
    policy = planner.Policy(planner.Policy().capabilities | extra)
    for cap in sorted(extra - planner.Policy().capabilities):
        print(f"note: --allow-capability {cap}: stage images that ask for it get it", file=sys.stderr)
    with naming(pipeline):
        model = pipeline_model.load(pipeline)
        planner.check_output(output, model.assembler is not None)
    for note in model.notes:
        print(f"note: {pipeline}: {note}", file=sys.stderr)
    if (tag or push) and not model.stages and model.base is None:
        raise UserError("--tag/--push: the pipeline has no stages and no base, so there is no tree to name")
    with open_store(store_path(store), lock_timeout) as objects:
        with naming(pipeline), objects.unchanged_on_user_error():
            the_plan = planner.plan(model, objects, remote, policy)
        monitor = JsonMonitor() if json_events else ProgressMonitor()
        cache = packagecache.prepare(package_cache) if any(s.image.package_cache for s in the_plan.stages) else None
        final = runner.run(the_plan, objects, monitor, output if the_plan.assembler else None, remote, cache)
        for name in tag:
            objects.tag(final, name)
        for destination in push:
            objects.push(final, destination, tls_verify)
