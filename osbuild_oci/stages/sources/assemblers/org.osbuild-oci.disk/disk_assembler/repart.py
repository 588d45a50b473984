"""systemd-repart --offline makes a described disk: partition table, filesystems filled from the tree, LUKS2.

It runs in this container, where root is the root of podman's user namespace, so the tree's owners and
modes reach the filesystems as they are (run outside one, repart would give every file to the user).  No
loop device, no mount: mkfs.ext4 -d, mkfs.btrfs --rootdir, mkfs.xfs's protofile and mtools fill the
filesystems, libcryptsetup encrypts a partition in place in the image file.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import subprocess
import tempfile
from typing import Iterator

import osbuild_stage
from osbuild_stage import StageError, in_tree, run

from .common import EXT4_FEATURES, derived
from .layout import GROWABLE, HEADER, TYPES, Layout, Partition

# A tmpfs: the passphrase, without its newline, is never written to a disk.
KEY_DIR = "/dev/shm"
# What systemd-repart puts before the encrypted data: the LUKS2 headers and keyslots (its LUKS2_METADATA_SIZE).
LUKS2_METADATA = 16 * 1024 * 1024


@contextlib.contextmanager
def passphrase(secret: dict | None) -> Iterator[str | None]:
    """The passphrase file repart gets: the secret's bytes without one trailing newline, so that
    `echo secret > file` gives the passphrase typed at boot."""
    if secret is None:
        yield None
        return
    with open(osbuild_stage.secret(secret), "rb") as f:
        key = f.read()
    key = key[:-1] if key.endswith(b"\n") else key
    if not key:
        raise StageError(f"secret {secret['secret']!r} is empty; a LUKS passphrase must not be")
    with tempfile.NamedTemporaryFile(dir=KEY_DIR if os.path.isdir(KEY_DIR) else None, prefix="luks-") as f:
        f.write(key)
        f.flush()
        yield f.name


def environment(root_fs_uuid: str) -> dict:
    """mkfs options repart passes on: ext4 as bookworm makes it, with a hash seed of its own, not a random one."""
    ext4 = f"-O {EXT4_FEATURES} -E hash_seed={derived(root_fs_uuid, 'ext4-hash-seed')}"
    return {**os.environ, "SYSTEMD_REPART_MKFS_OPTIONS_EXT4": ext4}


def definitions(layout: Layout, tree: str, generated: dict[str, str]) -> dict[str, str]:
    """systemd-repart's partition definitions, by file name: tree is the tree's directory as repart sees it,
    generated maps a path of the booted system to a file the assembler wrote (fstab, boot loader files)."""
    copies: dict[int, list[str]] = {part.index: [] for part in layout.partitions}
    excludes: dict[int, list[str]] = {part.index: [] for part in layout.partitions}
    directories: dict[int, list[str]] = {part.index: [] for part in layout.partitions}
    for mount in layout.mounts:
        source = os.path.join(tree, mount.mountpoint.lstrip("/")).rstrip("/")
        if in_tree(tree, mount.mountpoint).rstrip("/") != source or (os.path.lexists(source)
                                                                    and not os.path.isdir(source)):
            raise StageError(f"partitions: the tree's {mount.mountpoint} is not a directory (a symlink, on the "
                             "way or at the end, or a file), so nothing can be mounted there; mount the place "
                             "it points to")
        if os.path.isdir(source):
            copies[mount.partition.index].append(f"{source}:{mount.inner}")
        if mount.subvolume:
            directories[mount.partition.index].append(mount.inner)
        if mount.mountpoint == "/":
            continue
        parent = layout.holder(posixpath.dirname(mount.mountpoint))[0]
        inside = parent.inside(mount.mountpoint)
        # Its files are this mount's: the parent keeps the directory, empty, to mount it on.
        excludes[parent.partition.index].append(inside + "/")
        directories[parent.partition.index].append(inside)
    replaced: dict[int, list[str]] = {part.index: [] for part in layout.partitions}
    for path, local in sorted(generated.items()):
        mount, inside = layout.holder(path)
        copies[mount.partition.index].append(f"{local}:{inside}")
        # repart copies a file only where none is: the tree's own (an unconfigured fstab) stays out.
        if os.path.lexists(os.path.join(tree, path.lstrip("/"))):
            replaced[mount.partition.index].append(os.path.join(tree, path.lstrip("/")))
    # A tree built as root has device nodes in /dev, which repart could copy only with CAP_MKNOD, withheld from
    # assemblers: the booted system mounts devtmpfs there, and a rootless tree's /dev is empty anyway.
    if os.path.isdir(os.path.join(tree, "dev")):
        replaced[layout.holder("/")[0].partition.index].append(os.path.join(tree, "dev") + "/")
    return {f"{part.index:02d}-{part.label}.conf": _definition(part, copies[part.index], excludes[part.index],
                                                                    replaced[part.index], directories[part.index])
            for part in layout.partitions}

def _definition(part: Partition, copies: list[str], excludes: list[str], replaced: list[str],
            directories: list[str]) -> str:
    lines = [HEADER.rstrip("\n"), "[Partition]", f"Type={TYPES[part.type][0]}", f"Label={part.label}",
             f"UUID={part.uuid}"]
    if part.filesystem:
        lines.append(f"Format={part.filesystem}")
    if part.size is not None:
        lines += [f"SizeMinBytes={part.size}", f"SizeMaxBytes={part.size}"]
    lines += [f"{name}={value}" for name, value in (("SizeMinBytes", part.min_size),
                                                    ("SizeMaxBytes", part.max_size)) if value is not None]
    if part.filesystem in GROWABLE:
        lines.append(f"GrowFileSystem={'yes' if part.grow else 'no'}")
    if part.key:
        lines.append("Encrypt=key-file")
    if part.subvolumes:
        lines.append("Subvolumes=" + " ".join(f"/{name}" for name, _ in part.subvolumes))
    lines += [f"CopyFiles={copy}" for copy in copies]
    if excludes:
        lines.append("ExcludeFilesTarget=" + " ".join(excludes))
    if replaced:
        lines.append("ExcludeFiles=" + " ".join(replaced))
    if directories:
        lines.append("MakeDirectories=" + " ".join(directories))
    return "\n".join(lines) + "\n"


def make(layout: Layout, tree: str, generated: dict[str, str], image: str, size: int, root_fs_uuid: str,
         systemd_arch: str, key: dict | None, tmp: str) -> dict[str, dict]:
    """Make the disk; its partitions as repart reports them (offset and raw_size in bytes), by label."""
    folder = os.path.join(tmp, "repart.d")
    os.makedirs(folder)
    for name, text in definitions(layout, tree, generated).items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            f.write(text)
    with passphrase(key) as key_file:
        # 512-byte sectors, as the disks these images land on have (qemu's, the clouds'): with repart's default
        # of 4096 for the filesystems, an ESP under 260 MiB gets a FAT32 of too few clusters, which OVMF ignores.
        proc = run(["systemd-repart", "--offline=yes", "--sector-size=512", "--empty=create", f"--size={size}",
                    "--dry-run=no", "--no-pager", f"--definitions={folder}",
                    f"--seed={derived(root_fs_uuid, 'repart-seed')}", f"--architecture={systemd_arch}", "--json=short",
                    *([f"--key-file={key_file}"] if key_file else []), image],
                   env=environment(root_fs_uuid), stdout=subprocess.PIPE, text=True)
        made = {entry["label"]: entry for entry in json.loads(proc.stdout)}
        for part in layout.partitions:
            if part.empty_slot:
                add_empty_slot(image, made[part.label]["offset"], key_file, tmp)
    check_identifiers(layout, made, image)
    return made


def add_empty_slot(image: str, offset: int, key_file: str, tmp: str) -> None:
    """A second keyslot with an empty passphrase, for systemd-cryptenroll to enroll a TPM2 (or any key) with on
    the target machine and then remove (--wipe-slot=empty).  cryptsetup changes the LUKS2 metadata in a copy of
    it, which goes back in place; the encrypted data is not touched.  The empty passphrase protects nothing, so
    its key derivation is the cheapest (PBKDF2, 1000 iterations): unlocking it costs no memory at boot."""
    header = os.path.join(tmp, "luks-header")
    with open(image, "rb") as disk, open(header, "wb") as out:
        disk.seek(offset)
        out.write(disk.read(LUKS2_METADATA))
    dump = run(["cryptsetup", "luksDump", "--dump-json-metadata", header], stdout=subprocess.PIPE, text=True).stdout
    segments = json.loads(dump)["segments"]
    if any(int(segment["offset"]) != LUKS2_METADATA for segment in segments.values()):
        raise StageError(f"the LUKS2 header systemd-repart wrote does not end at {LUKS2_METADATA} bytes; the "
                         "assembler image needs fixing")
    run(["cryptsetup", "luksAddKey", "--batch-mode", f"--key-file={key_file}", "--pbkdf=pbkdf2",
         "--pbkdf-force-iterations=1000", header], input="\n", text=True)
    with open(header, "rb") as new, open(image, "r+b") as disk:
        disk.seek(offset)
        disk.write(new.read())
    os.unlink(header)


def check_identifiers(layout: Layout, made: dict[str, dict], image: str) -> None:
    """The disk's fstab, crypttab and boot loader name what repart was expected to derive: read it back."""
    for part in layout.partitions:
        if part.filesystem is None:
            continue
        found = run(["blkid", "--probe", "--offset", str(made[part.label]["offset"]), "--output", "export", image],
                    stdout=subprocess.PIPE, text=True).stdout
        fields = dict(line.split("=", 1) for line in found.splitlines() if "=" in line)
        expected = str(part.luks_uuid) if part.key else part.fs_id
        if fields.get("UUID") != expected:
            raise StageError(f"systemd-repart gave partition {part.label} the identifier {fields.get('UUID')}, not "
                             f"the {expected} its fstab and boot loader name: this systemd derives identifiers "
                             "differently; the assembler image needs fixing")
