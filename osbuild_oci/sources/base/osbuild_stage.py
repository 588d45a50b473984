"""What every stage and assembler program shares: the stdin contract, paths inside the tree, clear failures.

A stage reads {"tree": PATH, "options": {...}} on stdin (assemblers also get
"output"), changes the tree with the distribution's own tools, and exits
non-zero with one clear line on stderr when it cannot.  A failure of the
stage's own code is not the user's: it keeps its traceback.
"""

import json
import os
import subprocess
import sys
from typing import Callable, Sequence

DEBOOTSTRAP_HINT = "start the pipeline with org.osbuild.debootstrap"
# As the kernel's MAXSYMLINKS: a loop of links inside the tree must end, not hang the stage.
MAX_SYMLINKS = 40


class StageError(Exception):
    """A failure the stage explains to the user in one line."""


def run(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a tool, streaming its output; a non-zero exit becomes a StageError naming it."""
    try:
        proc = subprocess.run(list(cmd), **kwargs)
    except FileNotFoundError:
        raise StageError(f"{cmd[0]} is not installed in this stage image") from None
    if proc.returncode != 0:
        raise StageError(f"{' '.join(cmd)} exited with status {proc.returncode}")
    return proc


def chroot(tree: str, cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command inside the tree, with a clean environment as on a booted system."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
           "DEBIAN_FRONTEND": "noninteractive", **kwargs.pop("env", {})}
    return run(["chroot", tree, *cmd], env=env, **kwargs)


def in_tree(tree: str, path: str) -> str:
    """Where `path` is for a process chrooted into tree, as a path the stage can write to.

    Every symlink on the way is followed as the chroot would follow it (an
    absolute target starts again at the tree's root) and `..` never climbs
    above the tree's root, so a symlink in the tree, whatever it points to,
    cannot send a write outside the tree.  Components that do not exist yet are
    kept as given; nothing is created.  (osbuild's in_tree only checks that a
    path stays below the tree; resolving inside it is what a chroot does and
    what the tree's own programs will see.)
    """
    resolved: list[str] = []
    pending = list(reversed(path.split("/")))
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(tree, *resolved, part)
        if not os.path.islink(candidate):
            resolved.append(part)
            continue
        hops += 1
        if hops > MAX_SYMLINKS:
            raise StageError(f"{path}: too many levels of symbolic links in the tree")
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        pending.extend(reversed(target.split("/")))
    return os.path.join(tree, *resolved)


def require(tree: str, path: str, hint: str = DEBOOTSTRAP_HINT) -> str:
    """The place of `path` in the tree (see in_tree); a StageError saying how to get it when it is missing."""
    place = in_tree(tree, path)
    if not os.path.lexists(place):
        raise StageError(f"the tree has no {path}; {hint}")
    return place


def note(message: str) -> None:
    """A line on stderr that names the stage: a deprecation or a warning the user should see."""
    print(f"{_name()}: {message}", file=sys.stderr)


def _read_document() -> list:
    """The body's arguments from stdin; a document that is not ours exits 2 (the caller's mistake)."""
    try:
        args = json.load(sys.stdin)
        if not isinstance(args, dict) or not isinstance(args.get("tree"), str):
            raise ValueError('expected an object with "tree" (a path) and "options"')
        options = args.get("options") or {}
        if not isinstance(options, dict):
            raise ValueError('"options" must be an object')
    except ValueError as err:
        note(f"bad input document on stdin: {err}")
        sys.exit(2)
    params = [args["tree"], options]
    if "output" in args:
        params.append(args["output"])
    return params


def _name() -> str:
    return os.environ.get("OSBUILD_STAGE", os.path.basename(sys.argv[0]))


def main(body: Callable[..., None]) -> None:
    """Read the stage's JSON document from stdin and call body(tree, options[, output]).

    Exit 2: stdin is not a valid document.  Exit 1 with one line: the stage
    explained why it cannot go on (StageError) or the system refused the work
    (OSError).  Anything else is a bug of the stage and keeps its traceback.
    """
    params = _read_document()
    try:
        body(*params)
    except (StageError, OSError) as err:
        note(str(err))
        sys.exit(1)
