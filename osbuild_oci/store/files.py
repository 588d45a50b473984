"""Files an assembler (or a registry) left, taken as hostile: only regular files and directories pass, without
setuid, setgid or sticky bits, and nothing they name is ever followed.

An assembler writes into a private directory of the store; when its container
has exited, `sanitize` checks and strips that directory in place, and
`copy_out` copies it into the user's `-o` directory, opened once by file
handle, creating every file there anew (O_EXCL|O_NOFOLLOW), so a link planted
under an expected name cannot send a write anywhere.  As root under sudo, what
reaches `-o` belongs to the user who ran sudo.  `selection` reads (and copies)
what a stage's input names inside a build context or an image the same way,
through safefiles.walk.  Run as `python -m osbuild_oci.store.files SOURCE
TARGET [PATH]` it copies where a rootless store's mounts are visible (podman's
user namespace).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import sys
from pathlib import Path

from .. import safefiles
from ..errors import BuildError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_PERMISSIONS = 0o777


def _entries(dir_fd: int, where: str) -> list[tuple[str, os.stat_result]]:
    """The names in a directory and what they are, refusing anything but regular files and directories."""
    out = []
    for name in os.listdir(dir_fd):
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
            kind = ("a symbolic link" if stat.S_ISLNK(info.st_mode) else "a device" if
                    stat.S_ISBLK(info.st_mode) or stat.S_ISCHR(info.st_mode) else "a FIFO" if
                    stat.S_ISFIFO(info.st_mode) else "a socket")
            raise BuildError(f"the output holds {where + name!r}, {kind}: an assembler's output may only be "
                             "regular files and directories")
        out.append((name, info))
    return sorted(out)


def sanitize(directory: Path, owner: tuple[int, int] | None = None) -> None:
    """Check a private output directory and strip it in place: setuid, setgid and sticky bits off every file
    and directory, each file on disk (fsynced); owned by owner if given."""
    def walk(fd: int, where: str) -> None:
        for name, info in _entries(fd, where):
            if stat.S_ISDIR(info.st_mode):
                child = os.open(name, _DIR, dir_fd=fd)
                try:
                    walk(child, f"{where}{name}/")
                    _settle(child, info, owner)
                finally:
                    os.close(child)
            else:
                child = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
                try:
                    _settle(child, info, owner)
                    os.fsync(child)
                finally:
                    os.close(child)

    fd = os.open(directory, _DIR)
    try:
        walk(fd, "")
        os.fsync(fd)
    except PermissionError as err:
        raise BuildError(f"the output in {directory} holds a file this user cannot change ({err.strerror}); an "
                         "assembler must leave files of its own") from None
    finally:
        os.close(fd)


def _settle(fd: int, info: os.stat_result, owner: tuple[int, int] | None) -> None:
    if info.st_mode & ~_PERMISSIONS & 0o7777:
        os.fchmod(fd, info.st_mode & _PERMISSIONS)
    if owner is not None and (info.st_uid, info.st_gid) != owner:
        os.fchown(fd, *owner)


def invoking_user() -> tuple[int, int] | None:
    """Who should own what reaches -o: the user behind sudo, when root runs for them; else None (as it is)."""
    if os.geteuid() != 0:
        return None
    try:
        return int(os.environ["SUDO_UID"]), int(os.environ["SUDO_GID"])
    except (KeyError, ValueError):
        return None


def open_target(directory: Path) -> int:
    """-o, created if new with the folders it needs (mode 0755, for the invoking user), opened by handle; it
    must be empty now, not only when the build was planned."""
    owner = invoking_user()
    for folder in reversed([folder for folder in (directory, *directory.parents) if not folder.exists()]):
        try:
            os.mkdir(folder, 0o755)
        except FileExistsError:
            continue
        except OSError as err:
            raise BuildError(f"cannot create the output directory {folder}: {err.strerror}") from None
        if owner is not None:
            os.chown(folder, *owner, follow_symlinks=False)
    try:
        fd = os.open(directory, _DIR)
    except OSError as err:
        reason = "it is a symbolic link" if err.errno == errno.ELOOP else err.strerror
        raise BuildError(f"cannot write the output into {directory}: {reason}") from None
    if os.listdir(fd):
        os.close(fd)
        raise BuildError(f"output directory {directory} is not empty any more; give a new or empty directory")
    return fd


def copy_out(source: Path, target_fd: int, owner: tuple[int, int] | None = None) -> list[str]:
    """Copy the regular files and directories under source into the directory target_fd, each created anew,
    sparse files kept sparse, without special bits; owned by owner if given.  The names copied."""
    copied: list[str] = []

    def walk(src: int, dst: int, where: str) -> None:
        for name, info in _entries(src, where):
            mode = info.st_mode & _PERMISSIONS
            if stat.S_ISDIR(info.st_mode):
                os.mkdir(name, mode | 0o700, dir_fd=dst)
                child_src, child_dst = os.open(name, _DIR, dir_fd=src), os.open(name, _DIR, dir_fd=dst)
                try:
                    walk(child_src, child_dst, f"{where}{name}/")
                    if owner is not None:
                        os.fchown(child_dst, *owner)
                finally:
                    os.close(child_src)
                    os.close(child_dst)
            else:
                _copy_file(src, dst, name, mode, owner)
            copied.append(where + name)

    src = os.open(source, _DIR)
    try:
        walk(src, target_fd, "")
    finally:
        os.close(src)
    return copied


def _copy_file(src_dir: int, dst_dir: int, name: str, mode: int, owner: tuple[int, int] | None) -> None:
    src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=src_dir)
    try:
        if not stat.S_ISREG(os.fstat(src).st_mode):
            raise BuildError(f"{name!r} changed into something other than a regular file while it was copied")
        dst = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dst_dir)
        try:
            _copy_sparse(src, dst)
            os.fchmod(dst, mode)
            if owner is not None:
                os.fchown(dst, *owner)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _copy_sparse(src: int, dst: int) -> None:
    """Copy the data of src into dst, leaving its holes holes (a raw disk image is mostly holes)."""
    end = os.fstat(src).st_size
    offset = 0
    while offset < end:
        try:
            data = os.lseek(src, offset, os.SEEK_DATA)
        except OSError as err:
            if err.errno != errno.ENXIO:
                raise
            break
        hole = os.lseek(src, data, os.SEEK_HOLE)
        _copy_range(src, dst, data, hole)
        offset = hole
    os.ftruncate(dst, end)


def _copy_range(src: int, dst: int, start: int, stop: int) -> None:
    """Bytes start..stop of src to the same place in dst: in the kernel where it can, else by reading."""
    while start < stop:
        try:
            done = os.copy_file_range(src, dst, stop - start, start, start)
        except OSError as err:
            if err.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            done = os.pwrite(dst, os.pread(src, min(stop - start, 1 << 20), start), start)
        if done == 0:
            raise BuildError("a file shrank while it was copied")
        start += done


def selection(root: str, path: str, what: str, target: Path | None = None) -> list[tuple[str, str, bytes]]:
    """What path names inside root (a regular file, or a directory and all it holds), as ids.files_digest takes
    it: each path, kind and SHA-256.  With target, each is copied under the same path below target while it is
    read, so the copy holds exactly what was hashed; a copied file gets 0755 when it is executable, else 0644.

    Read through safefiles.walk: a link, device, FIFO or socket is refused (safefiles.Refused), a missing path
    is FileNotFoundError.
    """
    found = []
    for entry in safefiles.walk(root, path, what):
        if entry.directory:
            if target is not None:
                (target / entry.path).mkdir(0o755, parents=True, exist_ok=True)
            found.append((entry.path, "d", b""))
            continue
        digest = hashlib.sha256()
        copy = None
        if target is not None:
            (target / entry.path).parent.mkdir(0o755, parents=True, exist_ok=True)
            copy = os.open(target / entry.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                           0o755 if entry.executable else 0o644)
        try:
            while chunk := os.read(entry.fd, 1 << 20):
                digest.update(chunk)
                while copy is not None and chunk:
                    chunk = chunk[os.write(copy, chunk):]
        finally:
            if copy is not None:
                os.close(copy)
        found.append((entry.path, "x" if entry.executable else "-", digest.digest()))
    return found


def _main(argv: list[str]) -> int:
    """SOURCE TARGET: copy an output; SOURCE TARGET PATH: copy what PATH names inside SOURCE (exit 2 when it is
    missing or refused: the input's fault, not the build's)."""
    if len(argv) == 3:
        try:
            selection(argv[0], argv[2], "the image", Path(argv[1]))
        except (safefiles.Refused, FileNotFoundError) as err:
            print(f"error: {err if isinstance(err, safefiles.Refused) else f'the image has no /{argv[2]}'}",
                  file=sys.stderr)
            return 2
        return 0
    fd = os.open(argv[1], _DIR)
    try:
        copy_out(Path(argv[0]), fd)
    finally:
        os.close(fd)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_main(sys.argv[1:]))
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
