"""`osbuild-oci store`: list, clean, delete a store, and reach it with plain podman."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer

from ..errors import BuildError, UserError
from .common import LOCK_TIMEOUT, STORE, store_path

store_app = typer.Typer(help="Inspect and clean an object store.", no_args_is_help=True, rich_markup_mode=None)


@store_app.command("list")
def store_list(store: Optional[Path] = STORE,
               json_out: bool = typer.Option(False, "--json", help="JSON output")) -> None:
    """List the trees in the store: stage, size of its own layer, when it was created and last used, and
    the date of the Debian Release its packages came from."""
    from ..store.budget import human
    from ..store.objects import open_store
    with open_store(store_path(store)) as objects:
        rows = objects.listing()
    if json_out:
        print(json.dumps([{**row, "created": _iso(row["created"]), "last_used": _iso(row["last_used"])}
                          for row in rows], indent=2))
        return
    print(f"{'TREE':<12}  {'STAGE':<28}  {'SIZE':>9}  {'CREATED':<16}  {'LAST USED':<16}  PACKAGES OF")
    for row in rows:
        size = "-" if row["size"] is None else human(row["size"])
        used = "failed" if row["failed"] else _local(row["last_used"]) if row["last_used"] else "never"
        stage = row["stage"] or "(base image)"
        print(f"{row['tree'][:12]:<12}  {stage:<28}  {size:>9}  {_local(row['created']):<16}  {used:<16}  "
              f"{row['release_date'] or '-'}")


@store_app.command("gc")
def store_gc(store: Optional[Path] = STORE,
             max_size: Optional[str] = typer.Option(None, "--max-size", metavar="SIZE",
                                                    help="Remove least recently used trees until the store fits "
                                                         "(e.g. 20G) [default: the store-max-size setting]"),
             lock_timeout: float = LOCK_TIMEOUT) -> None:
    """Remove failed trees, then (with a size) least recently used trees until the store fits."""
    from ..build import settings as config
    from ..store.budget import human, parse_size
    from ..store.packagecache import PackageCache, default_dir
    from ..store.objects import open_store
    limit = max_size if max_size is not None else config.load().get("store-max-size")
    size = parse_size(limit, "--max-size") if limit is not None else None
    with open_store(store_path(store), lock_timeout) as objects:
        removed, left = objects.gc(size, others=[PackageCache(default_dir())])
    for name in removed:
        print(f"removed {name}")
    over = f"; still over {human(size)}: what is left is needed by what is kept" if size and left > size else ""
    print(f"{len(removed)} removed; the store's layers and kept outputs take {human(left)}{over}")


@store_app.command("du")
def store_du(store: Optional[Path] = STORE,
             json_out: bool = typer.Option(False, "--json", help="JSON output")) -> None:
    """Disk use of the store: its directory on disk, its layers counted once, and its kept outputs."""
    from ..store.budget import human
    from ..store.objects import open_store
    with open_store(store_path(store)) as objects:
        use = {"disk": objects.engine.disk_use(), "layers": objects.layers_size(),
               "outputs": objects.output_files_size(), "trees": len(objects.trees())}
    if json_out:
        print(json.dumps(use))
        return
    print(f"{human(use['disk'])} on disk ({use['disk']} bytes); layers {human(use['layers'])}; "
          f"kept outputs {human(use['outputs'])}; {use['trees']} trees")


def _iso(stamp: float | None) -> str | None:
    return None if not stamp else datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")


def _local(stamp: float) -> str:
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M") if stamp else "-"


@store_app.command("clean")
def store_clean(store: Optional[Path] = STORE) -> None:
    """Remove every tree from the store (stage images are not touched)."""
    from ..store.objects import open_store
    with open_store(store_path(store)) as objects:
        objects.clear()


@store_app.command("delete")
def store_delete(store: Optional[Path] = STORE) -> None:
    """Delete the whole store directory: trees, podman state and the mounts podman left."""
    from ..engine.host import unmount_below
    from ..store.objects import open_store
    path = store_path(store)
    if not (path / "storage").is_dir():
        raise UserError(f"{path} is not an osbuild-oci store (no storage/ inside); refusing to delete it")
    with open_store(path) as objects:
        objects.clear()
        service = objects.engine.service
    unmount_below(path)
    if os.geteuid() == 0:
        shutil.rmtree(path)
    else:
        # Files of the user's subordinate ids are removable only inside the user namespace.
        proc = subprocess.run(["podman", "unshare", "rm", "-rf", str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"cannot remove {path}: {proc.stderr.strip()}")
    service.remove_run_dir()


@store_app.command("podman-args")
def store_podman_args(store: Optional[Path] = STORE) -> None:
    """Print the podman flags that select the store, for `podman $(osbuild-oci store podman-args) run ...`.

    They are shell-quoted: for a store path with spaces, use `eval podman "$(osbuild-oci store podman-args)" ...`.
    """
    from ..engine.service import Service
    print(shlex.join(Service(store_path(store)).podman_args()))
