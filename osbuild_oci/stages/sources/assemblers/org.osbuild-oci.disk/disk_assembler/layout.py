"""A described layout: the pipeline's partitions, and all that follows from them alone.

From the one description come the identifiers (every GUID and UUID derived from root_fs_uuid), where each
of the tree's files goes (the partition or btrfs subvolume whose mountpoint holds it), the booted system's
/etc/fstab and /etc/crypttab, the kernel command line and the /etc/repart.d that grows the last partition at
first boot.  Nothing here runs a tool; repart.py turns a layout into systemd-repart's definitions.
"""

from __future__ import annotations

import posixpath
import uuid as uuidlib
from dataclasses import dataclass

import osbuild_boot
from osbuild_stage import StageError

from .common import MIB, derived, parse_size, repart_derived

# Per type: systemd-repart's Type= (the Discoverable Partitions Specification's names, or a GUID), the
# mountpoint, the default filesystem and the default label.
TYPES = {
    "esp": ("esp", "/boot/efi", "vfat", "esp"),
    "bios-boot": ("21686148-6E49-704E-6564-65654E656564", None, None, "bios"),
    "xbootldr": ("xbootldr", "/boot", "ext4", "boot"),
    "root": ("root", "/", "ext4", "root"),
    "swap": ("swap", None, "swap", "swap"),
    "home": ("home", "/home", "ext4", "home"),
    "var": ("var", "/var", "ext4", "var"),
    "srv": ("srv", "/srv", "ext4", "srv"),
    "linux-generic": ("linux-generic", None, "ext4", None),
}
BIOS_BOOT_SIZE = MIB
# Debian boots with these on the root filesystem (its initramfs mounts only /, and /usr is merged into it).
ON_ROOT = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/dev", "/proc", "/sys", "/run")
# fstab's options and fsck pass per filesystem: ext4 is checked (the root first), xfs's and btrfs's fsck do nothing.
FSTAB = {"ext4": ("defaults", 2), "xfs": ("defaults", 0), "btrfs": ("defaults", 0), "vfat": ("umask=0077", 2)}
GROWABLE = ("ext4", "xfs", "btrfs")
HEADER = "# Written by osbuild-oci's disk assembler from the pipeline's partitions.\n"


@dataclass(frozen=True)
class Partition:
    """One partition as the pipeline describes it, with the identifiers that follow from root_fs_uuid."""

    index: int
    type: str
    label: str
    filesystem: str | None
    mountpoint: str | None
    size: int | None
    min_size: int | None
    max_size: int | None
    subvolumes: tuple[tuple[str, str], ...]
    key: str | None
    empty_slot: bool
    grow: bool
    uuid: uuidlib.UUID

    @property
    def fs_uuid(self) -> uuidlib.UUID:
        return repart_derived(self.uuid, "file-system-uuid")

    @property
    def fs_id(self) -> str:
        """The filesystem's identifier as blkid, fstab and GRUB's search name it: FAT has a 32-bit volume id
        (repart takes the derived UUID's first half), the others the UUID."""
        if self.filesystem == "vfat":
            return f"{self.fs_uuid.hex[:4]}-{self.fs_uuid.hex[4:8]}".upper()
        return str(self.fs_uuid)

    @property
    def luks_uuid(self) -> uuidlib.UUID:
        return repart_derived(self.uuid, "luks-uuid")

    @property
    def device(self) -> str:
        """How fstab names the filesystem: its opened LUKS mapping, or its UUID."""
        return f"/dev/mapper/{self.label}" if self.key else f"UUID={self.fs_id}"


@dataclass(frozen=True)
class Mount:
    """A mountpoint of the booted system and where its files live: a partition, or a btrfs subvolume of one."""

    mountpoint: str
    partition: Partition
    subvolume: str | None = None

    @property
    def inner(self) -> str:
        """The mount's top inside its filesystem."""
        return f"/{self.subvolume}" if self.subvolume else "/"

    def inside(self, path: str) -> str:
        """Where path (below this mountpoint) is inside the filesystem."""
        return posixpath.normpath(posixpath.join(self.inner, posixpath.relpath(path, self.mountpoint)))


def _below(path: str, mountpoint: str) -> bool:
    return mountpoint == "/" or path == mountpoint or path.startswith(mountpoint + "/")


def _partition(index: int, entry: dict, seed: str) -> Partition:
    kind = entry["type"]
    _, mountpoint, filesystem, label = TYPES[kind]
    mountpoint = entry.get("mountpoint", mountpoint)
    label = entry.get("label") or label or posixpath.basename(mountpoint)[:11]
    size = parse_size(entry["size"]) if "size" in entry else BIOS_BOOT_SIZE if kind == "bios-boot" else None
    bounds = [parse_size(entry[key]) if key in entry else None for key in ("min_size", "max_size")]
    subvolumes = tuple((sub["name"], sub["mountpoint"]) for sub in entry.get("subvolumes", ()))
    encrypt = entry.get("encrypt", {})
    return Partition(index, kind, label, entry.get("filesystem", filesystem), mountpoint, size, *bounds, subvolumes,
                     encrypt["key"]["secret"] if encrypt else None, encrypt.get("empty_slot", False),
                     entry.get("grow", False), derived(seed, f"partition-{label}"))


class Layout:
    """The partitions of a described disk, checked for what the schema cannot say."""

    def __init__(self, entries: list[dict], seed: str, bootloader: str = "grub"):
        self.partitions = [_partition(index, entry, seed) for index, entry in enumerate(entries)]
        self.bootloader = bootloader
        self.mounts = sorted(self._mounts(), key=lambda m: m.mountpoint)
        self._check()

    def _mounts(self) -> list[Mount]:
        found = []
        for part in self.partitions:
            if part.subvolumes:
                found += [Mount(where, part, name) for name, where in part.subvolumes]
            elif part.mountpoint is not None:
                found.append(Mount(part.mountpoint, part))
        return found

    def _check(self) -> None:
        labels = [part.label for part in self.partitions]
        twice = sorted({label for label in labels if labels.count(label) > 1})
        if twice:
            raise StageError(f"partitions: label {twice[0]!r} is used twice; give each partition its own label "
                             "(it names the partition, its filesystem and its /dev/mapper device)")
        points = [mount.mountpoint for mount in self.mounts]
        twice = sorted({point for point in points if points.count(point) > 1})
        if twice:
            raise StageError(f"partitions: {twice[0]} is mounted twice; give each partition or subvolume its own "
                             "mountpoint")
        for point in points:
            if point != "/" and any(_below(point, fixed) for fixed in ON_ROOT):
                raise StageError(f"partitions: {point} must be on the root filesystem (Debian's initramfs mounts "
                                 "only /); leave it out of the layout")
        for part in self.partitions[:-1]:
            if part.size is None and part.min_size is None and part.max_size is None:
                raise StageError(f"partitions[{part.index}] ({part.label}): give size, or min_size/max_size; only "
                                 "the last partition may leave them out and take the rest")
            if part.grow:
                raise StageError(f"partitions[{part.index}] ({part.label}): only the last partition can grow at "
                                 "first boot (the free space of a larger disk is after it)")
        for part in self.partitions:
            if part.subvolumes and part.mountpoint not in [where for _, where in part.subvolumes]:
                raise StageError(f"partitions[{part.index}] ({part.label}): one subvolume must be mounted at the "
                                 f"partition's own mountpoint {part.mountpoint}")
            if part.grow and part.filesystem not in GROWABLE:
                raise StageError(f"partitions[{part.index}] ({part.label}): {part.filesystem} cannot grow; "
                                 f"growing filesystems are {', '.join(GROWABLE)}")
        keys = {part.key for part in self.partitions if part.key}
        if len(keys) > 1:
            raise StageError(f"partitions: the encrypted partitions name the secrets {', '.join(sorted(keys))}; "
                             "they share one passphrase (systemd-repart takes one key), so name one secret")
        if "/" not in points:
            raise StageError("partitions: nothing is mounted at /; the root partition's btrfs subvolumes must "
                             "include one mounted at /")
        self._check_boot()

    def _check_boot(self) -> None:
        if self.bootloader == "systemd-boot":
            if self.esp is None or self.by_type("bios-boot") is not None:
                raise StageError("partitions: systemd-boot is a UEFI boot loader: it needs an esp partition and "
                                 "no bios-boot partition")
            boot = self.by_type("xbootldr")
            if boot is not None and boot.filesystem != "vfat":
                raise StageError("partitions: systemd-boot reads the xbootldr partition through the firmware, "
                                 "which reads only FAT: give it filesystem vfat")
        elif self.bootable and self.boot_mount.partition.key:
            raise StageError("partitions: GRUB cannot read /boot on an encrypted partition; add an xbootldr "
                             "partition (/boot) that is not encrypted")

    def by_type(self, kind: str) -> Partition | None:
        return next((part for part in self.partitions if part.type == kind), None)

    @property
    def esp(self) -> Partition | None:
        return self.by_type("esp")

    @property
    def root(self) -> Partition:
        return self.holder("/")[0].partition

    @property
    def bootable(self) -> bool:
        """Whether a boot loader goes on the disk: there is an ESP or a BIOS boot partition for it."""
        return self.esp is not None or self.by_type("bios-boot") is not None

    def holder(self, path: str) -> tuple[Mount, str]:
        """The mount whose files include path, and where path is inside its filesystem."""
        mount = max((m for m in self.mounts if _below(path, m.mountpoint)), key=lambda m: len(m.mountpoint))
        return mount, mount.inside(path)

    @property
    def boot_mount(self) -> Mount:
        return self.holder("/boot")[0]

    def boot_path(self) -> str:
        """Where /boot is inside the filesystem holding it, as GRUB names files there ('' on a /boot partition)."""
        inside = self.holder("/boot")[1]
        return "" if inside == "/" else inside

    def kernel_cmdline(self, extra: list[str]) -> str:
        """What the booted kernel needs to find its root, then the pipeline's own options (the tree's
        /etc/kernel/cmdline, then kernel_opts), a repeated word kept in its last place."""
        root_mount = self.holder("/")[0]
        root = root_mount.partition
        words = [f"root=UUID={root.fs_id}", "ro"]
        if root_mount.subvolume:
            words.append(f"rootflags=subvol={root_mount.subvolume}")
        if root.key:
            # Debian's initramfs (cryptsetup-initramfs) unlocks it and asks for the passphrase on the console.
            words.append(f"cryptopts=target={root.label},source=UUID={root.luks_uuid},luks,discard")
        return osbuild_boot.last_of_each(words + extra)

    def fstab(self) -> str:
        lines = [HEADER.rstrip("\n"), "# <file system> <mount point> <type> <options> <dump> <pass>"]
        for mount in self.mounts:
            part = mount.partition
            options, passno = FSTAB[part.filesystem]
            options = [options]
            if mount.mountpoint == "/":
                options, passno = (["errors=remount-ro"], 1) if part.filesystem == "ext4" else (options, passno)
            if mount.subvolume:
                options.append(f"subvol={mount.subvolume}")
            if part.grow and mount.mountpoint == part.mountpoint:
                options.append("x-systemd.growfs")
            lines.append(f"{part.device} {mount.mountpoint} {part.filesystem} {','.join(options)} 0 {passno}")
        lines += [f"{part.device} none swap sw 0 0" for part in self.partitions if part.filesystem == "swap"]
        return "\n".join(lines) + "\n"

    def crypttab(self) -> str:
        """The encrypted partitions, unlocked with a passphrase asked on the console; root's in the initramfs."""
        lines = [HEADER.rstrip("\n"), "# <target name> <source device> <key file> <options>"]
        for part in self.partitions:
            if part.key:
                options = "luks,discard" + (",initramfs" if part is self.root else "")
                lines.append(f"{part.label} UUID={part.luks_uuid} none {options}")
        return "\n".join(lines) + "\n"

    @property
    def encrypted(self) -> bool:
        return any(part.key for part in self.partitions)

    def growth(self) -> dict[str, str]:
        """/etc/repart.d of the booted system, by file name: every partition by type, in order, so that
        systemd-repart.service matches them to the disk's, and only the growing one with weight."""
        if not any(part.grow for part in self.partitions):
            return {}
        return {f"{part.index:02d}-{part.label}.conf":
                f"{HEADER}[Partition]\nType={TYPES[part.type][0]}\n" + ("" if part.grow else "Weight=0\n")
                for part in self.partitions}
