"""The default layout, as the disk assembler made it before layouts could be described: a BIOS boot partition, a
100 MiB ESP and one ext4 root filling the rest, written into the image file by sfdisk, `mkfs.ext4 -E offset -d`,
`mkfs.vfat --offset` and mtools, booted by GRUB reading the tree's /boot/grub/grub.cfg (org.osbuild.grub2).

The identifiers the tools would make up at random (the partition table's and partitions' GUIDs or the MBR disk
id, the ESP's volume id, ext4's directory hash seed) are derived from root_fs_uuid.  (ext4's internal journal
carries the filesystem's own UUID.)  The clocks are SOURCE_DATE_EPOCH: mke2fs's through E2FSPROGS_FAKE_TIME
(superblock times, lost+found, every inode's creation time), mkfs.vfat's through --invariant, mtools read it
themselves; GRUB's images depend only on their inputs.  Each inode's access and change times, which
mkfs.ext4 -d copies from the mounted tree, are set to its modification time with debugfs.  So the same tree
and options give the same bytes, from any store.
"""

import os
import subprocess
import sys

import osbuild_stage
from osbuild_stage import StageError, run

from . import grub, secureboot
from .common import EXT4_FEATURES, MIB, SECTOR, derived

ESP_SIZE = 100 * MIB
MIN_ROOT_SIZE = 16 * MIB
GPT_TYPES = {"bios": "21686148-6E49-704E-6564-65654E656564", "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"}
DOS_TYPES = {"esp": "ef", "root": "83"}


def layout(size: int, pt_type: str, bios: bool, uefi: bool) -> list[tuple[str, int, int]]:
    """The partitions as (role, start, size) in bytes, MiB-aligned; the last MiB stays free for the backup GPT."""
    parts, start = [], MIB
    if bios and pt_type == "gpt":
        parts.append(("bios", start, MIB))
        start += MIB
    if uefi:
        parts.append(("esp", start, ESP_SIZE))
        start += ESP_SIZE
    root_size = size - MIB - start
    if root_size < MIN_ROOT_SIZE:
        raise StageError(f"size {size // MIB} MiB leaves no room for a root filesystem; give at least "
                         f"{(start + MIN_ROOT_SIZE + MIB) // MIB} MiB")
    parts.append(("root", start, root_size))
    return parts


def partition(image: str, pt_type: str, parts: list, root_fs_uuid: str, root_type: str) -> None:
    disk_id = derived(root_fs_uuid, "disk")
    label_id = disk_id if pt_type == "gpt" else f"0x{disk_id.hex[:8]}"
    lines = [f"label: {pt_type}", f"label-id: {label_id}", "unit: sectors"]
    for role, start, size in parts:
        line = f"start={start // SECTOR}, size={size // SECTOR}"
        if pt_type == "gpt":
            line += (f", type={GPT_TYPES.get(role, root_type)}, name={role}, "
                     f"uuid={derived(root_fs_uuid, f'partition-{role}')}")
        else:
            line += f", type={DOS_TYPES[role]}" + (", bootable" if role == "root" else "")
        lines.append(line)
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", image], input="\n".join(lines) + "\n", text=True)


def make_root(image: str, tree: str, start: int, size: int, uuid: str) -> None:
    cmd = ["mkfs.ext4", "-q", "-F", "-U", uuid, "-d", tree, "-O", EXT4_FEATURES,
           "-E", f"offset={start},nodiscard,lazy_itable_init=1,lazy_journal_init=1,"
                 f"hash_seed={derived(uuid, 'ext4-hash-seed')}", image, f"{size // 1024}k"]
    epoch_clock = {**os.environ, "E2FSPROGS_FAKE_TIME": str(osbuild_stage.epoch())}
    try:
        run(cmd, env=epoch_clock)
    except StageError:
        raise StageError(f"mkfs.ext4 could not fill the {size // MIB} MiB root filesystem from the tree (its "
                         "message is above; 'Could not allocate block' means `size` is too small)") from None
    settle_times(image, tree, start)
    # The last write: debugfs stamped the superblock with the real clock, tune2fs (like mke2fs, unlike
    # debugfs in e2fsprogs 1.47) reads E2FSPROGS_FAKE_TIME.
    run(["tune2fs", "-L", "root", f"{image}?offset={start}"], env=epoch_clock, stdout=subprocess.DEVNULL)


def settle_times(image: str, tree: str, start: int) -> None:
    """Give every inode of the new filesystem its file's modification time as access and change time.

    mkfs.ext4 -d copies atime and ctime from the tree, and there they are the times this store
    unpacked each layer (no program can set a ctime), so two stores' identical trees would make
    different disks.  The mtime comes from the layer, which the source epoch clamped.  The root
    directory is mke2fs's own, with the epoch's times.  A name with a newline cannot be given to
    debugfs (one command per line); such a file keeps its times.
    """
    mtimes = {}
    for parent, dirs, files in os.walk(tree):
        for name in dirs + files:
            path = os.path.join(parent, name)
            mtimes["/" + os.path.relpath(path, tree)] = os.lstat(path).st_mtime_ns
    quoted = {inside: '"' + inside.replace('"', '""') + '"' for inside in mtimes if "\n" not in inside}
    script = "".join(f"sif {quoted[inside]} {field} @{mtimes[inside] // 10 ** 9}\n"
                     for inside in quoted for field in ("atime", "ctime"))
    proc = run(["debugfs", "-w", "-f", "-", f"{image}?offset={start}"], input=script, capture_output=True,
               encoding="utf-8", errors="surrogateescape")
    problems = [line for line in proc.stderr.splitlines() if not line.startswith("debugfs ")]
    if problems:
        raise StageError(f"debugfs could not set the root filesystem's file times: {problems[0]}")


def make_esp(image: str, start: int, size: int, root_fs_uuid: str, files: dict[str, str | bytes], tmp: str) -> None:
    """A FAT32 ESP at byte start holding files (path on the ESP -> a file to copy, or bytes)."""
    volume_id = derived(root_fs_uuid, "esp-volume-id").hex[:8]
    # --invariant fixes the times and would fix the volume id too: -i after it keeps the derived one.
    made = run(["mkfs.vfat", "-F", "32", "-s", "1", "-n", "ESP", "--invariant", "-i", volume_id,
                "--offset", str(start // SECTOR), image, str(size // 1024)], stdout=subprocess.DEVNULL,
               stderr=subprocess.PIPE, text=True)
    # With --offset it compares the ESP's size with the whole disk file's and warns that they differ, on
    # every build: that is the layout, not news.  Anything else it says is passed on.
    sys.stderr.write("".join(line for line in made.stderr.splitlines(keepends=True)
                             if not line.startswith("Warning: block count mismatch")))
    target = f"{image}@@{start}"
    made_dirs = set()
    for path, source in sorted(files.items()):
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder not in made_dirs:
                run(["mmd", "-i", target, f"::/{folder}"])
                made_dirs.add(folder)
        if isinstance(source, bytes):
            staged = os.path.join(tmp, "esp-file")
            with open(staged, "wb") as f:
                f.write(source)
            source = staged
        run(["mcopy", "-i", target, source, f"::/{path}"])


def build(tree: str, options: dict, arch: dict, size: int, image: str, tmp: str) -> None:
    """The default layout into image, a new file of size bytes."""
    pt_type = options.get("pt_type", "gpt")
    bios, uefi = options.get("bios", arch["bios"]), options.get("uefi", True)
    uuid = options["root_fs_uuid"]
    parts = layout(size, pt_type, bios, uefi)
    if (bios or uefi) and not os.path.isfile(os.path.join(tree, "boot/grub/grub.cfg")):
        raise StageError("the tree has no /boot/grub/grub.cfg: run org.osbuild.grub2 before this assembler "
                         "(or set bios and uefi to false for a disk that does not boot)")
    with open(image, "wb") as f:
        f.truncate(parts[-1][1] + parts[-1][2] + MIB)
    partition(image, pt_type, parts, uuid, arch["root"])
    where = {role: (start, size) for role, start, size in parts}
    make_root(image, tree, *where["root"], uuid)
    config = os.path.join(tmp, "early.cfg")
    with open(config, "w", encoding="utf-8") as f:
        f.write(grub.early_config(uuid, "/boot/grub"))
    if uefi:
        if options.get("secure_boot", False):
            files = secureboot.esp_files(tree, arch, uuid, "/boot/grub")
        else:
            efi_binary = os.path.join(tmp, arch["efi_file"])
            grub.image(arch["efi"], config, efi_binary)
            files = {f"EFI/BOOT/{arch['efi_file']}": efi_binary}
        make_esp(image, *where["esp"], uuid, files, tmp)
    if bios:
        core_img = os.path.join(tmp, "core.img")
        grub.image("i386-pc", config, core_img, ("biosdisk",))
        # GPT: the BIOS boot partition; MBR: the gap between the MBR and the first partition.
        core_start, room = where["bios"] if pt_type == "gpt" else (SECTOR, parts[0][1] - SECTOR)
        grub.install_bios_boot(image, core_img, core_start, room)
