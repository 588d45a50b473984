"""Files written into a tree as their owners: ids from the tree's own accounts, each file made beside its place.

What org.osbuild-oci.files, org.osbuild-oci.copy and org.osbuild.apt (a kept source's key) share.  A file is
filled under a temporary name in its folder (resolved inside the tree), given its owner and mode, then renamed
into place: a link already there is replaced, never written through.
"""

import os
import tempfile
from typing import Callable

from osbuild_stage import StageError, in_tree


def account_ids(tree: str, database: str) -> dict:
    """Names to ids from the tree's /etc/passwd or /etc/group (empty when the tree has none)."""
    path = in_tree(tree, f"/etc/{database}")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return {fields[0]: int(fields[2]) for fields in (line.split(":") for line in f)
                if len(fields) > 3 and fields[2].isdigit()}


def account_id(names: dict, name: str, database: str, path: str) -> int:
    """The id of an owner or group an option names: a number, or a name of the tree's (root always is 0)."""
    if name.isdigit():
        return int(name)
    if name in names:
        return names[name]
    if name == "root":
        return 0
    raise StageError(f"{path}: {name!r} is not in the tree's /etc/{database}; create it first (org.osbuild.users)")


def place_in_tree(tree: str, path: str) -> tuple:
    """Where path goes: its folder resolved inside the tree (created 0755 if missing) and its own name."""
    parent = in_tree(tree, os.path.dirname(path))
    os.makedirs(parent, mode=0o755, exist_ok=True)
    return parent, os.path.basename(path)


def rename_into(tmp: str, parent: str, name: str) -> None:
    """Put a file made next to its place under its name: an existing file or link there is replaced, never
    written through."""
    try:
        os.rename(tmp, os.path.join(parent, name))
    except OSError:
        os.unlink(tmp)
        raise


def put_file(tree: str, path: str, write: Callable, uid: int, gid: int, mode: int) -> None:
    """Make the file at path in the tree: write(file) fills it under a temporary name beside its place, then it
    gets its owner, then its mode (chown clears setuid and setgid bits), then its name."""
    parent, name = place_in_tree(tree, path)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=".osbuild-")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            os.fchown(f.fileno(), uid, gid)
            os.fchmod(f.fileno(), mode)
    except BaseException:
        os.unlink(tmp)
        raise
    rename_into(tmp, parent, name)
