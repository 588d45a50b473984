"""The disk assembler's logic, imported from its folder: sizes, the default layout, described layouts (identifiers,
fstab, crypttab, kernel command line, systemd-repart's definitions), the schema's one-line refusals, output
formats and the SBAT check.  No podman, no disk: tests/test_disks.py builds and boots the real thing."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import uuid

import pytest

from helpers import REPO
from osbuild_oci.pipeline.validation import bounded_validator, describe_validation_error, jsonschema

MIB = 1024 * 1024
DISK = REPO / "osbuild_oci" / "stages" / "sources" / "assemblers" / "org.osbuild-oci.disk"
sys.dont_write_bytecode = True
for folder in (DISK, DISK.parent.parent / "base"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from disk_assembler import classic, common, described, formats, repart, secureboot  # noqa: E402
from disk_assembler.layout import Layout  # noqa: E402
from osbuild_stage import StageError  # noqa: E402

SCHEMA = json.loads((DISK / "schema.json").read_text())
SEED = "5d0e1c3a-8b47-4f7e-9a2d-3c6b1e0f4a85"
ENCRYPTED = [{"type": "bios-boot"}, {"type": "esp", "size": "100M"}, {"type": "xbootldr", "size": "512M"},
             {"type": "swap", "size": "256M"},
             {"type": "root", "filesystem": "btrfs", "encrypt": {"key": {"secret": "luks"}},
              "subvolumes": [{"name": "@", "mountpoint": "/"}, {"name": "@home", "mountpoint": "/home"}]}]


@pytest.mark.parametrize("value,expected", [
    ("2G", 2048 * MIB), ("2GiB", 2048 * MIB), ("2gb", 2048 * MIB), (" 512 MiB ", 512 * MIB), ("1.5G", 1536 * MIB),
    ("1T", 1024 * 1024 * MIB), ("65536K", 64 * MIB), (str(64 * MIB), 64 * MIB),
    (200 * MIB, 200 * MIB), (200 * MIB + 12345, 200 * MIB), ("100.9M", 100 * MIB), ("1023K", 0),
])
def test_parse_size_rounds_down_to_whole_mib(value, expected):
    assert common.parse_size(value) == expected


@pytest.mark.parametrize("value", ["2 G B", "2X", "-1G", "G", "", "2e9"])
def test_parse_size_refuses_what_is_not_a_size(value):
    with pytest.raises(StageError, match="is neither a number of bytes nor like"):
        common.parse_size(value)


@pytest.mark.parametrize("pt_type,bios,uefi,expected", [
    ("gpt", True, True, [("bios", 1, 1), ("esp", 2, 100), ("root", 102, 2048 - 103)]),
    ("gpt", False, True, [("esp", 1, 100), ("root", 101, 2048 - 102)]),
    ("gpt", True, False, [("bios", 1, 1), ("root", 2, 2048 - 3)]),
    ("gpt", False, False, [("root", 1, 2048 - 2)]),
    # dos: core.img sits between the MBR and the first partition, so BIOS adds no partition.
    ("dos", True, True, [("esp", 1, 100), ("root", 101, 2048 - 102)]),
    ("dos", True, False, [("root", 1, 2048 - 2)]),
    ("dos", False, False, [("root", 1, 2048 - 2)]),
])
def test_default_layout(pt_type, bios, uefi, expected):
    parts = classic.layout(2048 * MIB, pt_type, bios, uefi)
    assert [(role, start // MIB, size // MIB) for role, start, size in parts] == expected
    assert all(start % MIB == 0 and size % MIB == 0 for _, start, size in parts), "MiB-aligned"
    assert all(a[1] + a[2] == b[1] for a, b in zip(parts, parts[1:])), "no gaps, no overlaps"
    role, start, size = parts[-1]
    assert start + size == 2048 * MIB - MIB, "the last MiB stays free for the backup GPT"


@pytest.mark.parametrize("pt_type,bios,uefi,smallest", [
    ("gpt", True, True, 1 + 1 + 100 + 16 + 1), ("gpt", False, False, 1 + 16 + 1), ("dos", True, False, 1 + 16 + 1),
])
def test_default_layout_smallest_disk_and_one_mib_less(pt_type, bios, uefi, smallest):
    parts = classic.layout(smallest * MIB, pt_type, bios, uefi)
    assert parts[-1][0] == "root" and parts[-1][2] == classic.MIN_ROOT_SIZE
    with pytest.raises(StageError, match=f"size {smallest - 1} MiB leaves no room for a root filesystem; "
                                         f"give at least {smallest} MiB"):
        classic.layout((smallest - 1) * MIB, pt_type, bios, uefi)


@pytest.mark.parametrize("disk_format,options,expected", [
    ("qcow2", {}, ["-O", "qcow2", "-o", "compat=1.1"]),
    ("qcow2", {"compat": "0.10", "compression": True}, ["-O", "qcow2", "-o", "compat=0.10", "-c"]),
    ("vmdk", {}, ["-O", "vmdk", "-o", "subformat=monolithicSparse"]),
    ("vmdk", {"subformat": "streamOptimized"}, ["-O", "vmdk", "-o", "subformat=streamOptimized"]),
    ("vhdx", {}, ["-O", "vhdx"]),
    ("vhd", {}, ["-O", "vpc", "-o", "subformat=fixed,force_size"]),
])
def test_convert_args(disk_format, options, expected):
    assert formats.convert_args(disk_format, options) == expected


@pytest.mark.parametrize("disk_format", ["raw", "vmdk", "vhdx", "vhd", "gce", "raw.zst"])
def test_qcow2_options_are_refused_for_other_formats(disk_format):
    with pytest.raises(StageError, match=f"option compat applies only to format qcow2, not {disk_format}"):
        formats.convert_args(disk_format, {"compat": "1.1"})


def test_a_failing_tool_still_shows_what_it_said_on_a_captured_stderr(capfd):
    """The assembler captures mkfs.vfat's stderr to drop one known warning; when a tool whose stderr is
    captured fails, its reason still reaches the user before the stage's one-line error."""
    with pytest.raises(StageError, match="exited with status 3$"):
        classic.run(["sh", "-c", "echo 'mkfs.vfat: no room for the FAT' >&2; exit 3"], stderr=subprocess.PIPE,
                    text=True)
    assert "mkfs.vfat: no room for the FAT" in capfd.readouterr().err


def test_repart_derives_filesystem_uuids_as_measured():
    """What systemd-repart 257 gave a partition with this GUID (read back with blkid): its filesystem UUID, and the
    FAT volume id that is the UUID's first half.  The assembler names filesystems by these before repart runs."""
    guid = uuid.UUID("aaaaaaaa-2222-4333-8444-555555555555")
    assert str(common.repart_derived(guid, "file-system-uuid")) == "cbf5d62b-3a4d-4f30-868a-da27faee558a"
    esp = uuid.UUID("11111111-2222-4333-8444-555555555555")
    assert str(common.repart_derived(esp, "file-system-uuid")).startswith("bf12051b")


def test_the_encrypted_btrfs_layout_gives_its_booted_system_fstab_crypttab_and_command_line():
    layout = Layout(ENCRYPTED, SEED)
    root = layout.root
    assert root.uuid == common.derived(SEED, "partition-root"), "partition GUIDs follow root_fs_uuid"
    # The names repart gives its filesystems and LUKS headers, as the test above measured them.
    assert root.fs_uuid == common.repart_derived(root.uuid, "file-system-uuid")
    assert root.luks_uuid == common.repart_derived(root.uuid, "luks-uuid")
    assert layout.fstab().splitlines()[2:] == [
        "/dev/mapper/root / btrfs defaults,subvol=@ 0 0",
        f"UUID={layout.by_type('xbootldr').fs_uuid} /boot ext4 defaults 0 2",
        f"UUID={layout.esp.fs_id} /boot/efi vfat umask=0077 0 2",
        "/dev/mapper/root /home btrfs defaults,subvol=@home 0 0",
        f"UUID={layout.by_type('swap').fs_uuid} none swap sw 0 0"]
    assert layout.crypttab().splitlines()[2:] == [f"root UUID={root.luks_uuid} none luks,discard,initramfs"]
    assert layout.kernel_cmdline(["console=ttyS0"]) == (
        f"root=UUID={root.fs_uuid} ro rootflags=subvol=@ cryptopts=target=root,source=UUID={root.luks_uuid},luks,"
        "discard console=ttyS0")
    assert layout.esp.fs_id == layout.esp.fs_uuid.hex[:8].upper()[:4] + "-" + layout.esp.fs_uuid.hex[4:8].upper()
    assert (layout.boot_mount.partition.type, layout.boot_path()) == ("xbootldr", "")
    assert layout.growth() == {}, "nothing grows unless asked"


def test_the_trees_kernel_cmdline_follows_the_layouts_root_then_kernel_opts(tmp_path):
    """What org.osbuild.kernel-cmdline wrote reaches a described layout's kernel too, but its root= named another
    disk's filesystem: the layout's root stays, and a word given twice counts in its last place."""
    layout = Layout([{"type": "esp", "size": "100M"}, {"type": "root"}], SEED)
    (tmp_path / "etc" / "kernel").mkdir(parents=True)
    (tmp_path / "etc" / "kernel" / "cmdline").write_text("root=UUID=76a22bf4-f153-4541-b6c7-0332c0dfaeac ro quiet "
                                                         "console=ttyS0\n")
    root = layout.holder("/")[0].partition
    assert described.command_line(str(tmp_path), layout, {"kernel_opts": "console=ttyS0 splash"}) == \
        f"root=UUID={root.fs_id} ro quiet console=ttyS0 splash"
    (tmp_path / "etc" / "kernel" / "cmdline").write_text("quiet; reboot")
    with pytest.raises(StageError, match="holds characters GRUB's script would interpret"):
        described.command_line(str(tmp_path), layout, {})


def test_repart_definitions_put_each_file_where_its_mountpoint_is(tmp_path):
    """The tree's /dev keeps its directory, not its contents: the device nodes of a tree built as root could be
    copied only with CAP_MKNOD, which no assembler gets."""
    tree = tmp_path / "tree"
    for folder in ("boot", "home/debian", "etc", "dev"):
        (tree / folder).mkdir(parents=True)
    (tree / "etc" / "fstab").write_text("# UNCONFIGURED FSTAB FOR BASE SYSTEM\n")
    generated = {"/etc/fstab": "/staged/etc/fstab", "/boot/grub/grub.cfg": "/staged/boot/grub/grub.cfg",
                 "/boot/efi/EFI/BOOT/BOOTX64.EFI": "/staged/BOOTX64.EFI"}
    found = repart.definitions(Layout(ENCRYPTED, SEED), str(tree), generated)
    assert list(found) == ["00-bios.conf", "01-esp.conf", "02-boot.conf", "03-swap.conf", "04-root.conf"]
    lines = {name: text.splitlines()[1:] for name, text in found.items()}
    assert lines["00-bios.conf"][1:] == ["Type=21686148-6E49-704E-6564-65654E656564", "Label=bios",
                                         f"UUID={common.derived(SEED, 'partition-bios')}",
                                         "SizeMinBytes=1048576", "SizeMaxBytes=1048576"]
    assert "CopyFiles=/staged/BOOTX64.EFI:/EFI/BOOT/BOOTX64.EFI" in lines["01-esp.conf"]
    assert lines["02-boot.conf"][-4:] == [f"CopyFiles={tree}/boot:/",
                                          "CopyFiles=/staged/boot/grub/grub.cfg:/grub/grub.cfg",
                                          "ExcludeFilesTarget=/efi/", "MakeDirectories=/efi"]
    assert lines["04-root.conf"][4:] == [
        "Format=btrfs", "GrowFileSystem=no", "Encrypt=key-file", "Subvolumes=/@ /@home", f"CopyFiles={tree}:/@",
        f"CopyFiles={tree}/home:/@home", "CopyFiles=/staged/etc/fstab:/@/etc/fstab",
        "ExcludeFilesTarget=/@/boot/ /@/home/", f"ExcludeFiles={tree}/etc/fstab {tree}/dev/",
        "MakeDirectories=/@ /@/boot /@home /@/home"]


@pytest.mark.parametrize("link", ["srv", "srv/data"])
def test_a_mountpoint_that_is_a_symlink_in_the_tree_is_refused(tmp_path, link):
    """A symlink on the way (/srv -> /var/srv) or at the end would send the copy outside the tree's directory."""
    tree = tmp_path / "tree"
    (tree / "var" / "srv" / "data").mkdir(parents=True)
    if link == "srv":
        (tree / "srv").symlink_to("/var/srv")
    else:
        (tree / "srv").mkdir()
        (tree / "srv" / "data").symlink_to("/var/srv/data")
    layout = Layout([{"type": "root", "size": "1G"}, {"type": "linux-generic", "mountpoint": "/srv/data"}], SEED)
    with pytest.raises(StageError, match=re.escape("the tree's /srv/data is not a directory (a symlink")):
        repart.definitions(layout, str(tree), {})


def test_a_growing_last_partition_gets_repart_d_and_growfs():
    layout = Layout([{"type": "esp", "size": "512M"}, {"type": "root", "grow": True}], SEED, "systemd-boot")
    growth = layout.growth()
    assert list(growth) == ["00-esp.conf", "01-root.conf"], "every partition, in order, so repart matches them"
    assert growth["00-esp.conf"].endswith("[Partition]\nType=esp\nWeight=0\n")
    assert growth["01-root.conf"].endswith("[Partition]\nType=root\n")
    assert f"UUID={layout.root.fs_uuid} / ext4 errors=remount-ro,x-systemd.growfs 0 1" in layout.fstab()
    assert (layout.boot_mount.partition.type, layout.boot_path()) == ("root", "/boot")


@pytest.mark.parametrize("partitions, bootloader, said", [
    ([{"type": "root", "label": "a"}, {"type": "home", "label": "a"}], "grub", "label 'a' is used twice"),
    ([{"type": "root", "size": "1G"}, {"type": "linux-generic", "mountpoint": "/home", "label": "extra"},
      {"type": "home"}], "grub", "/home is mounted twice"),
    ([{"type": "root", "size": "1G"}, {"type": "linux-generic", "mountpoint": "/usr/local"}], "grub",
     "/usr/local must be on the root filesystem"),
    ([{"type": "esp"}, {"type": "root"}], "grub", "partitions[0] (esp): give size, or min_size/max_size"),
    ([{"type": "root", "size": "1G", "grow": True}, {"type": "home"}], "grub",
     "only the last partition can grow at first boot"),
    ([{"type": "root", "filesystem": "btrfs", "subvolumes": [{"name": "@home", "mountpoint": "/home"}]}], "grub",
     "one subvolume must be mounted at the partition's own mountpoint /"),
    ([{"type": "esp", "size": "100M"}, {"type": "root", "encrypt": {"key": {"secret": "luks"}}}], "grub",
     "GRUB cannot read /boot on an encrypted partition; add an xbootldr partition"),
    ([{"type": "root", "size": "1G", "encrypt": {"key": {"secret": "a"}}},
      {"type": "home", "encrypt": {"key": {"secret": "b"}}}], "grub", "they share one passphrase"),
    ([{"type": "root"}], "systemd-boot", "systemd-boot is a UEFI boot loader: it needs an esp partition"),
    ([{"type": "bios-boot"}, {"type": "esp", "size": "100M"}, {"type": "root"}], "systemd-boot",
     "and no bios-boot partition"),
    ([{"type": "esp", "size": "100M"}, {"type": "xbootldr", "size": "1G"}, {"type": "root"}], "systemd-boot",
     "give it filesystem vfat"),
])
def test_a_layout_the_schema_cannot_judge_is_refused_with_one_line(partitions, bootloader, said):
    with pytest.raises(StageError, match=re.escape(said)):
        Layout(partitions, SEED, bootloader)


def refusal(options: dict) -> str:
    """The line `osbuild-oci build` prints for the assembler's options, or '' when the schema takes them."""
    error = jsonschema.exceptions.best_match(bounded_validator(SCHEMA).iter_errors(
        {"filename": "d.qcow2", "root_fs_uuid": SEED, **options}))
    return "" if error is None else str(describe_validation_error(error, "assembler.options"))


@pytest.mark.parametrize("options, said", [
    ({"partitions": [{"type": "root"}, {"type": "lvm"}]},
     "assembler.options.partitions[1].type: LVM is refused: its volume groups are made and filled through "
     "device-mapper"),
    ({"partitions": [{"type": "home"}]}, "assembler.options.partitions: exactly one partition must have type root"),
    ({"partitions": [{"type": "root"}, {"type": "root"}]}, "exactly one partition must have type root"),
    ({"partitions": [{"type": "esp"}, {"type": "esp"}, {"type": "root"}]}, "at most one partition may have type esp"),
    ({"partitions": [{"type": "root"}], "pt_type": "dos"},
     "assembler.options.pt_type: pt_type is for the default layout; with partitions the layout says it"),
    ({"kernel_opts": "quiet"}, "assembler.options.kernel_opts: kernel_opts needs partitions"),
    ({"partitions": [{"type": "root", "mountpoint": "/srv"}]},
     "partitions[0].mountpoint: the type decides the mountpoint"),
    ({"partitions": [{"type": "linux-generic"}, {"type": "root"}]}, "'mountpoint' is a required property"),
    ({"partitions": [{"type": "root", "subvolumes": [{"name": "@", "mountpoint": "/"}]}]},
     "partitions[0].subvolumes: subvolumes need filesystem btrfs"),
    ({"partitions": [{"type": "esp", "filesystem": "ext4"}, {"type": "root"}]},
     "partitions[0].filesystem: must be \"vfat\", not \"ext4\": the firmware reads the ESP: it must be vfat"),
    ({"partitions": [{"type": "esp", "encrypt": {"key": {"secret": "k"}}}, {"type": "root"}]},
     "partitions[0].encrypt: the firmware reads the ESP: it cannot be encrypted"),
    ({"partitions": [{"type": "root", "size": "1G", "min_size": "1G"}]},
     "partitions[0].min_size: give either size (fixed) or min_size/max_size"),
    ({"partitions": [{"type": "root"}], "bootloader": "systemd-boot", "secure_boot": True},
     "assembler.options.secure_boot: Debian's signed chain is shim and GRUB; with systemd-boot give your own db key"),
    ({"secure_boot": {"key": {"secret": "k"}, "certificate": {"secret": "c"}}},
     "a db key of your own signs systemd-boot and unified kernel images"),
    ({"format": "gce", "size": "1536M"}, "GCE imports disks of a whole number of GiB"),
    ({"format": "qcow2", "subformat": "streamOptimized"}, "subformat applies only to format vmdk"),
    ({"partitions": ENCRYPTED, "kernel_opts": "console=ttyS0", "serial": "serial --unit=0 --speed=115200"}, ""),
    ({"format": "gce", "size": "10G"}, ""),
    ({"secure_boot": True}, ""),
])
def test_the_schema_refuses_with_one_line_that_says_why(options, said):
    found = refusal(options)
    assert (said in found) if said else found == "", found


def sbatlevel(previous: str, latest: str) -> bytes:
    """A shim .sbatlevel section: format version, then the offsets of the two policies from the header."""
    first = previous.encode() + b"\0"
    return struct.pack("<III", 0, 8, 8 + len(first)) + first + latest.encode() + b"\0"


def test_shim_applies_its_previous_sbat_policy_and_a_grub_it_revokes_is_refused():
    """shim 16.1's own section as Debian's shim-signed carries it: by default it revokes GRUB below grub,5."""
    level = sbatlevel("sbat,1,2025021800\nshim,4\ngrub,5\n", "sbat,1,2025051000\nshim,4\ngrub,5\ngrub.proxmox,2\n")
    policy = secureboot.shim_policy(level)
    assert secureboot.generations(policy) == {"sbat": 1, "shim": 4, "grub": 5}
    grub = "sbat,1,SBAT Version,sbat,1,https://github.com/rhboot/shim/blob/main/SBAT.md\ngrub,{},Free Software\n"
    assert secureboot.sbat_refusal(policy, grub.format(7)) is None
    assert secureboot.sbat_refusal(policy, grub.format(5)) is None
    assert secureboot.sbat_refusal(policy, grub.format(4)) == (
        "the tree's signed GRUB has SBAT generation grub,4, which its shim revokes (grub,5): the firmware would "
        "refuse it; install the grub-efi-amd64-signed that matches shim-signed (the same suite and point release)")
