"""What the host imposes on podman: where runtime state lives, which limits hold, which mounts linger."""

from __future__ import annotations

import enum
import functools
import json
import os
import re
import resource
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

from ..errors import EngineError

_OCTAL = re.compile(rb"\\([0-7]{3})")


def runtime_dir() -> Path:
    """Sockets and podman's run state, in short paths: podman refuses a runroot over 50
    characters, and conmon's sockets must stay under 108 bytes.

    Rootless users started with su/runuser have no XDG_RUNTIME_DIR; they get a
    private directory under /tmp instead.
    """
    if os.geteuid() == 0:
        return Path("/run/osbuild-oci")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "osbuild-oci" if runtime else Path(f"/tmp/osbuild-oci-{os.getuid()}")


def scratch_root() -> Path:
    """Where podman's scratch for this user's stores goes: where podman's own would (TMPDIR, else
    /var/tmp), which is on a disk, not a tmpfs, and keeps a full store's disk a plain ENOSPC."""
    return Path(os.environ.get("TMPDIR") or "/var/tmp") / f"osbuild-oci-{os.geteuid()}"


def private_dir(path: Path, chosen_by: str = "XDG_RUNTIME_DIR") -> Path:
    """Create path (and its parent) 0700 for this user, or refuse one that is someone else's (the
    variable chosen_by moves it elsewhere)."""
    for directory in (path.parent, path):
        try:
            directory.mkdir(mode=0o700, exist_ok=True)
        except FileNotFoundError:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise EngineError(f"{directory} is not a directory of this user (uid {os.geteuid()}); "
                              f"remove it or set {chosen_by} to a directory of your own")
        if info.st_mode & 0o077:
            os.chmod(directory, 0o700)
    return path


@functools.cache
def native_overlay(where: Path) -> bool:
    """Whether this user can mount overlayfs itself on the filesystem of `where`: root can, an ordinary user in a
    user namespace of its own on Linux 5.11 and later, but nobody on an overlay (a container's own root).
    Asked of the kernel once per boot and filesystem (a throwaway user namespace mounts one there).  Makes
    `where`: podman refuses a storage directory that does not exist, even an empty one's."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        return True
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    verdict = private_dir(runtime_dir() / "overlay") / f"{boot_id}-{where.stat().st_dev}"
    if not verdict.exists():
        with tempfile.TemporaryDirectory(prefix=".overlay-probe-", dir=where) as probe:
            script = ('cd "$1" && mkdir lower upper work merged && '
                      'mount -t overlay overlay -o lowerdir=lower,upperdir=upper,workdir=work merged')
            proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", probe],
                                  capture_output=True)
        verdict.write_text("yes" if proc.returncode == 0 else "no")
    return verdict.read_text() == "yes"


def ulimits() -> list[dict]:
    """Limits every container gets: the host's own, capped where runc cannot set more.

    podman's defaults (nofile=1048576) exceed the hard limit of many VMs and CI
    runners, where every container then fails to start.
    """
    out = []
    for name, rlimit, cap in (("nofile", resource.RLIMIT_NOFILE, 65536), ("nproc", resource.RLIMIT_NPROC, 16384)):
        _, hard = resource.getrlimit(rlimit)
        value = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        out.append({"Name": name, "Soft": value, "Hard": value})
    return out


def decode_mount_field(field: bytes) -> str:
    """A field of /proc/self/mounts: the kernel escapes space, tab, newline and backslash as octal, nothing else."""
    return _OCTAL.sub(lambda m: bytes([int(m[1], 8)]), field).decode(errors="surrogateescape")


def mount_points() -> list[str]:
    """Every mount point of this process."""
    with open("/proc/self/mounts", "rb") as mounts:
        return [decode_mount_field(line.split()[1]) for line in mounts if line.strip()]


def mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    return [p for p in mount_points() if p.startswith(prefix)]


def unmount_below(path: Path) -> None:
    """Undo the mounts containers-storage leaves under a store, so the directory can be removed.

    The same point can be mounted more than once (stacked), so this repeats until none is left.
    """
    for _ in range(5):
        points = sorted(mounts_below(path), key=len, reverse=True)
        if not points:
            return
        for point in points:
            subprocess.run(["umount", "-l", point], capture_output=True)


class Network(enum.StrEnum):
    """What a container's network is: none; a namespace of its own, kept off this host's addresses; the host's."""

    NONE = "none"
    ISOLATED = "isolated"
    HOST = "host"


@functools.cache
def isolated_network() -> str | None:
    """podman's network mode that gives a container a namespace of its own: root, podman's bridge; rootless,
    slirp4netns, which needs /dev/net/tun (0666 on an ordinary Debian, 0600 on some VMs: setup-host fixes it).
    None where there is none."""
    if os.geteuid() == 0:
        return "bridge"
    if shutil.which("slirp4netns") and os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return "slirp4netns"
    return None


def _own_addresses() -> list[tuple[int, str]]:
    """(IP version, address) of every address of this host's interfaces but loopback."""
    proc = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise EngineError(f"ip could not list this host's addresses: {proc.stderr.strip()}")
    found = [(6 if info.get("family") == "inet6" else 4, info["local"]) for link in json.loads(proc.stdout)
             for info in link.get("addr_info", []) if "local" in info]
    return [(version, address) for version, address in found if address not in ("127.0.0.1", "::1")
            and not address.startswith("127.")]


def guard_rules() -> list[list[str]]:
    """The firewall rules that keep a stage's own network namespace off link-local addresses (a cloud's
    metadata service at 169.254.169.254) and off every address of this host (its services, podman's bridge),
    while name lookups (port 53) still pass."""
    tools = {4: "iptables", 6: "ip6tables"}
    rules = [[tools[v], "-w", "-A", "OUTPUT", "-p", proto, "--dport", "53", "-j", "ACCEPT"]
             for v in (4, 6) for proto in ("udp", "tcp")]
    blocked = [(4, "169.254.0.0/16"), (6, "fe80::/10"), *_own_addresses()]
    return rules + [[tools[v], "-w", "-A", "OUTPUT", "-d", address, "-j", "REJECT"] for v, address in blocked]


def guard_network(netns: str, in_userns: list[str]) -> None:
    """Apply guard_rules inside a container's network namespace, before its program starts (from outside: the
    container has no CAP_NET_ADMIN to undo them).  Rootless, from podman's user namespace, which owns it."""
    for rule in guard_rules():
        if shutil.which(rule[0]) is None:
            raise EngineError(f"{rule[0]} is needed to keep stages off this host's addresses; install iptables")
        proc = subprocess.run([*in_userns, "nsenter", f"--net={netns}", *rule], capture_output=True, text=True)
        if proc.returncode != 0:
            raise EngineError(f"could not keep the stage's network off this host ({' '.join(rule)}): "
                              f"{proc.stderr.strip()[-300:]}")
