"""What every part of the disk assembler shares: sizes as users write them, identifiers derived from root_fs_uuid,
what the tree's architecture decides."""

import hashlib
import hmac
import os
import re
import uuid as uuidlib

import osbuild_stage
from osbuild_stage import StageError

SECTOR = 512
MIB = 1024 * 1024
UNITS = {"": 1, "K": 1024, "M": MIB, "G": 1024 * MIB, "T": 1024 * 1024 * MIB}
# What the tree's architecture decides: GRUB's EFI platform, the file name UEFI boots from removable
# media, the root partition type (the Discoverable Partitions Specification's) and systemd's name for it,
# whether BIOS exists, and the EFI binaries' suffix (systemd-bootx64.efi, shimx64.efi).
ARCHES = {
    "amd64": {"efi": "x86_64-efi", "efi_file": "BOOTX64.EFI", "root": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",
              "bios": True, "systemd": "x86-64", "efi_suffix": "x64"},
    "arm64": {"efi": "arm64-efi", "efi_file": "BOOTAA64.EFI", "root": "B921B045-1DF0-41C3-AF44-4C6F280D3FAE",
              "bios": False, "systemd": "arm64", "efi_suffix": "aa64"},
}
# ext4 as e2fsprogs 1.47.0 (bookworm) makes it: trixie's 1.47.2 adds orphan_file and metadata_csum_seed, and
# bookworm's GRUB 2.06 (Debian's signed grubx64.efi among them) cannot read a metadata_csum_seed filesystem.
EXT4_FEATURES = "^orphan_file,^metadata_csum_seed"


def parse_size(value: int | str) -> int:
    """Bytes from an integer or a string like "2G", "512MiB", "1.5G"; rounded down to whole MiB."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", value, re.IGNORECASE)
        if not match:
            raise StageError(f"size {value!r} is neither a number of bytes nor like \"2G\" or \"512MiB\"")
        value = int(float(match[1]) * UNITS[match[2].upper()])
    return value // MIB * MIB


def derived(root_fs_uuid: str, what: str) -> uuidlib.UUID:
    """An identifier for `what` that follows from root_fs_uuid alone (a name-based UUID, RFC 4122 version 5)."""
    return uuidlib.uuid5(uuidlib.UUID(root_fs_uuid), what)


def repart_derived(base: uuidlib.UUID, token: str) -> uuidlib.UUID:
    """The UUID systemd-repart derives from a partition's GUID for its filesystem ("file-system-uuid") or LUKS
    header ("luks-uuid"): HMAC-SHA256 of the token keyed by the GUID, cut to a version 4 UUID.

    repart gives no way to choose them, and what the disk's fstab, crypttab and boot loader name must be known
    before repart writes the filesystems; the assembler reads them back afterwards and fails if they differ."""
    digest = bytearray(hmac.new(base.bytes, token.encode(), hashlib.sha256).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x40
    digest[8] = (digest[8] & 0x3F) | 0x80
    return uuidlib.UUID(bytes=bytes(digest))


def write_file(path: str, content: str | bytes, mode: int = 0o644) -> None:
    """A file the assembler made, with its directories, at the build's epoch (its time on the disk)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(content.encode() if isinstance(content, str) else content)
    os.chmod(path, mode)
    at_epoch(path)


def at_epoch(path: str) -> None:
    """Give a file the assembler made the build's SOURCE_DATE_EPOCH as its times."""
    os.utime(path, (osbuild_stage.epoch(), osbuild_stage.epoch()))
