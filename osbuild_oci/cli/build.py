"""`osbuild-oci build`: plan a pipeline, run what the store lacks, assemble, share the trees."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UserError
from .common import (ALLOW_CAPABILITY, CACHE_FROM, LOCK_TIMEOUT, SIGN_KEY, SIGN_PASSPHRASE, STAGES_FROM, STORE,
                     TLS_VERIFY, TRUST_KEY, load_pipeline, naming, signing_key, store_path, where_from)


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
    stages_from: Optional[str] = STAGES_FROM,
    cache_from: List[str] = CACHE_FROM,
    cache_to: Optional[str] = typer.Option(None, "--cache-to", metavar="REGISTRY/NAMESPACE/REPO",
                                           help="Push every tree of the pipeline here (tag = tree id)"),
    tls_verify: bool = TLS_VERIFY,
    lock_timeout: float = LOCK_TIMEOUT,
    keep_failed: bool = typer.Option(True, "--keep-failed/--no-keep-failed",
                                     help="Keep a failed stage's partial tree for `osbuild-oci shell --failed`"),
    refresh: bool = typer.Option(False, "--refresh",
                                 help="Run again the first stage that fetches packages (its image asks for the "
                                      "network) and every stage after it, even when cached: a moving suite's "
                                      "updates; the new trees replace the old ones"),
    package_cache: Optional[Path] = typer.Option(None, "--package-cache", metavar="DIR", file_okay=False,
                                                 help="Directory of downloaded .debs shared by builds and stores "
                                                      "[default: ~/.cache/osbuild-oci/packages]"),
    allow_capability: List[str] = ALLOW_CAPABILITY,
    trust_key: List[Path] = TRUST_KEY,
    sign_key: Optional[Path] = SIGN_KEY,
    sign_passphrase_file: Optional[Path] = SIGN_PASSPHRASE,
    lock: Optional[Path] = typer.Option(None, "--lock", metavar="FILE", dir_okay=False,
                                        help="Write the id (and registry digest) of every stage, assembler and "
                                             "base image the build used to FILE, sorted JSON to commit"),
    locked: bool = typer.Option(False, "--locked",
                                help="Build with exactly the images the --lock FILE pins (pulled by digest if "
                                     "missing) and leave FILE as it is; a stage it lacks is refused"),
    store_max_size: Optional[str] = typer.Option(None, "--store-max-size", metavar="SIZE",
                                                 help="After the build, remove least recently used trees until "
                                                      "the store fits (e.g. 20G) [default: the store-max-size "
                                                      "setting of ~/.config/osbuild-oci/config.toml]"),
) -> None:
    """Build PIPELINE: run the stages the store lacks, then the assembler into OUTPUT."""
    from ..build import planner, runner
    from ..store import packagecache
    from ..registry.artifacts import push_sbom
    from ..build.monitor import JsonMonitor, ProgressMonitor
    from ..store.objects import image_name, open_store
    from ..build import lockfile, settings as config
    from ..store.budget import parse_size
    limit = store_max_size if store_max_size is not None else config.load().get("store-max-size")
    max_size = parse_size(limit, "--store-max-size") if limit is not None else None
    key = signing_key(sign_key, sign_passphrase_file)
    if key is not None and not (cache_to or push):
        raise UserError("--sign-key signs what --cache-to and --push push; give one of them")
    if locked and lock is None:
        raise UserError("--locked builds with the images a lock file pins; name it with --lock FILE")
    pins = lockfile.load(lock) if locked and lock is not None else None
    remote, policy = where_from(stages_from, cache_from, cache_to, tls_verify, allow_capability, trust_key, key)
    model = load_pipeline(pipeline)
    with naming(pipeline):
        planner.check_output(output, model.assembler is not None)
    if (tag or push) and not model.stages and model.base is None:
        raise UserError("--tag/--push: the pipeline has no stages and no base, so there is no tree to name")
    with open_store(store_path(store), lock_timeout) as objects:
        with naming(pipeline), objects.unchanged_on_user_error():
            the_plan = planner.plan(model, objects, remote, policy, pins)
            new_lock = planner.lock_of(the_plan, objects, lock, model.base) if lock and not locked else None
        monitor = JsonMonitor() if json_events else ProgressMonitor()
        cache = packagecache.prepare(package_cache) if any(s.image.package_cache for s in the_plan.stages) else None
        final = runner.run(the_plan, objects, monitor, output if the_plan.assembler else None, remote,
                           keep_failed, refresh, cache)
        for name in tag:
            objects.tag(final, name)
        for destination in push:
            objects.push(final, image_name(destination), tls_verify, key)
            push_sbom(objects.sbom(final), image_name(destination), tls_verify, key)
        if new_lock is not None:
            new_lock.write()
        if max_size is not None:
            keep = {s.id for s in the_plan.stages} | {the_plan.base or "", the_plan.output_id or ""}
            removed, size = objects.gc(max_size, keep=keep,
                                       others=[packagecache.PackageCache(package_cache or packagecache.default_dir())])
            monitor.store_trimmed(removed=removed, size=size, max_size=max_size)
