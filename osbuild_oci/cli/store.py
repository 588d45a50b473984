"""`osbuild-oci store`: list, clean, delete a store, and reach it with plain podman."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Optional

import typer

from ..errors import BuildError, UserError
from .common import STORE, store_path

store_app = typer.Typer(help="Inspect and clean an object store.", no_args_is_help=True, rich_markup_mode=None)


@store_app.command("list")
def store_list(store: Optional[Path] = STORE,
               json_out: bool = typer.Option(False, "--json", help="JSON output")) -> None:
    """List the trees in the store."""
    from ..store import LABEL_STAGE, open_store, tree_ref
    with open_store(store_path(store)) as objects:
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
    from ..store import open_store
    with open_store(store_path(store)) as objects:
        objects.clear()


@store_app.command("delete")
def store_delete(store: Optional[Path] = STORE) -> None:
    """Delete the whole store directory: trees, podman state and the mounts podman left."""
    from ..engine.host import unmount_below
    from ..store import open_store
    path = store_path(store)
    if not (path / "storage").is_dir():
        raise UserError(f"{path} is not an osbuild-oci store (no storage/ inside); refusing to delete it")
    with open_store(path) as objects:
        objects.clear()
    unmount_below(path)
    if os.geteuid() == 0:
        shutil.rmtree(path)
    else:
        # Files of the user's subordinate ids are removable only inside the user namespace.
        proc = subprocess.run(["podman", "unshare", "rm", "-rf", str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise BuildError(f"cannot remove {path}: {proc.stderr.strip()}")


@store_app.command("podman-args")
def store_podman_args(store: Optional[Path] = STORE) -> None:
    """Print the podman flags that select the store, for `podman $(osbuild-oci store podman-args) run ...`.

    They are shell-quoted: for a store path with spaces, use `eval podman "$(osbuild-oci store podman-args)" ...`.
    """
    from ..engine.service import Service
    print(shlex.join(Service(store_path(store)).podman_args()))
