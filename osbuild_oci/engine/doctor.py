"""Whether this process may run rootless stage containers, and if not, which privilege is missing and its fix.

Inside a container the failures podman reports are far from their causes: a masked
/proc surfaces as `409 Conflict` from the attach call, a setuid newuidmap as
`write to uid_map failed`.  Each check here tests one cause the research found
(docs/ci.md), in the order they bite, and names the flag that fixes it in podman,
docker and Kubernetes.  Checks that only concern rootless podman are skipped as root.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .host import decode_mount_field
from ..errors import EngineError

# The ids a tree's files may have: Debian's nobody/nogroup is 65534, so a user namespace needs
# ids 0-65534: the user's own id and 65534 subordinate ones.
NEEDED_SUBIDS = 65534
CAP_SETGID, CAP_SETUID, CAP_SYS_ADMIN = 6, 7, 21
IDMAP_TOOLS = {"newuidmap": "cap_setuid", "newgidmap": "cap_setgid"}


@dataclass(frozen=True)
class Finding:
    """One missing privilege: what is wrong, and how to fix it."""

    check: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.problem}; {self.fix}"


def _status(field: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def _has_cap(field: str, cap: int) -> bool:
    return bool(int(_status(field) or "0", 16) >> cap & 1)


def _mountinfo() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of this process's mounts."""
    out = []
    for line in Path("/proc/self/mountinfo").read_bytes().splitlines():
        fields = line.split()
        separator = fields.index(b"-")
        out.append((decode_mount_field(fields[4]), fields[separator + 1].decode()))
    return out


def _runs(*cmd: str) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def user_namespaces() -> Finding | None:
    """The stage containers live in a user namespace of the build's user: can one be made at all?"""
    if _runs("unshare", "--user", "--map-root-user", "true"):
        return None
    return Finding("userns", "no user namespace can be created here (seccomp, AppArmor or a sysctl forbids it)",
                   "docker: --security-opt seccomp=unconfined (its default profile refuses unshare); Ubuntu hosts: "
                   "sysctl kernel.apparmor_restrict_unprivileged_userns=0 or --security-opt apparmor=unconfined; "
                   "Kubernetes: seccompProfile Unconfined; elsewhere: sysctl user.max_user_namespaces > 0")


def masked_proc() -> Finding | None:
    """A container's runtime mounts a new proc and sysfs; the kernel refuses both while paths of this
    process's /proc or /sys are mounted over (masked), which is what podman, docker and Kubernetes do
    by default.  Tested by doing it, in a throwaway user namespace."""
    proc_ok = _runs("unshare", "--user", "--map-root-user", "--mount", "--pid", "--fork", "--mount-proc", "true")
    # Read-only and the rest as the runtimes mount it: the kernel refuses to lift a flag the visible mount has.
    sys_ok = _runs("unshare", "--user", "--map-root-user", "--mount", "--net",
                   "mount", "-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", "/sys")
    if proc_ok and sys_ok:
        return None
    masked = sorted(point for point, _ in _mountinfo() if point.startswith(("/proc/", "/sys/")))
    what = " and ".join(name for name, ok in (("/proc", proc_ok), ("/sys", sys_ok)) if not ok)
    fix = ("podman: --security-opt unmask=ALL; docker: --security-opt systempaths=unconfined; "
           "Kubernetes: securityContext.procMount: Unmasked (with hostUsers: false)")
    if proc_ok:
        # Unmasked, yet no sysfs: a rootless container in the host's network namespace is given the host's
        # /sys bound read-only, and only a network namespace's owner may mount sysfs.
        fix += ("; a rootless container in the host's network namespace also needs one of its own (podman: "
                "--network slirp4netns:allow_host_loopback=true, which reaches the host's 127.0.0.1 at 10.0.2.2)")
    listed = ", ".join(masked[:8]) + ", ..." * (len(masked) > 8)
    return Finding("masked-proc", f"{what} {'are' if what.count(' and ') else 'is'} masked (mounted over: "
                                  f"{listed or 'nothing visible'}), so the kernel refuses the stage containers' own "
                                  "proc and sysfs", fix)


def setuid_idmap() -> Finding | None:
    """Debian installs newuidmap/newgidmap setuid root; setuid root may only write another process's uid_map
    with CAP_SYS_ADMIN in the bounding set, which an unprivileged container lacks.  File capabilities work."""
    if _has_cap("CapBnd", CAP_SYS_ADMIN):
        return None
    bad = []
    for tool in IDMAP_TOOLS:
        path = Path("/usr/bin") / tool
        if not path.exists():
            return Finding("setuid-idmap", f"{path} is missing", "install uidmap")
        try:
            os.getxattr(path, "security.capability")
        except OSError:
            bad.append(tool)
    if not bad:
        return None
    return Finding("setuid-idmap",
                   f"{' and '.join(bad)} have no file capabilities (Debian makes them setuid root, which cannot write "
                   "uid_map without CAP_SYS_ADMIN)",
                   "in the image: " + " && ".join(f"chmod u-s /usr/bin/{t} && setcap {IDMAP_TOOLS[t]}+ep /usr/bin/{t}"
                                                  for t in bad) + " (image/Containerfile does)")


def _ranges(path: Path, user: str, uid: int) -> list[tuple[int, int]]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[0] in (user, str(uid)) and fields[1].isdigit() and fields[2].isdigit():
            out.append((int(fields[1]), int(fields[2])))
    return out


def _mapped(kind: str) -> list[tuple[int, int]]:
    """(first id, count) of the ids this process's user namespace has, as its parent's ids are seen inside."""
    out = []
    for line in Path(f"/proc/self/{kind}_map").read_text().splitlines():
        inside, _, count = map(int, line.split())
        out.append((inside, count))
    return out


def subordinate_ids() -> Finding | None:
    """Rootless podman maps the user's subordinate ids; they must be enough for a Debian tree and exist in
    the namespace this process runs in (a container's is often only 0-65535)."""
    uid = os.geteuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    for kind in ("uid", "gid"):
        ranges = _ranges(Path(f"/etc/sub{kind}"), user, uid)
        total = sum(count for _, count in ranges)
        if total < NEEDED_SUBIDS:
            return Finding("subids", f"{user} has {total} subordinate {kind}s in /etc/sub{kind}, fewer than the "
                                     f"{NEEDED_SUBIDS} a Debian tree's ids need (nobody is 65534)",
                           f"give {user} a range: usermod --add-sub{kind}s 100000-165535 {user} (in a container of "
                           "65,536 ids: 1-999 and 1001-65535, as image/Containerfile does)")
        mapped = _mapped(kind)
        outside = [(first, count) for first, count in ranges
                   if not any(lo <= first and first + count <= lo + n for lo, n in mapped)]
        if outside:
            first, count = outside[0]
            have = ", ".join(f"{lo}-{lo + n - 1}" for lo, n in mapped)
            return Finding("subids", f"{user}'s subordinate {kind}s {first}-{first + count - 1} lie outside this "
                                     f"user namespace, which has {kind}s {have}",
                           f"use ranges inside it in /etc/sub{kind} (image/Containerfile: 1-999 and 1001-65535)")
    return None


def no_new_privs() -> Finding | None:
    """newuidmap's file capabilities are not granted to a process with no_new_privs set."""
    if _status("NoNewPrivs") != "1":
        return None
    return Finding("no-new-privs", "no_new_privs is set, so newuidmap/newgidmap cannot use their file capabilities",
                   "podman/docker: drop --security-opt no-new-privileges; Kubernetes: "
                   "securityContext.allowPrivilegeEscalation: true")


def bounding_caps() -> Finding | None:
    """File capabilities can only grant what the bounding set still holds."""
    missing = [name for name, cap in (("SETUID", CAP_SETUID), ("SETGID", CAP_SETGID)) if not _has_cap("CapBnd", cap)]
    if not missing:
        return None
    return Finding("bounding-caps", f"CAP_{' and CAP_'.join(missing)} {'are' if len(missing) > 1 else 'is'} not in "
                                    "the bounding set, so newuidmap/newgidmap cannot map the subordinate ids",
                   f"podman/docker: do not --cap-drop {' or '.join(missing)}; Kubernetes: "
                   f"securityContext.capabilities.add: [{', '.join(missing)}] and no drop: [ALL]")


def root_without_admin() -> Finding | None:
    """Root runs podman rootful, which mounts and makes namespaces with CAP_SYS_ADMIN."""
    if _has_cap("CapEff", CAP_SYS_ADMIN):
        return None
    return Finding("root", "running as root without CAP_SYS_ADMIN, so podman cannot run rootful here",
                   "run as uid 1000 (podman/docker --user 1000, Kubernetes runAsUser: 1000): podman then runs rootless")


def storage() -> Finding | None:
    """Stage images live in osbuild-oci's own overlay storage, and every store is overlay too: overlay needs
    a kernel that lets this user mount it (or fuse-overlayfs), and cannot use a directory on overlay."""
    from .localstorage import StageStorage
    try:
        root = str(StageStorage.get().graph_root.resolve())
    except EngineError as err:
        return Finding("storage", str(err), "mount a volume at $XDG_DATA_HOME (the osbuild-oci image's is "
                                            "/var/lib/osbuild-oci/data), or install fuse-overlayfs")
    mounts = [(point, kind) for point, kind in _mountinfo() if root == point or root.startswith(point.rstrip("/") + "/")]
    point, kind = max(mounts, key=lambda m: len(m[0]), default=("/", ""))
    if kind == "overlay":
        return Finding("storage", f"osbuild-oci's storage {root} is on an overlay filesystem ({point}), where "
                                  "overlay cannot mount", f"mount a volume there (podman/docker -v "
                                  f"NAME:{point if point != '/' else root}; Kubernetes: an emptyDir), or set "
                                  "XDG_DATA_HOME to a directory on one (the osbuild-oci image's is /var/lib/osbuild-oci)")
    return None


def checks() -> list[Callable[[], Finding | None]]:
    """The checks for this process, in the order their causes would bite."""
    if os.geteuid() == 0:
        return [root_without_admin, storage]
    return [user_namespaces, masked_proc, setuid_idmap, subordinate_ids, no_new_privs, bounding_caps, storage]


def findings() -> list[Finding]:
    """Every missing privilege; the masked-/proc test needs a user namespace, so it waits for that one."""
    found: list[Finding] = []
    for check in checks():
        if check is masked_proc and any(f.check == "userns" for f in found):
            continue
        finding = check()
        if finding is not None:
            found.append(finding)
    return found


def cause() -> str:
    """The findings, for an error podman gave without its cause (a stage container that did not start)."""
    found = findings()
    if not found:
        return ""
    return "; osbuild-oci doctor finds the cause: " + " | ".join(str(f) for f in found)
