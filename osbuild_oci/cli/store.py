"""`osbuild-oci store`: list, trim, measure, clean and delete a store, and reach it with plain podman."""

from __future__ import annotations

import json
import shlex

from ..build.options import Options
from .common import app, command, group

store_app = group("Inspect and clean an object store.")
app.add_typer(store_app, name="store")


@command(store_app, "store", "json", name="list")
def store_list(options: Options) -> None:
    """List the trees in the store: stage, size of its own layer, when it was created and last used, and
    the date of the Debian Release its packages came from."""
    from ..store import gc
    from ..store.lock import open_store
    from ..units import human, iso_time, local_time
    with open_store(options.store) as store:
        rows = gc.listing(store)
    if options.json:
        print(json.dumps([{**row, "created": iso_time(row["created"]), "last_used": iso_time(row["last_used"])}
                          for row in rows], indent=2))
        return
    print(f"{'TREE':<12}  {'STAGE':<28}  {'SIZE':>9}  {'CREATED':<16}  {'LAST USED':<16}  PACKAGES OF")
    for row in rows:
        size = "-" if row["size"] is None else human(row["size"])
        used = "failed" if row["failed"] else local_time(row["last_used"]) if row["last_used"] else "never"
        print(f"{row['tree'][:12]:<12}  {row['stage'] or '(base image)':<28}  {size:>9}  "
              f"{local_time(row['created']):<16}  {used:<16}  {row['release_date'] or '-'}")


@command(store_app, "store", "max_size", "lock_timeout", name="gc")
def store_gc(options: Options) -> None:
    """Remove failed trees, then (with a size) least recently used trees until the store fits."""
    from ..store import gc
    from ..store.lock import open_store
    from ..store import sources
    from ..store.packagecache import PackageCache, default_dir
    from ..units import human
    size = options.size_limit()
    with open_store(options.store, options.lock_timeout) as store:
        removed, left = gc.collect(store, size, others=[PackageCache(default_dir()), sources.budgeted()])
    for name in removed:
        print(f"removed {name}")
    over = f"; still over {human(size)}: what is left is needed by what is kept" if size and left > size else ""
    print(f"{len(removed)} removed; the store's layers and kept outputs take {human(left)}{over}")


@command(store_app, "store", "json", name="du")
def store_du(options: Options) -> None:
    """Disk use of the store: its directory on disk, its layers counted once, and its kept outputs."""
    from ..store import gc
    from ..store.lock import open_store
    from ..units import human
    with open_store(options.store) as store:
        use = gc.usage(store)
    if options.json:
        print(json.dumps(use))
        return
    print(f"{human(use['disk'])} on disk ({use['disk']} bytes); layers {human(use['layers'])}; "
          f"kept outputs {human(use['outputs'])}; {use['trees']} trees")


@command(store_app, "store", name="clean")
def store_clean(options: Options) -> None:
    """Remove every tree from the store (stage images are not touched)."""
    from ..store import gc
    from ..store.lock import open_store
    with open_store(options.store) as store:
        gc.clear(store)


@command(store_app, "store", name="delete")
def store_delete(options: Options) -> None:
    """Delete the whole store directory: trees, podman state and the mounts podman left."""
    from ..store.lock import delete_store
    delete_store(options.store)


@command(store_app, "store", name="podman-args")
def store_podman_args(options: Options) -> None:
    """Print the podman flags that select the store, for `podman $(osbuild-oci store podman-args) run ...`.

    They are shell-quoted: for a store path with spaces, use `eval podman "$(osbuild-oci store podman-args)" ...`.
    """
    from ..store.lock import podman_args
    print(shlex.join(podman_args(options.store)))
