"""Boots what an assembler made, under qemu: the right firmware, KVM only where Linux really runs under it.

The image is never changed (`-snapshot`, or a private overlay when the disk is
grown for the boot), and it is input like any other: a file that is a symlink,
a qcow2 or vmdk that names another file (a backing file, an external data file,
an extent), would make qemu read what the image's author chose, so it is
refused; qemu is told the format, so it never guesses one.  The guest gets no
network unless asked.  UEFI boots get a private copy of the firmware's
variable store; Secure Boot boots OVMF's secure build on q35 with SMM, with
Microsoft's and Debian's keys enrolled (Debian's signed shim boots), plus any
certificate given to `--enroll` (a UKI signed with the user's own db key boots).

An arm64 disk boots on qemu's `virt` machine with AAVMF (UEFI only), under TCG
on any other host.  KVM counts as working only when a real Linux kernel (the
host's own) reaches its panic line under it within seconds: on the nested VMs
we build on, /dev/kvm opens and a boot sector runs, yet a Debian guest stops
after GRUB.  Without a host kernel to probe with, TCG runs.
"""

from __future__ import annotations

import enum
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.host import private_dir, runtime_dir
from ..errors import UserError
from ..pipeline import arch
from .disk import check_self_contained, drive, find_image, refuse_link


class Accel(enum.StrEnum):
    AUTO = "auto"
    KVM = "kvm"
    TCG = "tcg"


class Firmware(enum.StrEnum):
    BIOS = "bios"
    UEFI = "uefi"
    SECURE_BOOT = "secure-boot"


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
    # OVMF's Secure Boot build (code needing SMM) and its variables with Microsoft's and Debian's keys.
    secure_boot: tuple[str, str] | None = None


MACHINES = {
    # Debian 12 and later ship OVMF's 4M builds.
    "amd64": Machine("qemu-system-x86_64", (), Path("/usr/share/OVMF"),
                     (("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"), ("OVMF_CODE.fd", "OVMF_VARS.fd")),
                     "qemu-system-x86 ovmf", True, ("OVMF_CODE_4M.ms.fd", "OVMF_VARS_4M.ms.fd")),
    "arm64": Machine("qemu-system-aarch64", ("-machine", "virt", "-cpu", "cortex-a57"), Path("/usr/share/AAVMF"),
                     (("AAVMF_CODE.fd", "AAVMF_VARS.fd"),), "qemu-system-arm qemu-efi-aarch64", False),
}
# What edk2's Secure Boot build needs: q35 with SMM, its variable store reachable only from SMM.
SECURE_BOOT_MACHINE = ("-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on")
# The owner of the certificates --enroll adds to db (a name-based UUID: the same on every host).
ENROLL_OWNER = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://osbuild-oci.invalid/secure-boot-db"))
PROBE_TIMEOUT = 10
# What the host kernel prints when it finds no root filesystem: it got that far.
_PROBE_DONE = b"Kernel panic"


@dataclass(frozen=True)
class Boot:
    """One boot: what to boot, how, and what the guest may reach."""

    image: Path
    firmware: Firmware | None = None
    accel: Accel = Accel.AUTO
    memory: int = 1024
    cpus: int = 2
    disk_arch: str = arch.host()
    cdrom: bool | None = None
    enroll: tuple[Path, ...] = ()
    seed: Path | None = None
    meta_data: Path | None = None
    size: int | None = None
    net: bool = False
    ssh_port: int | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)


def firmware(machine: Machine) -> tuple[Path, Path]:
    """The UEFI firmware's code and a template of its variable store."""
    for code, variables in machine.firmware_files:
        if (machine.firmware / code).is_file() and (machine.firmware / variables).is_file():
            return machine.firmware / code, machine.firmware / variables
    bios = ", or boot with --bios" if machine.bios else ""
    raise UserError(f"--uefi needs {machine.firmware / machine.firmware_files[0][0]}; install "
                    f"{machine.packages.split()[-1]}{bios}")


def secure_boot_firmware(machine: Machine) -> tuple[Path, Path]:
    if machine.secure_boot is None:
        raise UserError("--secure-boot: osbuild-oci boots amd64 disks with Secure Boot (OVMF)")
    code, variables = (machine.firmware / name for name in machine.secure_boot)
    if not (code.is_file() and variables.is_file()):
        raise UserError(f"--secure-boot needs {code} and {variables}; install ovmf")
    return code, variables


def _host_kernel() -> Path | None:
    kernel = Path(f"/boot/vmlinuz-{os.uname().release}")
    return kernel if os.access(kernel, os.R_OK) else None


def kvm_works() -> bool:
    """Whether Linux really runs under KVM here: the host's own kernel, without a root filesystem, reaches its
    panic line within PROBE_TIMEOUT.  The verdict is kept (privately) until the host reboots."""
    kernel = _host_kernel()
    if kernel is None or not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    # The probe is in the name: a verdict reached by another probe is not this probe's answer.
    verdict = private_dir(runtime_dir() / "kvm") / f"{boot_id}-kernel-{PROBE_TIMEOUT}s"
    if verdict.exists():
        return verdict.read_text() == "yes"
    try:
        proc = subprocess.run(["qemu-system-x86_64", "-accel", "kvm", "-m", "256", "-nodefaults", "-no-user-config",
                               "-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
                               "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1"],
                              capture_output=True, timeout=PROBE_TIMEOUT)
        works = _PROBE_DONE in proc.stdout
    except subprocess.TimeoutExpired:
        works = False
    verdict.write_text("yes" if works else "no")
    return works


def _accel(boot: Boot) -> str:
    if boot.accel != Accel.AUTO:
        return boot.accel
    if boot.disk_arch == arch.host() and kvm_works():
        return Accel.KVM
    if _host_kernel() is None and os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("note: no host kernel to check KVM with (/boot/vmlinuz-$(uname -r)); booting under TCG, "
              "--accel kvm to try KVM", file=sys.stderr)
    return Accel.TCG


def _seed(boot: Boot, tmp: Path) -> Path:
    """A NoCloud seed (an ISO 9660 volume labelled cidata) holding the user's user-data and meta-data."""
    if shutil.which("xorriso") is None:
        raise UserError("--seed makes a NoCloud seed with xorriso; install xorriso (scripts/setup-host does)")
    files = tmp / "seed"
    files.mkdir()
    for given, name in ((boot.seed, "user-data"), (boot.meta_data, "meta-data")):
        if given is not None:
            refuse_link(given)
            try:
                shutil.copyfile(given, files / name)
            except OSError as err:
                raise UserError(f"--{'seed' if name == 'user-data' else 'meta-data'} {given}: {err.strerror}") from None
    if boot.meta_data is None:
        (files / "meta-data").write_text("instance-id: osbuild-oci-boot\n")
    seed = tmp / "seed.iso"
    proc = subprocess.run(["xorriso", "-as", "genisoimage", "-quiet", "-output", str(seed), "-volid", "cidata",
                           "-joliet", "-rock", str(files / "user-data"), str(files / "meta-data")],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"xorriso could not make the NoCloud seed: {proc.stderr.strip()[-300:]}")
    return seed


def _grown(image: Path, fmt: str, size: int, tmp: Path) -> Path:
    """A private qcow2 overlay of the image with a larger virtual size: the guest sees a bigger disk, the image
    is not changed."""
    overlay = tmp / "grown.qcow2"
    proc = subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b", str(image.resolve()),
                           str(overlay), str(size)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"--size {size}: qemu-img could not make the overlay: {proc.stderr.strip()[-300:]}")
    return overlay


def _variables(boot: Boot, machine: Machine, template: Path, tmp: Path) -> Path:
    """A private copy of the firmware's variable store, with the --enroll certificates added to db."""
    variables = tmp / "VARS.fd"
    if not boot.enroll:
        shutil.copyfile(template, variables)
        return variables
    added = [arg for cert in boot.enroll for arg in ("--add-db", ENROLL_OWNER, str(cert))]
    proc = subprocess.run([sys.executable, "-m", "virt.firmware.vars", "--input", str(template),
                           "--output", str(variables), *added, "--secure-boot"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"--enroll: virt-fw-vars could not add the certificate: {proc.stderr.strip()[-300:]}")
    return variables


def command(boot: Boot, tmp: Path) -> list[str]:
    """The qemu command line: serial console and monitor on this terminal (Ctrl-a x quits)."""
    machine = MACHINES.get(boot.disk_arch)
    if machine is None:
        raise UserError(f"--arch {boot.disk_arch}: osbuild-oci boots {' and '.join(MACHINES)} disks")
    chosen = boot.firmware or (Firmware.UEFI if boot.enroll or not machine.bios else Firmware.BIOS)
    if boot.enroll and chosen != Firmware.SECURE_BOOT:
        raise UserError("--enroll adds certificates to the Secure Boot database; give --secure-boot too")
    if chosen == Firmware.BIOS and not machine.bios:
        raise UserError(f"--bios: {boot.disk_arch} has no BIOS; boot with --uefi")
    if shutil.which(machine.qemu) is None:
        raise UserError(f"{machine.qemu} is not installed; run scripts/setup-host (or apt-get install "
                        f"{machine.packages})")
    image, fmt = find_image(boot.image)
    check_self_contained(image, fmt)
    cdrom = fmt == "iso" if boot.cdrom is None else boot.cdrom
    disk_fmt = "raw" if fmt == "iso" else fmt
    argv = [machine.qemu, *machine.machine, "-accel", _accel(boot), "-m", str(boot.memory), "-smp", str(boot.cpus),
            "-nographic"]
    if chosen == Firmware.SECURE_BOOT:
        code, template = secure_boot_firmware(machine)
        argv += SECURE_BOOT_MACHINE
    elif chosen == Firmware.UEFI:
        code, template = firmware(machine)
    if chosen != Firmware.BIOS:
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={drive(code)}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={drive(_variables(boot, machine, template, tmp))}"]
    if cdrom:
        argv += ["-drive", f"file={drive(image)},format=raw,media=cdrom,readonly=on"]
    elif boot.size is not None:
        argv += ["-drive", f"file={drive(_grown(image, disk_fmt, boot.size, tmp))},format=qcow2,if=virtio"]
    else:
        argv += ["-snapshot", "-drive", f"file={drive(image)},format={disk_fmt},if=virtio"]
    if boot.seed is not None:
        argv += ["-drive", f"file={drive(_seed(boot, tmp))},format=raw,if=virtio,readonly=on"]
    if boot.ssh_port is not None:
        argv += ["-nic", f"user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{boot.ssh_port}-:22"]
    elif boot.net:
        argv += ["-nic", "user,model=virtio-net-pci"]
    else:
        argv += ["-nic", "none"]
    return argv + list(boot.extra)


def run(boot: Boot) -> int:
    """Boot it; qemu's exit status.  Private files (variables, seed, overlay) go when qemu ends."""
    with tempfile.TemporaryDirectory(prefix="osbuild-oci-boot-") as tmp:
        return subprocess.run(command(boot, Path(tmp))).returncode

