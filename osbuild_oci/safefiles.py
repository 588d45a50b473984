"""Reading a file inside a tree someone else wrote: one directory at a time, never through a link, never without end.

A tree (a base image, what a stage left) is hostile input.  `os.path.join(tree, path)` plus
`open` follows a link to the host's files, an absolute or `..` name leaves the tree, a FIFO
blocks the reader for good and /dev/zero never ends.  Here every directory is opened relative
to the one before with O_NOFOLLOW, so the kernel refuses a link at every step; the last step
opens without blocking and takes only a regular file; and no more than a cap is read.
`walk` goes through a whole directory that way: what a build reads of its context, or copies
out of an image.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

from .errors import BuildError

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
T = TypeVar("T")


class Refused(BuildError):
    """A path inside a tree that is, or passes through, a link; or a file that is not regular or is too large."""


def _parts(path: str) -> list[str]:
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if not parts or ".." in parts or any("\0" in part for part in parts):
        raise Refused(f"{path!r} is no path inside a tree")
    return parts


def _why_not_opened(parent: int, name: str, path: str, err: OSError, what: str = "the tree") -> Exception:
    """The error for a step that failed: a link is Refused, anything missing is FileNotFoundError."""
    if err.errno in (errno.ELOOP, errno.ENOTDIR):
        try:
            if stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                return Refused(f"{what}'s {path} is a symbolic link, or passes through one ({name}); "
                               f"{what}'s files are read without following links")
        except OSError:
            pass
    if err.errno in (errno.ENOENT, errno.ENOTDIR):
        return FileNotFoundError(errno.ENOENT, f"no such file in {what}", path)
    return Refused(f"cannot read {what}'s {path}: {err.strerror}")


def _walk(root: str, parts: list[str], path: str, what: str = "the tree") -> int:
    """An open descriptor of the directory holding the last part; every directory on the way is no link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in parts[:-1]:
            try:
                child = os.open(name, _DIRECTORY, dir_fd=fd)
            except OSError as err:
                raise _why_not_opened(fd, name, path, err, what) from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _at(root: str, path: str, step: Callable[[int, str], T]) -> T | None:
    """step(descriptor of the directory holding path's last part, that part); None when a directory on
    the way is missing."""
    parts = _parts(path)
    try:
        parent = _walk(root, parts, path)
    except FileNotFoundError:
        return None
    try:
        return step(parent, parts[-1])
    finally:
        os.close(parent)


def read(root: str, path: str, limit: int) -> bytes | None:
    """The bytes of the regular file at path inside the tree at root, None if there is none.

    Refused when path is or passes through a link, is not a regular file (a FIFO, a
    device, a directory), or holds more than limit bytes.
    """
    def open_file(parent: int, name: str) -> int | None:
        try:
            return os.open(name, _FILE, dir_fd=parent)
        except OSError as err:
            failure = _why_not_opened(parent, name, path, err)
            if isinstance(failure, FileNotFoundError):
                return None
            raise failure from None

    fd = _at(root, path, open_file)
    if fd is None:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"the tree's {path} is not a regular file; only regular files are read from a tree")
        if info.st_size > limit:
            raise Refused(f"the tree's {path} holds {info.st_size} bytes, more than the {limit} read from it")
        chunks, left = [], limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        raise Refused(f"the tree's {path} grew past the {limit} bytes read from it")
    return data


def link(root: str, path: str) -> str | None:
    """Where the link at path inside the tree points (as written, not followed), None if path is no link.

    The directories on the way must not be links themselves.
    """
    def read_link(parent: int, name: str) -> str | None:
        try:
            return os.readlink(name, dir_fd=parent)
        except OSError as err:
            if err.errno in (errno.EINVAL, errno.ENOENT, errno.ENOTDIR):
                return None
            raise

    return _at(root, path, read_link)


@dataclass(frozen=True)
class Entry:
    """One thing walk found: its path below the root, and for a regular file a descriptor to read it by (open
    only until the walk goes on)."""

    path: str
    directory: bool
    executable: bool = False
    fd: int | None = None


def walk(root: str, path: str, what: str = "the tree") -> Iterator[Entry]:
    """The directory or regular file at path inside root, and all a directory holds, depth first in name order.

    Every step is opened relative to its directory without following a link; a link anywhere (on the way
    or inside), a device, a FIFO or a socket is Refused, naming it as `what`'s; a missing path is
    FileNotFoundError.  Each thing is looked at before it is opened, so no device is ever opened.
    """
    parts = _parts(path)
    parent = _walk(root, parts, path, what)
    try:
        yield from _below(parent, parts[-1], "/".join(parts), what)
    finally:
        os.close(parent)


def _below(parent: int, name: str, path: str, what: str) -> Iterator[Entry]:
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError as err:
        raise _why_not_opened(parent, name, path, err, what) from None
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "no regular file or directory"
        raise Refused(f"{what}'s {path} is {kind}; only regular files and directories are read from {what}")
    try:
        fd = os.open(name, _FILE, dir_fd=parent)
    except OSError as err:
        raise _why_not_opened(parent, name, path, err, what) from None
    try:
        opened = os.fstat(fd)
        if (opened.st_ino, opened.st_mode) != (info.st_ino, info.st_mode):
            raise Refused(f"{what}'s {path} changed while it was read")
        if stat.S_ISREG(info.st_mode):
            yield Entry(path, False, bool(info.st_mode & 0o111), fd)
            return
        yield Entry(path, True)
        try:
            children = sorted(os.listdir(fd))
        except OSError as err:
            raise Refused(f"cannot read {what}'s {path}: {err.strerror}") from None
        for child in children:
            yield from _below(fd, child, f"{path}/{child}", what)
    finally:
        os.close(fd)
