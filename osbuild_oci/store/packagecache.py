"""The user's package cache: .debs that debootstrap and apt stages share across builds and stores.

It lives outside every store (`~/.cache/osbuild-oci/packages`, or `--package-cache
DIR`), so deleting a store keeps it, and it is mounted only into stage containers
whose image asks for it (label org.osbuild-oci.package-cache), at
/run/osbuild/cache, outside the tree: it is in no layer and no stage id.  Its
files are named by their SHA256 and the stages use one only when this build's
signed package lists give that hash (stages/sources/base/osbuild_package_cache.py), so
a stage that wrote junk into it cannot slip that into another build.  Rootless,
the containers' root is the user, who owns the directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError


def default_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "osbuild-oci" / "packages"


def prepare(directory: Path | None) -> Path:
    """The cache directory, created 0700 for this user; one that belongs to someone else is refused."""
    path = (directory or default_dir()).resolve()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_uid != os.geteuid():
        raise UserError(f"--package-cache {path} belongs to another user; give a directory of your own")
    return path


def trim(directory: Path, max_bytes: int) -> int:
    """Remove the least recently used .debs (stages touch what they use) until at most max_bytes remain.

    Returns the bytes freed.  Safe while builds run: a stage copies a .deb out before using it, and a
    file that vanishes is only downloaded again.
    """
    files = []
    for entry in os.scandir(directory):
        if entry.is_file(follow_symlinks=False):
            info = entry.stat(follow_symlinks=False)
            files.append((info.st_mtime, info.st_size, entry.path))
    total, freed = sum(size for _, size, _ in files), 0
    for _, size, path in sorted(files):
        if total - freed <= max_bytes:
            break
        try:
            os.unlink(path)
            freed += size
        except FileNotFoundError:
            pass
    return freed


@dataclass(frozen=True)
class PackageCache:
    """The cache as `store gc` budgets it (budget.Trimmable): the store's size limit covers it too."""

    directory: Path

    def _files(self) -> list[os.DirEntry]:
        try:
            return [e for e in os.scandir(self.directory) if e.is_file(follow_symlinks=False)]
        except FileNotFoundError:
            return []

    def size(self) -> int:
        return sum(entry.stat(follow_symlinks=False).st_size for entry in self._files())

    def trim(self, over: int) -> None:
        if self._files():
            trim(self.directory, max(0, self.size() - over))
