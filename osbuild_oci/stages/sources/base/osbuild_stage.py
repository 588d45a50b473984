"""What every stage and assembler program shares: the stdin contract, paths inside the tree, clear failures.

A stage reads {"tree": PATH, "options": {...}} on stdin (assemblers also get
"output"), changes the tree with the distribution's own tools, and exits
non-zero with one clear line on stderr when it cannot.  A failure of the
stage's own code is not the user's: it keeps its traceback.
"""

import contextlib
import datetime
import email.utils
import glob
import json
import os
import subprocess
import sys
import urllib.parse
from typing import Callable, Iterator, Sequence

DEBOOTSTRAP_HINT = "start the pipeline with org.osbuild.debootstrap"
# As the kernel's MAXSYMLINKS: a loop of links inside the tree must end, not hang the stage.
MAX_SYMLINKS = 40


class StageError(Exception):
    """A failure the stage explains to the user in one line."""


def run(cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a tool, streaming its output; a non-zero exit becomes a StageError naming it, after what the
    tool said on a stderr the caller captured (its reason is the user's to read)."""
    try:
        proc = subprocess.run(list(cmd), **kwargs)
    except FileNotFoundError:
        raise StageError(f"{cmd[0]} is not installed in this stage image") from None
    if proc.returncode != 0:
        if isinstance(proc.stderr, str):
            sys.stderr.write(proc.stderr)
        elif isinstance(proc.stderr, bytes):
            sys.stderr.buffer.write(proc.stderr)
        raise StageError(f"{' '.join(cmd)} exited with status {proc.returncode}")
    return proc


def chroot(tree: str, cmd: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command inside the tree, with a clean environment as on a booted system.

    A tree built rootless has no device nodes (a user namespace cannot make them), so a
    program that writes to /dev/null creates a regular file there; it is removed again,
    so no layer ever holds a /dev/null that is not the device.
    """
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root",
           "DEBIAN_FRONTEND": "noninteractive", **_epoch(), **kwargs.pop("env", {})}
    try:
        return run(["chroot", tree, *cmd], env=env, **kwargs)
    finally:
        null = os.path.join(tree, "dev", "null")
        if os.path.isfile(null) and not os.path.islink(null):
            os.remove(null)


def _epoch() -> dict:
    """SOURCE_DATE_EPOCH as the orchestrator set it, for the tree's own tools (reproducible-builds.org)."""
    return {"SOURCE_DATE_EPOCH": os.environ["SOURCE_DATE_EPOCH"]} if "SOURCE_DATE_EPOCH" in os.environ else {}


# What a package manager run leaves that differs on every build and that no booted system needs from
# the image: logs, ldconfig's and debconf's caches, and seeds and ids each machine must make for itself.
BUILD_RECORDS = ["var/log/dpkg.log", "var/log/apt/history.log", "var/log/apt/term.log", "var/log/apt/eipp.log.xz",
                 "var/log/alternatives.log", "var/cache/ldconfig/aux-cache", "var/cache/debconf/*-old"]
# What each machine must make for itself; packages' maintainer scripts make them up while an image is built.
MACHINE_SECRETS = ["var/lib/dbus/machine-id", "var/lib/systemd/random-seed", "var/lib/systemd/credential.secret",
                   "etc/ssh/ssh_host_*_key", "etc/ssh/ssh_host_*_key.pub"]
# Without host keys, ssh.service makes the missing ones when it first starts (before `sshd -t`).
SSH_KEYGEN_DROPIN = "/etc/systemd/system/ssh.service.d/osbuild-oci-host-keys.conf"
SSH_KEYGEN = """# Written by osbuild-oci: the image has no ssh host keys, each machine makes its own at first start.
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
"""


def _found(tree: str, patterns: list[str]) -> set[str]:
    return {path for pattern in patterns for path in glob.glob(in_tree(tree, pattern))
            if os.path.isfile(path) or os.path.islink(path)}


@contextlib.contextmanager
def forgetting_build(tree: str) -> Iterator[None]:
    """Around a package manager run: afterwards, remove its BUILD_RECORDS, the MACHINE_SECRETS it made,
    and a machine id it made (/etc/machine-id is left empty: systemd's mark of a first boot).

    What an earlier stage put there on purpose (a machine id, host keys) is kept.  When host
    keys were removed, ssh.service gets a drop-in that makes each machine's own.
    """
    machine_id = in_tree(tree, "/etc/machine-id")
    uninitialised = not os.path.isfile(machine_id) or os.path.getsize(machine_id) == 0
    kept = _found(tree, MACHINE_SECRETS)
    yield
    for path in _found(tree, BUILD_RECORDS) | (_found(tree, MACHINE_SECRETS) - kept):
        os.unlink(path)
        if "ssh_host_" in path and not os.path.lexists(in_tree(tree, SSH_KEYGEN_DROPIN)):
            dropin = in_tree(tree, SSH_KEYGEN_DROPIN)
            os.makedirs(os.path.dirname(dropin), exist_ok=True)
            with open(dropin, "w", encoding="utf-8") as f:
                f.write(SSH_KEYGEN)
    if uninitialised and os.path.isfile(machine_id):
        open(machine_id, "w", encoding="utf-8").close()


def epoch() -> int:
    """The build's SOURCE_DATE_EPOCH (the orchestrator always sets it; 0 for a program run by hand)."""
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


def tar_flags() -> list[str]:
    """GNU tar options for an archive that depends only on the files: sorted names, no atime or ctime
    (pax records both, and ctime cannot be set), no process id in the extended header names, and
    no modification time after SOURCE_DATE_EPOCH."""
    return ["--sort=name", "--format=posix", "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
            "--numeric-owner", f"--mtime=@{epoch()}", "--clamp-mtime"]


SNAPSHOT_MIRROR = "http://snapshot.debian.org/archive"


def source_parts(line: str) -> tuple:
    """A one-line apt source as (type, [options], [URI, suite, components...])."""
    words = line.split()
    options = []
    if len(words) > 1 and words[1].startswith("["):
        end = next(i for i, word in enumerate(words) if word.endswith("]"))
        options = " ".join(words[1:end + 1])[1:-1].split()
        words = [words[0], *words[end + 1:]]
    if len(words) < 3:
        raise StageError(f"apt source {line!r} is not 'deb URL SUITE [COMPONENTS]'")
    return words[0], options, words[1:]


def source_line(kind: str, options: list, rest: list) -> str:
    return " ".join([kind, *([f"[{' '.join(options)}]"] if options else []), *rest])


def snapshot_line(line: str, stamp: str) -> str:
    """A one-line apt source with its archive replaced by that archive on snapshot.debian.org at stamp.

    "deb URL/debian bookworm main" becomes "deb [check-valid-until=no]
    http://snapshot.debian.org/archive/debian/STAMP/ bookworm main": the archive's
    name is the URL's last path part, and a snapshot's Release file is past its
    Valid-Until date by design.  As mkosi's Snapshot=, one stamp always gives the same packages.
    """
    kind, options, rest = source_parts(line)
    archive = rest[0].rstrip("/").rsplit("/", 1)[-1] or "debian"
    options = [o for o in options if not o.startswith("check-valid-until=")] + ["check-valid-until=no"]
    return source_line(kind, options, [f"{SNAPSHOT_MIRROR}/{archive}/{stamp}/", *rest[1:]])


# Where the orchestrator takes what a stage reports about its tree (see record_release_date).
META = "/run/osbuild/meta"


def record_release_date(tree: str) -> None:
    """Report the newest Date of the Release files apt fetched into the tree: it becomes the tree
    image's org.osbuild-oci.release-date label (`store list` shows how old a tree's packages are)."""
    dates = []
    for path in glob.glob(in_tree(tree, "/var/lib/apt/lists") + "/*Release"):
        with open(path, encoding="utf-8", errors="replace") as f:
            line = next((line for line in f if line.startswith("Date:")), None)
        if line is not None:
            dates.append(email.utils.parsedate_to_datetime(line[5:].strip()))
    if dates and os.path.isdir(META):
        with open(os.path.join(META, "release-date"), "w", encoding="utf-8") as f:
            f.write(max(dates).astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))


# Where the orchestrator mounts the secrets an assembler's options name (build --secret NAME=FILE).
SECRETS = "/run/osbuild/secrets"


def secret(reference: dict) -> str:
    """The file of the secret an option names as {"secret": NAME}: mounted read-only for this run alone."""
    path = os.path.join(SECRETS, reference["secret"])
    if not os.path.isfile(path):
        raise StageError(f"secret {reference['secret']!r} is not mounted; build with --secret "
                         f"{reference['secret']}=FILE")
    return path


# Where the orchestrator mounts, read-only, the inputs a stage's options name (build --context, sources, images).
INPUTS = "/run/osbuild/inputs"


def input_path(reference: dict) -> str:
    """Where the input an option names as {"from": "context"|"source"|"image", "source": ..., "image": ...} is:
    a file or folder, read-only, holding exactly what the stage id names (the orchestrator checked the path)."""
    source = "/".join(part for part in reference["source"].split("/") if part not in ("", "."))
    if reference["from"] == "source":
        path = os.path.join(INPUTS, "sources", "sha256", source.removeprefix("sha256:"))
    elif reference["from"] == "image":
        path = os.path.join(INPUTS, "images", urllib.parse.quote(reference["image"], safe=""), source)
    else:
        path = os.path.join(INPUTS, "context", source)
    if not os.path.lexists(path):
        raise StageError(f"input {reference['from']} {reference['source']} is not mounted at {path}; it is given "
                         "only to the stage whose options name it")
    return path


def in_tree(tree: str, path: str) -> str:
    """Where `path` is for a process chrooted into tree, as a path the stage can write to.

    Every symlink on the way is followed as the chroot would follow it (an
    absolute target starts again at the tree's root) and `..` never climbs
    above the tree's root, so a symlink in the tree, whatever it points to,
    cannot send a write outside the tree.  Components that do not exist yet are
    kept as given; nothing is created.  (osbuild's in_tree only checks that a
    path stays below the tree; resolving inside it is what a chroot does and
    what the tree's own programs will see.)
    """
    resolved: list[str] = []
    pending = list(reversed(path.split("/")))
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = os.path.join(tree, *resolved, part)
        if not os.path.islink(candidate):
            resolved.append(part)
            continue
        hops += 1
        if hops > MAX_SYMLINKS:
            raise StageError(f"{path}: too many levels of symbolic links in the tree")
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        pending.extend(reversed(target.split("/")))
    return os.path.join(tree, *resolved)


def require(tree: str, path: str, hint: str = DEBOOTSTRAP_HINT) -> str:
    """The place of `path` in the tree (see in_tree); a StageError saying how to get it when it is missing."""
    place = in_tree(tree, path)
    if not os.path.lexists(place):
        raise StageError(f"the tree has no {path}; {hint}")
    return place


def note(message: str) -> None:
    """A line on stderr that names the stage: a deprecation or a warning the user should see."""
    print(f"{_name()}: {message}", file=sys.stderr)


def _read_document() -> list:
    """The body's arguments from stdin; a document that is not ours exits 2 (the caller's mistake)."""
    try:
        args = json.load(sys.stdin)
        if not isinstance(args, dict) or not isinstance(args.get("tree"), str):
            raise ValueError('expected an object with "tree" (a path) and "options"')
        options = args.get("options") or {}
        if not isinstance(options, dict):
            raise ValueError('"options" must be an object')
    except ValueError as err:
        note(f"bad input document on stdin: {err}")
        sys.exit(2)
    params = [args["tree"], options]
    if "output" in args:
        params.append(args["output"])
    return params


def _name() -> str:
    return os.environ.get("OSBUILD_STAGE", os.path.basename(sys.argv[0]))


def main(body: Callable[..., None]) -> None:
    """Read the stage's JSON document from stdin and call body(tree, options[, output]).

    Exit 2: stdin is not a valid document.  Exit 1 with one line: the stage
    explained why it cannot go on (StageError) or the system refused the work
    (OSError).  Anything else is a bug of the stage and keeps its traceback.
    """
    params = _read_document()
    try:
        body(*params)
    except (StageError, OSError) as err:
        note(str(err))
        sys.exit(1)
