"""`osbuild-oci boot`: boot a disk image the assemblers made, under qemu, its serial console on this terminal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UserError


def boot(
    image: Path = typer.Argument(..., metavar="OUTPUT_DIR_OR_IMAGE",
                                 help="A qcow2/raw/vmdk/vhdx image, or the output directory holding one"),
    uefi: Optional[bool] = typer.Option(None, "--uefi/--bios",
                                        help="Firmware: UEFI (OVMF, AAVMF) or SeaBIOS [default: --bios where the "
                                             "architecture has one]"),
    disk_arch: Optional[str] = typer.Option(None, "--arch", metavar="ARCH",
                                            help="The disk's architecture (Debian's name, as the pipeline's arch): "
                                                 "amd64 or arm64 (qemu's virt machine, UEFI) [default: the host's]"),
    accel: str = typer.Option("auto", "--accel", metavar="auto|kvm|tcg",
                              help="auto: KVM when a KVM guest really runs on this host, else TCG"),
    memory: int = typer.Option(1024, "--memory", "-m", metavar="MIB", min=64, help="Guest memory in MiB"),
    qemu_args: Optional[List[str]] = typer.Argument(None, metavar="[-- QEMU_ARGS...]",
                                                    help="Passed to qemu as they are"),
) -> None:
    """Boot IMAGE under qemu in snapshot mode (the image is never changed); the serial console is this
    terminal, Ctrl-a x quits."""
    from ..pipeline.arch import host
    from ..tools.boot import boot as run
    if accel not in ("auto", "kvm", "tcg"):
        raise UserError(f"--accel {accel!r}: give auto, kvm or tcg")
    sys.exit(run(image, uefi, accel, memory, list(qemu_args or []), disk_arch or host()))
