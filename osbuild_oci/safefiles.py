"""Reading a file inside a tree someone else wrote: one directory at a time, never through a link, never without end.

A tree (a base image, what a stage left) is hostile input.  `os.path.join(tree, path)` plus
`open` follows a link to the host's files, an absolute or `..` name leaves the tree, a FIFO
blocks the reader for good and /dev/zero never ends.  Here every directory is opened relative
to the one before with O_NOFOLLOW, so the kernel refuses a link at every step; the last step
opens without blocking and takes only a regular file; and no more than a cap is read.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Callable, TypeVar

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


def _why_not_opened(parent: int, name: str, path: str, err: OSError) -> Exception:
    """The error for a step that failed: a link is Refused, anything missing is FileNotFoundError."""
    if err.errno in (errno.ELOOP, errno.ENOTDIR):
        try:
            if stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                return Refused(f"the tree's {path} is a symbolic link, or passes through one ({name}); "
                               "a tree's files are read without following links")
        except OSError:
            pass
    if err.errno in (errno.ENOENT, errno.ENOTDIR):
        return FileNotFoundError(errno.ENOENT, "no such file in the tree", path)
    return Refused(f"cannot read the tree's {path}: {err.strerror}")


def _walk(root: str, parts: list[str], path: str) -> int:
    """An open descriptor of the directory holding the last part; every directory on the way is no link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in parts[:-1]:
            try:
                child = os.open(name, _DIRECTORY, dir_fd=fd)
            except OSError as err:
                raise _why_not_opened(fd, name, path, err) from None
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
