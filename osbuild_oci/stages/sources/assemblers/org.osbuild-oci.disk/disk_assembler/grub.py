"""GRUB without grub-install: images built with every module the configuration needs, the BIOS boot code put in
place by hand (grub-bios-setup refuses plain files), and the early configuration that finds /boot."""

import struct

from osbuild_stage import StageError, run

from .common import SECTOR

GRUB_DIR = "/usr/lib/grub"
# Built into every GRUB image, so grub.cfg's commands never load modules from disk: the filesystems a
# described layout may put /boot on, and what org.osbuild.grub2's and the assembler's grub.cfg use.
MODULES = ["part_gpt", "part_msdos", "ext2", "search", "search_fs_uuid", "normal", "configfile", "echo",
           "test", "linux", "boot", "gzio", "serial", "terminal", "all_video", "sleep", "reboot", "halt",
           "ls", "cat"]
# The filesystems GRUB must read /boot from in a described layout (the default layout's root is ext4).
FILESYSTEM_MODULES = {"ext4": "ext2", "xfs": "xfs", "btrfs": "btrfs", "vfat": "fat"}
# Offsets in GRUB's i386-pc boot.img and in the first sector of core.img (grub/boot/i386/pc/boot.h).
BOOT_CODE_SIZE = 440
BOOT_KERNEL_SECTOR = 0x5C
BOOT_DRIVE_CHECK = 0x66
CORE_BLOCKLIST_START = SECTOR - 12


def early_config(fs_uuid: str, prefix: str) -> str:
    """What a GRUB image runs first: find the filesystem holding grub.cfg by its UUID, read grub.cfg there."""
    return f"search --no-floppy --fs-uuid --set=root {fs_uuid}\nset prefix=($root){prefix}\n"


def image(platform: str, config_file: str, output: str, extra_modules: tuple = ()) -> None:
    """grub-mkimage of the platform (i386-pc, x86_64-efi, arm64-efi) with the modules built in."""
    run(["grub-mkimage", "-O", platform, "-d", f"{GRUB_DIR}/{platform}", "-c", config_file, "-p", "/boot/grub",
         "-o", output, *MODULES, *extra_modules])


def install_bios_boot(disk: str, core_img: str, core_start: int, room: int) -> None:
    """Put core.img at byte core_start and GRUB's boot code, pointing at it, into the MBR."""
    with open(core_img, "rb") as f:
        core = bytearray(f.read())
    if len(core) > room:
        raise StageError(f"GRUB's core.img ({len(core)} bytes) does not fit in the {room} bytes reserved for it")
    lba = core_start // SECTOR
    # The first sector of core.img loads the rest, listed as (start, count) from its end.
    core[CORE_BLOCKLIST_START:CORE_BLOCKLIST_START + 8] = struct.pack("<Q", lba + 1)
    with open(f"{GRUB_DIR}/i386-pc/boot.img", "rb") as f:
        boot = bytearray(f.read(BOOT_CODE_SIZE))
    boot[BOOT_KERNEL_SECTOR:BOOT_KERNEL_SECTOR + 8] = struct.pack("<Q", lba)
    # As grub-bios-setup does for hard disks: always trust the BIOS drive number in %dl.
    boot[BOOT_DRIVE_CHECK:BOOT_DRIVE_CHECK + 2] = b"\x90\x90"
    with open(disk, "r+b") as f:
        f.write(boot)
        f.seek(core_start)
        f.write(core)
