"""What every stage and assembler program shares: the stdin contract and clear failures.

A stage reads {"tree": PATH, "options": {...}} on stdin (assemblers also get
"output"), changes the tree with the distribution's own tools, and exits
non-zero with one clear line on stderr when it cannot.
"""

import json
import os
import subprocess
import sys
from typing import Callable, Sequence


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


def main(body: Callable[..., None]) -> None:
    """Read the stage's JSON document from stdin and call body(tree, options[, output])."""
    name = os.environ.get("OSBUILD_STAGE", os.path.basename(sys.argv[0]))
    try:
        args = json.load(sys.stdin)
        params = [args["tree"], args.get("options") or {}]
        if "output" in args:
            params.append(args["output"])
        body(*params)
    except (StageError, OSError) as err:
        print(f"{name}: {err}", file=sys.stderr)
        sys.exit(1)
    except (ValueError, KeyError) as err:
        print(f"{name}: bad input document on stdin: {err}", file=sys.stderr)
        sys.exit(2)
