"""The `osbuild-oci` command line.

User mistakes exit 2 with one line naming what and where; build failures exit
1; neither prints a traceback.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

import typer
from rich.console import Console
from rich.table import Table

from . import pipeline as pipeline_model
from . import planner, registry, runner, stagebuild
from .engine import localstorage
from .engine.host import unmount_below
from .engine.service import Engine
from .errors import BuildError, OsbuildOciError, UserError
from .monitor import JsonMonitor, ProgressMonitor
from .stageimage import LABEL_CAPABILITIES, LABEL_KIND, LABEL_NETWORK, LABEL_SCHEMA, local_ref
from .store import LABEL_STAGE, ObjectStore, tree_ref

SOURCES = Path(__file__).resolve().parent / "sources"


def _default_store() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "osbuild-oci" / "store"


STORE = typer.Option(None, "--store", envvar="OSBUILD_OCI_STORE", file_okay=False,
                     help="Directory of the object store (its own containers-storage) "
                          "[default: ~/.cache/osbuild-oci/store]")

SOURCE = typer.Option(SOURCES, "--source", file_okay=False,
                      help="Source tree with base/, stages/ and assemblers/ [default: the ones installed with osbuild-oci]")

LOCK_TIMEOUT = typer.Option(3600.0, "--lock-timeout", metavar="SECONDS",
                            help="How long to wait for another osbuild-oci process using the same store")

TLS_VERIFY = typer.Option(True, "--tls-verify/--no-tls-verify",
                          help="Require HTTPS with a valid certificate; --no-tls-verify allows plain-HTTP registries")

app = typer.Typer(help="Build operating-system images from pipelines of OCI stage images.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
stages_app = typer.Typer(help="Build, list, inspect and publish stage and assembler images.", no_args_is_help=True)
store_app = typer.Typer(help="Inspect and clean an object store.", no_args_is_help=True)
app.add_typer(stages_app, name="stages")
app.add_typer(store_app, name="store")
out = Console(highlight=False)


def _wait_for_lock(lock, path: Path, timeout: float) -> None:
    """Take the store's lock; while another process holds it, say so once and wait up to timeout."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise BuildError(f"store {path} is still in use by another osbuild-oci process after "
                                 f"{timeout:g} s; raise --lock-timeout or use another --store") from None
            if not told:
                print(f"waiting for store {path}: another osbuild-oci process is using it "
                      f"(--lock-timeout {timeout:g} s)", file=sys.stderr, flush=True)
                told = True
            time.sleep(0.2)


@contextmanager
def open_store(store: Optional[Path], lock_timeout: float = 3600.0) -> Iterator[ObjectStore]:
    """The store, locked against a second osbuild-oci process, with its podman service running."""
    path = (store or _default_store()).resolve()
    if path.exists() and not path.is_dir():
        raise UserError(f"--store {path} is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    with open(path / ".lock", "w") as lock:
        _wait_for_lock(lock, path, lock_timeout)
        with Engine(path) as engine:
            yield ObjectStore(engine)


@contextmanager
def _naming(pipeline: Path) -> Iterator[None]:
    """Prefix an input error with the pipeline file, so the user knows which file to fix."""
    try:
        yield
    except UserError as err:
        raise UserError(err.message, f"{pipeline}: {err.where}" if err.where else str(pipeline)) from None


@app.command()
def build(
    pipeline: Path = typer.Argument(..., help="JSON file describing the pipeline", dir_okay=False),
    output: Path = typer.Option(..., "--output", "-o", help="Empty (or new) directory for the assembler's output"),
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
    allow_capability: List[str] = typer.Option([], "--allow-capability", metavar="CAP",
                                               help="Grant stage images this capability beyond the allowlist "
                                                    "(repeatable; only for images you trust)"),
) -> None:
    """Build PIPELINE: run the stages the store lacks, then the assembler into OUTPUT."""
    remote = planner.Remote(stages_from, tuple(cache_from), cache_to, tls_verify)
    extra = {c.upper() if c.upper().startswith("CAP_") else f"CAP_{c.upper()}" for c in allow_capability}
    policy = planner.Policy(planner.Policy().capabilities | extra)
    for cap in sorted(extra - planner.Policy().capabilities):
        print(f"note: --allow-capability {cap}: stage images that ask for it get it", file=sys.stderr)
    with _naming(pipeline):
        model = pipeline_model.load(pipeline)
        planner.check_output(output)
    for note in model.notes:
        print(f"note: {pipeline}: {note}", file=sys.stderr)
    if (tag or push) and not model.stages and model.base is None:
        raise UserError("--tag/--push: the pipeline has no stages and no base, so there is no tree to name")
    with open_store(store, lock_timeout) as objects:
        with _naming(pipeline):
            the_plan = planner.plan(model, objects, remote, policy)
        monitor = JsonMonitor() if json_events else ProgressMonitor()
        final = runner.run(the_plan, objects, monitor, output if the_plan.assembler else None, remote)
        for name in tag:
            objects.tag(final, name)
        for destination in push:
            objects.push(final, destination, tls_verify)


@stages_app.command("build")
def stages_build(
    only: List[str] = typer.Option([], "--only", help="Build only this stage or assembler (repeatable)"),
    source: Path = SOURCE,
) -> None:
    """Build every stage and assembler folder into a local image; unchanged ones are kept."""
    for src, built in stagebuild.build_all(source, only or None, lambda msg: print(msg, file=sys.stderr)):
        print(f"{src.ref}  {'built' if built else 'up to date'}")


@stages_app.command("push")
def stages_push(
    namespace: str = typer.Argument(..., metavar="REGISTRY/NAMESPACE"),
    tls_verify: bool = TLS_VERIFY,
    source: Path = SOURCE,
) -> None:
    """Publish every built stage and assembler image as REGISTRY/NAMESPACE/NAME, printing pinned references."""
    if not registry.is_remote(namespace):
        raise UserError(f"{namespace} names no registry; give REGISTRY/NAMESPACE such as registry.example.com/osbuild")
    for src in stagebuild.find_sources(source):
        if localstorage.image(src.ref) is None:
            raise UserError(f"{src.ref} is not built; run `osbuild-oci stages build` first")
        destination = local_ref(src.name, namespace)
        digest = localstorage.push(src.ref, destination, tls_verify)
        print(f"{destination.rsplit(':', 1)[0]}@{digest}")


@stages_app.command("list")
def stages_list(json_out: bool = typer.Option(False, "--json", help="JSON output"), source: Path = SOURCE) -> None:
    """List the stage and assembler images of the source tree, and whether they are built."""
    rows = []
    for src in stagebuild.find_sources(source):
        info = localstorage.image(src.ref)
        labels = info.labels if info else {}
        rows.append({"name": src.name, "image": src.ref, "id": info.id if info else None,
                     "kind": labels.get(LABEL_KIND), "network": labels.get(LABEL_NETWORK, "false") == "true",
                     "capabilities": labels.get(LABEL_CAPABILITIES, "").split()})
    if json_out:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "kind", "image id", "network", "capabilities")
    for r in rows:
        table.add_row(r["name"], r["kind"] or "-", (r["id"] or "not built")[:12], "yes" if r["network"] else "no",
                      " ".join(r["capabilities"]))
    out.print(table)


@stages_app.command("show")
def stages_show(name: str) -> None:
    """Print the options schema a stage image carries."""
    info = localstorage.image(local_ref(name))
    if info is None or LABEL_SCHEMA not in info.labels:
        raise UserError(f"no stage image {local_ref(name)}; run `osbuild-oci stages list`")
    print(json.dumps(json.loads(info.labels[LABEL_SCHEMA]), indent=2))


@store_app.command("list")
def store_list(store: Optional[Path] = STORE,
               json_out: bool = typer.Option(False, "--json", help="JSON output")) -> None:
    """List the trees in the store."""
    with open_store(store) as objects:
        trees = [{"tree": tree_id, "image": tree_ref(tree_id), "stage": info.labels.get(LABEL_STAGE, "")}
                 for tree_id, info in objects.trees()]
    if json_out:
        print(json.dumps(trees, indent=2))
        return
    for t in trees:
        print(f"{t['tree']}  {t['stage']}")


@store_app.command("clean")
def store_clean(store: Optional[Path] = STORE) -> None:
    """Remove every tree from the store (stage images are not touched)."""
    with open_store(store) as objects:
        objects.clear()


@store_app.command("delete")
def store_delete(store: Optional[Path] = STORE) -> None:
    """Delete the whole store directory: trees, podman state and the mounts podman left."""
    path = (store or _default_store()).resolve()
    if not (path / "storage").is_dir():
        raise UserError(f"{path} is not an osbuild-oci store (no storage/ inside); refusing to delete it")
    with open_store(path) as objects:
        objects.engine.prune()
    unmount_below(path)
    shutil.rmtree(path)


@store_app.command("podman-args")
def store_podman_args(store: Optional[Path] = STORE) -> None:
    """Print the podman flags that select the store, for `podman $(osbuild-oci store podman-args) run ...`."""
    print(" ".join(Engine((store or _default_store()).resolve()).podman_args()))


def main() -> None:
    # SIGTERM unwinds like an exception, so running containers and uncommitted trees are removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        app()
    except OsbuildOciError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
