"""A disk image given to `osbuild-oci boot`, taken as input: found, its format read from its bytes (qemu is
told it, so it never guesses), and refused when it would make qemu open another file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ..errors import UserError

_MAGIC = {b"QFI\xfb": "qcow2", b"KDMV": "vmdk", b"vhdxfile": "vhdx", b"conectix": "vpc"}
SUFFIXES = (".qcow2", ".raw", ".img", ".vmdk", ".vhdx", ".vhd", ".iso")
ISO9660 = (0x8001, b"CD001")


def refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise UserError(f"{path} is a symbolic link; give the image file itself")


def find_image(path: Path) -> tuple[Path, str]:
    """The disk image (a file, or the one image in an output directory) and its format, read from its bytes."""
    refuse_link(path)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file() and not p.is_symlink())
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or f"no {'/'.join(SUFFIXES)} file"
            raise UserError(f"{path}: give the disk image itself; the directory holds {names}")
        path = found[0]
    if not path.is_file():
        raise UserError(f"{path}: no such disk image")
    with open(path, "rb") as image:
        head = image.read(8)
        image.seek(ISO9660[0])
        iso = image.read(len(ISO9660[1])) == ISO9660[1]
        # A fixed VHD has its footer only at the end.
        image.seek(max(0, path.stat().st_size - 512))
        vhd = image.read(8) == b"conectix"
    found = next((fmt for magic, fmt in _MAGIC.items() if head.startswith(magic)), None)
    return path, found or ("vpc" if vhd else "iso" if iso else "raw")


def check_self_contained(image: Path, fmt: str) -> None:
    """Refuse an image that makes qemu open other files: a backing file, an external data file, another extent."""
    if fmt in ("raw", "iso"):
        return
    proc = subprocess.run(["qemu-img", "info", "--output=json", "-f", fmt, "--", str(image)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"{image}: qemu-img cannot read it as {fmt}: {proc.stderr.strip()[-300:]}")
    info = json.loads(proc.stdout)
    specific = (info.get("format-specific") or {}).get("data") or {}
    others = [info.get("backing-filename"), specific.get("data-file"),
              *(e.get("filename") for e in specific.get("extents") or [] if e.get("filename") != str(image))]
    named = [str(other) for other in others if other]
    if named:
        raise UserError(f"{image}: the {fmt} image refers to another file ({named[0]}); osbuild-oci boots only "
                        "self-contained images (convert it with `qemu-img convert -O qcow2`)")


def drive(path: Path) -> str:
    """A file name as -drive takes it: commas doubled, so a name cannot add options."""
    return str(path).replace(",", ",,")
