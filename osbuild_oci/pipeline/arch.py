"""Architectures: Debian's name (what a pipeline writes), OCI's (what a tree image's config says) and the
kernel's (`uname -m`, binfmt_misc's handler names), and whether this host can run a foreign tree's programs.

Stage images always run natively; only what runs inside a foreign tree (dpkg's maintainer scripts,
chroot commands) needs qemu-user, through a binfmt_misc handler registered with the F (fix binary)
flag: the kernel then opens the interpreter at registration, so it works inside any container.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

BINFMT_MISC = Path("/proc/sys/fs/binfmt_misc")


@dataclass(frozen=True)
class Arch:
    debian: str
    oci: str
    machine: str
    variant: str = ""


ARCHES = {a.debian: a for a in (
    Arch("amd64", "amd64", "x86_64"), Arch("arm64", "arm64", "aarch64", "v8"), Arch("armhf", "arm", "arm", "v7"),
    Arch("i386", "386", "i386"), Arch("ppc64el", "ppc64le", "ppc64le"), Arch("riscv64", "riscv64", "riscv64"),
    Arch("s390x", "s390x", "s390x"))}
# Foreign architectures a host's CPU runs without an interpreter.
NATIVE_TOO = {"amd64": {"i386"}}
_MACHINES = {"x86_64": "amd64", "i686": "i386", **{a.machine: a.debian for a in ARCHES.values()}}


def host() -> str:
    """The host's architecture as Debian names it: the default of a pipeline's `arch`."""
    machine = platform.machine()
    return _MACHINES.get(machine, machine)


def runs_natively(arch: str) -> bool:
    return arch == host() or arch in NATIVE_TOO.get(host(), set())


def check_runnable(arch: str) -> None:
    """Refuse, in one line, a foreign arch this host has no usable binfmt_misc handler for."""
    if runs_natively(arch):
        return
    handler = BINFMT_MISC / f"qemu-{ARCHES[arch].machine}"
    try:
        lines = handler.read_text().splitlines()
    except OSError:
        lines = []
    flags = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("flags:")), "")
    if not (BINFMT_MISC / "register").exists():
        reason = f"binfmt_misc is not mounted at {BINFMT_MISC}"
    elif not lines:
        reason = f"no {handler.name} handler is registered in {BINFMT_MISC}"
    elif "enabled" not in lines:
        reason = f"the {handler.name} handler in {BINFMT_MISC} is disabled"
    elif "F" not in flags:
        reason = f"the {handler.name} handler was registered without the F (fix binary) flag, so containers cannot use it"
    else:
        return
    raise UserError(f"this {host()} host cannot run the {arch} tree's programs: {reason}; install qemu-user-static "
                    "(and binfmt-support) and run scripts/setup-host, which mounts binfmt_misc and registers the "
                    "handlers with the F flag", "arch")
