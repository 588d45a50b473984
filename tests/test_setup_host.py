"""scripts/setup-host as a fresh machine sees it, and every shell script of the checkout linted.

CI runs on a machine that setup-host prepared long ago, so its first-run branches never run
there; these tests run them with /bin/sh (dash on Debian) against a fresh temporary root
(SETUP_HOST_ROOT), with the package step only printing and the slow steps skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from helpers import User

# Each test prepares a fresh host (a temporary root, a user of the real host): set-up is slow-tier work.
pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
SETUP_HOST = REPO / "scripts" / "setup-host"
CONF = "etc/containers/containers.conf.d/50-osbuild-oci.conf"
TUN_RULE = "etc/udev/rules.d/70-osbuild-oci-tun.rules"


def setup_host(root: Path | str, *args: str, packages: str = "dash", limits: tuple[str, ...] = (),
               **env: str) -> subprocess.CompletedProcess:
    """setup-host under dash on the fresh host `root`; apt only prints, no .venv or stage images, and no
    binfmt_misc (the kernel's registry is the real host's, whatever the root: the binfmt tests below); under
    `prlimit LIMITS` when given."""
    prefix = ["prlimit", *limits] if limits else []
    return subprocess.run([*prefix, "/bin/sh", str(SETUP_HOST), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SETUP_HOST_ROOT": str(root), "SETUP_HOST_PACKAGES": packages,
                               "SETUP_HOST_INSTALL": "print", "SETUP_HOST_SKIP": "binfmt venv stages", **env})


@pytest.fixture
def fresh_root(tmp_path) -> Path:
    """A host nothing has touched: no podman configuration, /dev/net/tun 0600 (a stand-in file)."""
    root = tmp_path / "root"
    (root / "dev" / "net").mkdir(parents=True)
    (root / "dev" / "net" / "tun").touch(mode=0o600)
    return root


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under root with its content, mode and modification time."""
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_fresh_host_gets_podman_config_and_tun(fresh_root):
    """The limits written are the host's own hard limits, capped where runc cannot set more (nproc 16384)."""
    proc = setup_host(fresh_root, limits=("--nofile=3000:3000", "--nproc=20000:20000"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == proc.stderr == ""
    assert (fresh_root / CONF).read_text() == (
        "[containers]\n"
        'default_ulimits = ["nofile=3000:3000", "nproc=16384:16384"]\n\n'
        "[engine]\n"
        'runtime = "runc"\n')
    assert (fresh_root / TUN_RULE).read_text() == 'KERNEL=="tun", MODE="0666"\n'
    assert (fresh_root / "dev/net/tun").stat().st_mode & 0o777 == 0o666


def test_second_run_changes_nothing_and_says_nothing(fresh_root):
    assert setup_host(fresh_root).returncode == 0
    before = snapshot(fresh_root)
    start = time.monotonic()
    proc = setup_host(fresh_root)
    assert time.monotonic() - start < 3
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert snapshot(fresh_root) == before


def test_existing_config_is_left_alone(fresh_root):
    conf = fresh_root / CONF
    conf.parent.mkdir(parents=True)
    conf.write_text("# the admin's own settings\n")
    os.utime(conf, ns=(10**18, 10**18))
    proc = setup_host(fresh_root)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert conf.read_text() == "# the admin's own settings\n"
    assert conf.stat().st_mtime_ns == 10**18


def test_missing_packages_are_named_and_installed_without_recommends(fresh_root):
    proc = setup_host(fresh_root, packages="dash osbuild-oci-no-such-package\n  coreutils osbuild-oci-nor-this")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ("setup-host: missing packages; would run: apt-get install -y --no-install-recommends"
                           " osbuild-oci-no-such-package osbuild-oci-nor-this\n")


BINFMT = "proc/sys/fs/binfmt_misc"
AARCH64_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")


@pytest.fixture
def binfmt_root(fresh_root) -> Path:
    """A fresh host whose binfmt_misc is mounted (its register a stand-in file: writing to the real one would
    change every container of this machine), with nothing registered."""
    (fresh_root / BINFMT).mkdir(parents=True)
    (fresh_root / BINFMT / "register").touch()
    return fresh_root


@pytest.mark.skipif(not AARCH64_CONF.exists(), reason="qemu-user-static is not installed: run scripts/setup-host")
@pytest.mark.parametrize("handler, written", [
    (None, {"register": AARCH64_CONF}),
    ("enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: OC\noffset 0\n", {"qemu-aarch64": "-1\n",
                                                                           "register": AARCH64_CONF}),
    ("disabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: POF\noffset 0\n", {"qemu-aarch64": "-1\n",
                                                                                    "register": AARCH64_CONF}),
    ("enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: POF\noffset 0\n", {}),
], ids=["missing", "without-F", "disabled", "ready"])
def test_qemu_aarch64_handler_is_registered_with_fix_binary(binfmt_root, handler, written):
    """qemu-user-static's own line (flags OPF) goes to register; a handler without F, or disabled, is removed
    first (-1), one with F is left alone."""
    if handler is not None:
        (binfmt_root / BINFMT / "qemu-aarch64").write_text(handler)
    before = snapshot(binfmt_root / BINFMT)
    proc = setup_host(binfmt_root, SETUP_HOST_SKIP="venv stages")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    after = snapshot(binfmt_root / BINFMT)
    changed = {name: after[name][0].decode() for name in after if after[name] != before.get(name)}
    assert set(changed) == set(written)
    if "register" in written:
        line = [line for line in AARCH64_CONF.read_text().splitlines() if line.startswith(":")]
        assert changed["register"] == f"{line[0]}\n" and line[0].endswith("F")
    if "qemu-aarch64" in written:
        assert changed["qemu-aarch64"] == "-1\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts binfmt_misc, in a mount namespace of its own")
def test_binfmt_misc_is_mounted_where_it_is_not(fresh_root):
    """As on these VMs: binfmt_misc in the kernel, nothing mounted.  setup-host mounts the real one (in a mount
    namespace of the test's own, at the fresh root's /proc/sys/fs/binfmt_misc), and finds qemu-aarch64 there
    as this host's setup-host registered it."""
    (fresh_root / BINFMT).mkdir(parents=True)
    env = {**os.environ, "SETUP_HOST_ROOT": str(fresh_root), "SETUP_HOST_PACKAGES": "dash",
           "SETUP_HOST_INSTALL": "print", "SETUP_HOST_SKIP": "venv stages"}
    proc = subprocess.run(["unshare", "--mount", "sh", "-c", '/bin/sh "$1" && grep " $2 " /proc/self/mounts && '
                           'cat "$2/qemu-aarch64"', "sh", str(SETUP_HOST), str(fresh_root / BINFMT)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    mount, *handler = proc.stdout.splitlines()
    assert mount.split()[:3] == ["binfmt_misc", str(fresh_root / BINFMT), "binfmt_misc"]
    assert "enabled" in handler and any(line.startswith("flags: ") and "F" in line for line in handler)
    assert not list((fresh_root / BINFMT).iterdir()), "the mount ended with the test's namespace"


@pytest.mark.parametrize("args, env, error", [
    (["--user"], {}, "usage: scripts/setup-host [--user NAME]"),
    (["--bogus"], {}, "usage: scripts/setup-host [--user NAME]"),
    pytest.param(["--user", "osbuild-oci-nobody"], {}, "no user 'osbuild-oci-nobody'; create it first",
                 marks=pytest.mark.skipif(os.geteuid() != 0, reason="--user is for root")),
    ([], {"SETUP_HOST_INSTALL": "yes"}, "SETUP_HOST_INSTALL is 'apt' or 'print', not 'yes'"),
])
def test_bad_invocation_is_one_line(fresh_root, args, env, error):
    proc = setup_host(fresh_root, *args, **env)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"setup-host: {error}") and proc.stderr.count("\n") == 1
    assert not (fresh_root / "etc").exists()


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="creates a user")


@pytest.fixture
def make_user():
    """make_user() -> a user that has never used podman, as useradd --system makes it: no subordinate ids."""
    users = []

    def _make() -> User:
        users.append(User(f"osbuild-oci-{os.getpid()}-{len(users)}"))
        return users[-1]

    yield _make
    for user in users:
        user.remove()


def subid_range(kind: str, name: str) -> range:
    """The user's one range of /etc/subuid or /etc/subgid."""
    entries = [line.split(":") for line in Path(f"/etc/sub{kind}").read_text().splitlines()]
    mine = [range(int(first), int(first) + int(count)) for user, first, count in entries if user == name]
    assert len(mine) == 1, entries
    return mine[0]


@needs_root
def test_users_get_their_own_subordinate_ids_and_overlay_storage(make_user):
    first, second = make_user(), make_user()
    for user in first, second:
        proc = setup_host("", "--user", user.name)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    for user in first, second:
        assert subid_range("uid", user.name) == subid_range("gid", user.name)
        assert len(subid_range("uid", user.name)) == 65536
    assert not set(subid_range("uid", first.name)) & set(subid_range("uid", second.name))
    conf = first.home / ".config" / "containers" / "storage.conf"
    assert conf.read_text().startswith(f'[storage]\ndriver = "overlay"\ngraphroot = "{first.home}/.local/share/'
                                       f'containers/storage"\nrunroot = "/tmp/podman-run-{first.uid}/containers"\n')
    assert conf.stat().st_uid == conf.parent.stat().st_uid == conf.parent.parent.stat().st_uid == first.uid

    before = [conf.read_bytes(), Path("/etc/subuid").read_bytes(), Path("/etc/subgid").read_bytes()]
    start = time.monotonic()
    proc = setup_host("", "--user", first.name)
    assert time.monotonic() - start < 3
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert [conf.read_bytes(), Path("/etc/subuid").read_bytes(), Path("/etc/subgid").read_bytes()] == before


def bash_image() -> bytes:
    """The smallest image with a shell that can open TCP connections: bash and its libraries."""
    libs = subprocess.run(["ldd", "/bin/bash"], capture_output=True, text=True, check=True).stdout
    paths = ["/bin/bash", *(word for line in libs.splitlines() for word in line.split() if word.startswith("/"))]
    with tempfile.TemporaryFile() as f:
        with tarfile.open(fileobj=f, mode="w") as tar:
            for path in paths:
                tar.add(os.path.realpath(path), arcname=path.lstrip("/"))
        f.seek(0)
        return f.read()


@needs_root
def test_prepared_user_runs_rootless_containers_on_overlay(make_user):
    user = make_user()
    assert setup_host("", "--user", user.name).returncode == 0
    info = user.run("podman", "info", "--format", "json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["store"]["graphDriverName"] == "overlay"
    imported = user.run("podman", "import", "-", "localhost/bash", stdin=bash_image())
    assert imported.returncode == 0, imported.stderr
    ran = user.run("podman", "run", "--name", "answer", "--network=none", "localhost/bash", "/bin/bash", "-c",
                   "echo $((6 * 7)) > /answer")
    assert ran.returncode == 0, ran.stderr
    # What osbuild-oci does after every stage; without a session it needs runroot in storage.conf.
    committed = user.run("podman", "commit", "-q", "answer", "localhost/answer")
    assert committed.returncode == 0, committed.stderr
    ran = user.run("podman", "run", "--rm", "--network=none", "localhost/answer", "/bin/bash", "-c", "echo $(</answer)")
    assert (ran.returncode, ran.stdout) == (0, b"42\n"), ran.stderr

    # A stage with network gets a namespace of its own: the host's loopback services stay out of reach.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        probe = " ".join(f"(exec 3<>/dev/tcp/{host}/{port}) 2>/dev/null && echo reached {host};"
                         for host in ("127.0.0.1", "10.0.2.2"))
        ran = user.run("podman", "run", "--rm", "--network=slirp4netns", "localhost/bash", "/bin/bash", "-c",
                       probe + " echo done")
        assert (ran.returncode, ran.stdout) == (0, b"done\n"), ran.stderr
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()


@needs_root
def test_vfs_storage_in_use_is_not_switched_but_explained(make_user):
    user = make_user()
    assert user.run("podman", "--storage-driver", "vfs", "info").returncode == 0
    proc = setup_host("", "--user", user.name)
    assert proc.returncode == 0
    assert f"run 'podman system reset' as {user.name}" in proc.stderr
    assert not (user.home / ".config" / "containers" / "storage.conf").exists()


@needs_root
def test_ordinary_user_needs_root_only_for_what_is_missing(make_user, fresh_root):
    """Without sudo (a PATH of every program of the host but sudo), what needs root is named, not attempted."""
    user = make_user()
    assert setup_host("", "--user", user.name).returncode == 0
    checkout = Path(tempfile.mkdtemp(prefix="setup-host-"))
    try:
        (checkout / "scripts").mkdir()
        shutil.copy(SETUP_HOST, checkout / "scripts")
        no_sudo = checkout / "bin"
        no_sudo.mkdir()
        for program in {p.name: p for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin") for p in Path(d).iterdir()}.values():
            if program.name != "sudo" and not (no_sudo / program.name).exists():
                (no_sudo / program.name).symlink_to(program)
        subprocess.run(["chmod", "-R", "a+rX", str(checkout)], check=True)
        env = ["SETUP_HOST_PACKAGES=dash", "SETUP_HOST_INSTALL=print", "SETUP_HOST_SKIP=venv stages", f"PATH={no_sudo}"]
        ready = user.run("env", *env, "/bin/sh", str(checkout / "scripts" / "setup-host"))
        assert (ready.returncode, ready.stdout, ready.stderr) == (0, b"", b"")
        fresh = user.run("env", *env, f"SETUP_HOST_ROOT={fresh_root}", "/bin/sh", str(checkout / "scripts" / "setup-host"))
        assert (fresh.returncode, fresh.stderr.decode()) == (1, "setup-host: 'mkdir' needs root and sudo is not installed: "
                                                                f"as root, run scripts/setup-host --user {user.name}\n")
    finally:
        shutil.rmtree(checkout)
