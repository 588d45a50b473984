"""The output formats: each one made from the raw disk by the tool its users' platform documents.

qcow2, vmdk, vhdx and vhd come from qemu-img convert; gce is GNU tar's sparse oldgnu archive, gzip'd, holding
exactly disk.raw (Google Compute Engine's import); raw.xz and raw.zst are the raw disk compressed.  What
differs between two builds of the same tree is documented in docs/disks.md.
"""

import os
import subprocess

import osbuild_stage
from osbuild_stage import StageError, run

# The options only qcow2 has (the format names are qemu-img's own).
QCOW2_ONLY = ("compat", "compression")
# The raw disk inside a GCE image must be called this (cloud.google.com/compute/docs/import/import-existing-image).
GCE_MEMBER = "disk.raw"
GIB = 1024 ** 3


def convert_args(disk_format: str, options: dict) -> list[str]:
    """qemu-img convert's output options; qcow2's own options with another format are the user's mistake."""
    if disk_format != "qcow2":
        given = [key for key in QCOW2_ONLY if key in options]
        if given:
            raise StageError(f"option {given[0]} applies only to format qcow2, not {disk_format}; remove it")
    if disk_format == "qcow2":
        return ["-O", "qcow2", "-o", f"compat={options.get('compat', '1.1')}",
                *(["-c"] if options.get("compression", False) else [])]
    if disk_format == "vmdk":
        return ["-O", "vmdk", "-o", f"subformat={options.get('subformat', 'monolithicSparse')}"]
    if disk_format == "vhd":
        # Azure takes fixed VHDs only, whose virtual size is a whole number of MiB; without force_size qemu-img
        # rounds the size to a CHS geometry instead.
        return ["-O", "vpc", "-o", "subformat=fixed,force_size"]
    return ["-O", disk_format]


def compress_command(disk_format: str) -> list[str]:
    """xz or zstd writing the raw disk to stdout, the same bytes for the same disk on any machine: xz in blocks
    of a fixed size (its output depends on the block size, not on the number of threads), zstd in its
    multi-threaded mode, whose output does not depend on the number of threads either."""
    if disk_format == "raw.xz":
        return ["xz", "--compress", "--stdout", "--threads=0", "--block-size=64MiB", "-6"]
    return ["zstd", "--compress", "--stdout", "--quiet", "-T0", "-10"]


def gce_archive(raw: str, target: str) -> None:
    size = os.path.getsize(raw)
    if size % GIB:
        raise StageError(f"format gce: Google Compute Engine imports disks of a whole number of GiB, this one has "
                         f"{size / GIB:.2f} GiB; give size as e.g. \"10G\"")
    epoch = osbuild_stage.epoch()
    with open(target, "wb") as out:
        tar = subprocess.Popen(["tar", "--create", "--format=oldgnu", "--sparse", f"--mtime=@{epoch}", "--owner=0",
                                "--group=0", "--numeric-owner", "--directory", os.path.dirname(raw), GCE_MEMBER],
                               stdout=subprocess.PIPE)
        # -n: no name and no time in the gzip header.
        run(["gzip", "-n", "-6"], stdin=tar.stdout, stdout=out)
        tar.stdout.close()
        if tar.wait() != 0:
            raise StageError(f"tar exited with status {tar.returncode} while archiving the disk for GCE")


def convert(raw: str, target: str, disk_format: str, options: dict) -> None:
    """Write the raw disk in the format to target (the raw format is the raw disk itself)."""
    if disk_format == "raw":
        return
    if disk_format == "gce":
        if os.path.basename(raw) != GCE_MEMBER:
            raise AssertionError(f"the raw disk for gce must be called {GCE_MEMBER}")
        gce_archive(raw, target)
    elif disk_format in ("raw.xz", "raw.zst"):
        with open(raw, "rb") as disk, open(target, "wb") as out:
            run(compress_command(disk_format), stdin=disk, stdout=out)
    else:
        run(["qemu-img", "convert", "-f", "raw", *convert_args(disk_format, options), raw, target])
