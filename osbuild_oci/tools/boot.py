"""Boots what an assembler made, under qemu: the right firmware, KVM when it works, the serial console here.

An arm64 disk boots on qemu's `virt` machine with AAVMF (UEFI only, arm64 has
no BIOS), under TCG on any other host.  The image is opened in snapshot mode (`-snapshot`), so a boot never changes
it; UEFI boots get a private copy of OVMF's variable store.  Whether KVM
works is asked of the machine itself, once per host boot: a 512-byte guest
that only writes to qemu's debug-exit port must get there through SeaBIOS
under KVM within PROBE_TIMEOUT (TCG takes 0.06-0.6 s, a working KVM less).
Where /dev/kvm exists but guests crawl, hang or abort (nested virtualisation),
the answer is no and TCG runs instead.  Measured on such VMs: the probe took 15 s
on one and 3.2 s on another, and on both a Debian guest never got past GRUB, so
the probe must be fast, not merely finish.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..pipeline import arch
from ..engine.host import runtime_dir
from ..errors import UserError

QEMU = "qemu-system-x86_64"


@dataclass(frozen=True)
class Machine:
    """What qemu needs to boot a disk of one architecture: its binary, machine, UEFI firmware and packages."""

    qemu: str
    machine: tuple[str, ...]
    firmware: Path
    # (code, variables) pairs, newest layout first.
    firmware_files: tuple[tuple[str, str], ...]
    packages: str
    bios: bool


MACHINES = {
    # Debian 12 and later ship OVMF's 4M builds.
    "amd64": Machine(QEMU, (), Path("/usr/share/OVMF"), (("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
                                                        ("OVMF_CODE.fd", "OVMF_VARS.fd")),
                     "qemu-system-x86 ovmf", True),
    "arm64": Machine("qemu-system-aarch64", ("-machine", "virt", "-cpu", "cortex-a57"), Path("/usr/share/AAVMF"),
                     (("AAVMF_CODE.fd", "AAVMF_VARS.fd"),), "qemu-system-arm qemu-efi-aarch64", False),
}
_MAGIC = {b"QFI\xfb": "qcow2", b"KDMV": "vmdk", b"vhdxfile": "vhdx"}
_SUFFIXES = (".qcow2", ".raw", ".img", ".vmdk", ".vhdx")
# mov al, 0x31; out 0xf4, al; hlt; jmp $-1: qemu's isa-debug-exit then exits with (0x31 << 1) | 1.
_PROBE = bytes([0xB0, 0x31, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD])
_PROBE_EXIT = 99
PROBE_TIMEOUT = 2


def find_image(path: Path) -> tuple[Path, str]:
    """The disk image (a file, or the one image in an output directory) and its format."""
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in _SUFFIXES and p.is_file())
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or f"no {'/'.join(_SUFFIXES)} file"
            raise UserError(f"{path}: give the disk image itself; the directory holds {names}")
        path = found[0]
    if not path.is_file():
        raise UserError(f"{path}: no such disk image")
    with open(path, "rb") as image:
        head = image.read(8)
    return path, next((fmt for magic, fmt in _MAGIC.items() if head.startswith(magic)), "raw")


def firmware(machine: Machine) -> tuple[Path, Path]:
    """The UEFI firmware's code and a template of its variable store."""
    for code, variables in machine.firmware_files:
        if (machine.firmware / code).is_file() and (machine.firmware / variables).is_file():
            return machine.firmware / code, machine.firmware / variables
    bios = ", or boot with --bios" if machine.bios else ""
    raise UserError(f"--uefi needs {machine.firmware / machine.firmware_files[0][0]}; install "
                    f"{machine.packages.split()[-1]}{bios}")


def kvm_works() -> bool:
    """Whether a KVM guest really runs here; the answer is kept until the host reboots."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    # The limit is in the name: a verdict reached under another limit is not this probe's answer.
    verdict = runtime_dir() / f"kvm-{boot_id}-{PROBE_TIMEOUT}s"
    if verdict.exists():
        return verdict.read_text() == "yes"
    with tempfile.TemporaryDirectory(prefix="osbuild-oci-kvm-") as tmp:
        probe = Path(tmp) / "probe.img"
        probe.write_bytes(_PROBE + bytes(510 - len(_PROBE)) + b"\x55\xaa")
        try:
            proc = subprocess.run([QEMU, "-accel", "kvm", "-machine", "pc", "-m", "16", "-nodefaults",
                                   "-no-user-config", "-display", "none", "-serial", "none", "-monitor", "none",
                                   "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                                   "-drive", f"file={probe},format=raw,if=ide"],
                                  capture_output=True, timeout=PROBE_TIMEOUT)
            works = proc.returncode == _PROBE_EXIT
        except subprocess.TimeoutExpired:
            works = False
    verdict.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    verdict.write_text("yes" if works else "no")
    return works


def command(image: Path, fmt: str, uefi: bool, accel: str, variables: Path | None, memory: int,
            extra: list[str], machine: Machine = MACHINES["amd64"]) -> list[str]:
    """The qemu command line: serial console and monitor on this terminal (Ctrl-a x quits)."""
    argv = [machine.qemu, *machine.machine, "-accel", accel, "-m", str(memory), "-smp", "2", "-nographic",
            "-snapshot", "-drive", f"file={image},format={fmt},if=virtio"]
    if uefi:
        code, _ = firmware(machine)
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={variables}"]
    return argv + extra


def boot(path: Path, uefi: bool | None, accel: str, memory: int, extra: list[str], disk_arch: str) -> int:
    """Boot the image of disk_arch (UEFI unless it has a BIOS and uefi is not asked for); qemu's exit status."""
    machine = MACHINES.get(disk_arch)
    if machine is None:
        raise UserError(f"--arch {disk_arch}: osbuild-oci boots {' and '.join(MACHINES)} disks")
    if uefi is False and not machine.bios:
        raise UserError(f"--bios: {disk_arch} has no BIOS; boot with --uefi")
    uefi = not machine.bios if uefi is None else uefi
    if shutil.which(machine.qemu) is None:
        raise UserError(f"{machine.qemu} is not installed; run scripts/setup-host (or apt-get install "
                        f"{machine.packages})")
    image, fmt = find_image(path)
    if accel == "auto":
        accel = "kvm" if disk_arch == arch.host() and kvm_works() else "tcg"
    with tempfile.TemporaryDirectory(prefix="osbuild-oci-boot-") as tmp:
        variables = None
        if uefi:
            variables = Path(tmp) / "VARS.fd"
            shutil.copyfile(firmware(machine)[1], variables)
        return subprocess.run(command(image, fmt, uefi, accel, variables, memory, extra, machine)).returncode
