"""The disk assembler's size parsing and partition layout, imported from its program: no podman, no disk.

The program runs its work only as a program, so importing it defines its
functions and nothing else; stagelib comes from the base image's folder.
"""

from __future__ import annotations

import subprocess

import pytest

from helpers import load_program

MIB = 1024 * 1024
disk = load_program("assemblers", "org.osbuild-oci.disk", "assemble")


@pytest.mark.parametrize("value,expected", [
    ("2G", 2048 * MIB), ("2GiB", 2048 * MIB), ("2gb", 2048 * MIB), (" 512 MiB ", 512 * MIB), ("1.5G", 1536 * MIB),
    ("1T", 1024 * 1024 * MIB), ("65536K", 64 * MIB), (str(64 * MIB), 64 * MIB),
    (200 * MIB, 200 * MIB), (200 * MIB + 12345, 200 * MIB), ("100.9M", 100 * MIB), ("1023K", 0),
])
def test_parse_size_rounds_down_to_whole_mib(value, expected):
    assert disk.parse_size(value) == expected


@pytest.mark.parametrize("value", ["2 G B", "2X", "-1G", "G", "", "2e9"])
def test_parse_size_refuses_what_is_not_a_size(value):
    with pytest.raises(disk.StageError, match="is neither a number of bytes nor like"):
        disk.parse_size(value)


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
def test_layout(pt_type, bios, uefi, expected):
    parts = disk.layout(2048 * MIB, pt_type, bios, uefi)
    assert [(role, start // MIB, size // MIB) for role, start, size in parts] == expected
    assert all(start % MIB == 0 and size % MIB == 0 for _, start, size in parts), "MiB-aligned"
    assert all(a[1] + a[2] == b[1] for a, b in zip(parts, parts[1:])), "no gaps, no overlaps"
    role, start, size = parts[-1]
    assert start + size == 2048 * MIB - MIB, "the last MiB stays free for the backup GPT"


@pytest.mark.parametrize("pt_type,bios,uefi,smallest", [
    ("gpt", True, True, 1 + 1 + 100 + 16 + 1), ("gpt", False, False, 1 + 16 + 1), ("dos", True, False, 1 + 16 + 1),
])
def test_layout_smallest_disk_and_one_mib_less(pt_type, bios, uefi, smallest):
    parts = disk.layout(smallest * MIB, pt_type, bios, uefi)
    assert parts[-1][0] == "root" and parts[-1][2] == disk.MIN_ROOT_SIZE
    with pytest.raises(disk.StageError, match=f"size {smallest - 1} MiB leaves no room for a root filesystem; "
                                              f"give at least {smallest} MiB"):
        disk.layout((smallest - 1) * MIB, pt_type, bios, uefi)


@pytest.mark.parametrize("disk_format,options,expected", [
    ("qcow2", {}, ["-O", "qcow2", "-o", "compat=1.1"]),
    ("qcow2", {"compat": "0.10", "compression": True}, ["-O", "qcow2", "-o", "compat=0.10", "-c"]),
    ("vmdk", {}, ["-O", "vmdk"]),
    ("vhdx", {}, ["-O", "vhdx"]),
])
def test_convert_args(disk_format, options, expected):
    assert disk.convert_args(disk_format, options) == expected


@pytest.mark.parametrize("disk_format", ["raw", "vmdk", "vhdx"])
def test_qcow2_options_are_refused_for_other_formats(disk_format):
    with pytest.raises(disk.StageError, match=f"option compat applies only to format qcow2, not {disk_format}"):
        disk.convert_args(disk_format, {"compat": "1.1"})


def test_a_failing_tool_still_shows_what_it_said_on_a_captured_stderr(capfd):
    """The assembler captures mkfs.vfat's stderr to drop one known warning; when a tool whose stderr is
    captured fails, its reason still reaches the user before the stage's one-line error."""
    with pytest.raises(disk.StageError, match="exited with status 3$"):
        disk.run(["sh", "-c", "echo 'mkfs.vfat: no room for the FAT' >&2; exit 3"], stderr=subprocess.PIPE, text=True)
    assert "mkfs.vfat: no room for the FAT" in capfd.readouterr().err
