"""`osbuild-oci boot`: boot a disk image or ISO the assemblers made, under qemu, its serial console on this terminal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .common import app, command


@command(app)
def boot(
    image: Path = typer.Argument(..., metavar="OUTPUT_DIR_OR_IMAGE",
                                 help="A qcow2/raw/vmdk/vhdx/vhd image or ISO, or the output directory holding one"),
    uefi: Optional[bool] = typer.Option(None, "--uefi/--bios",
                                        help="Firmware: UEFI (OVMF, AAVMF) or SeaBIOS [default: --bios where the "
                                             "architecture has one]"),
    secure_boot: bool = typer.Option(False, "--secure-boot",
                                     help="UEFI with Secure Boot enforced: OVMF's secure build on q35, Microsoft's "
                                          "and Debian's keys enrolled (Debian's signed shim boots)"),
    enroll: List[Path] = typer.Option([], "--enroll", metavar="CERT", dir_okay=False,
                                      help="With --secure-boot: also trust this db certificate (PEM or DER), e.g. "
                                           "the one a UKI was signed with (repeatable)"),
    cdrom: Optional[bool] = typer.Option(None, "--cdrom/--disk",
                                         help="Boot the image as a CD-ROM, or as a disk (a hybrid ISO written to a "
                                              "USB stick) [default: CD-ROM for an ISO, else disk]"),
    seed: Optional[Path] = typer.Option(None, "--seed", metavar="USER_DATA", dir_okay=False,
                                        help="cloud-init user-data, given to the guest as a NoCloud seed"),
    meta_data: Optional[Path] = typer.Option(None, "--meta-data", metavar="FILE", dir_okay=False,
                                             help="With --seed: the seed's meta-data [default: an instance-id only]"),
    size: Optional[str] = typer.Option(None, "--size", metavar="SIZE",
                                       help="Boot the disk grown to SIZE (e.g. 6G) through a private overlay; the "
                                            "image is not changed"),
    net: bool = typer.Option(False, "--net", help="Give the guest user-mode network (outgoing only) [default: none]"),
    ssh: Optional[int] = typer.Option(None, "--ssh", metavar="PORT", min=1, max=65535,
                                      help="Network, and the guest's port 22 on 127.0.0.1:PORT of this host"),
    disk_arch: Optional[str] = typer.Option(None, "--arch", metavar="ARCH",
                                            help="The disk's architecture (Debian's name, as the pipeline's arch): "
                                                 "amd64 or arm64 (qemu's virt machine, UEFI) [default: the host's]"),
    accel: str = typer.Option("auto", "--accel", metavar="auto|kvm|tcg",
                              help="auto: KVM when Linux really runs under it on this host, else TCG"),
    memory: int = typer.Option(1024, "--memory", "-m", metavar="MIB", min=64, help="Guest memory in MiB"),
    qemu_args: Optional[List[str]] = typer.Argument(None, metavar="[-- QEMU_ARGS...]",
                                                    help="Passed to qemu as they are"),
) -> None:
    """Boot IMAGE under qemu (the image is never changed); the serial console is this terminal, Ctrl-a x quits."""
    from ..errors import UserError
    from ..pipeline.arch import host
    from ..units import parse_size
    from ..tools.boot import Accel, Boot, Firmware, run
    if accel not in tuple(Accel):
        raise UserError(f"--accel {accel!r}: give auto, kvm or tcg")
    firmware = Firmware.SECURE_BOOT if secure_boot else None if uefi is None else \
        Firmware.UEFI if uefi else Firmware.BIOS
    if secure_boot and uefi is False:
        raise UserError("--secure-boot is a UEFI boot; leave out --bios")
    sys.exit(run(Boot(image, firmware, Accel(accel), memory, disk_arch=disk_arch or host(), cdrom=cdrom,
                      enroll=tuple(enroll), seed=seed, meta_data=meta_data,
                      size=parse_size(size, "--size") if size else None, net=net, ssh_port=ssh,
                      extra=tuple(qemu_args or ()))))
