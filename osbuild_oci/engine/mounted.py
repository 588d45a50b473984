"""Host tools run on a store's mounted trees: rootless, inside podman's user namespace, where the mounts are."""

from __future__ import annotations

import os
import shutil
import subprocess

from ..errors import EngineError


class MountedMixin:
    """The operations of Engine (engine/client.py) that run a host program on the store's files."""

    def sync(self, source: str, destination: str) -> None:
        """Make the mounted tree at destination equal the one at source, touching only what differs.

        rsync compares contents (--checksum), not size and mtime: the source epoch clamps every
        changed file's mtime to one value, so a file rewritten with as many bytes would look
        unchanged.  Overlay copies up (and the next commit stores) only changed files, plus
        whiteouts for removed ones.
        """
        self.on_mounted_tree(["rsync", "-aHAX", "--checksum", "--numeric-ids", "--delete", "--modify-window=-1",
                              f"{source}/", f"{destination}/"], f"copy tree {source} into {destination}")

    def clamp(self, tree: str, epoch: int, since: float) -> None:
        """Set the times of every file changed since `since` (its ctime, which no program can set back)
        and newer than epoch to epoch, as SOURCE_DATE_EPOCH asks.

        Files of older layers keep their times (they were clamped when their stage ran, or
        belong to a base image), so overlay copies up nothing the stage did not change.
        """
        self.on_mounted_tree(["find", tree, "-xdev", "-newerct", f"@{since:.3f}", "-newermt", f"@{epoch}",
                              "-exec", "touch", "--no-dereference", f"--date=@{epoch}", "{}", "+"],
                             f"clamp the times of tree {tree}")

    def on_mounted_tree(self, cmd: list[str], action: str) -> str:
        """Run a host tool on a mounted tree and return its output.  Rootless, the mounts exist only in
        podman's user namespace, so the tool runs there (as that namespace's root, which may change any file)."""
        if shutil.which(cmd[0]) is None:
            raise EngineError(f"{cmd[0]} is not installed; run scripts/setup-host (or apt-get install {cmd[0]})")
        proc = subprocess.run([*self.in_userns(), *cmd], capture_output=True, text=True)
        if proc.returncode != 0:
            detail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
            raise EngineError(f"{os.path.basename(cmd[0])} could not {action}: {detail[0]}")
        return proc.stdout

    def in_userns(self) -> list[str]:
        """What runs a host command where the store's files are its own: rootless, podman's user namespace."""
        return [] if os.geteuid() == 0 else ["podman", *self.podman_args(), "unshare"]

    def disk_use(self) -> int:
        """Bytes the store's directory takes on disk; every layer is stored once, however many images share it."""
        proc = subprocess.run([*self.in_userns(), "du", "-sxB1", str(self.store)], capture_output=True, text=True)
        if proc.returncode != 0 and not proc.stdout:
            raise EngineError(f"du could not measure {self.store}: {proc.stderr.strip()}")
        return int(proc.stdout.split()[0])
