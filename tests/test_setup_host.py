"""scripts/setup-host as a fresh machine sees it, and every shell script of the checkout linted.

CI runs on a machine that setup-host prepared long ago, so its first-run branches never run
there; these tests run them with /bin/sh (dash on Debian) against a fresh temporary root
(SETUP_HOST_ROOT), with the package step only printing and the slow steps skipped.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SETUP_HOST = REPO / "scripts" / "setup-host"
CONF = "etc/containers/containers.conf.d/50-osbuild-oci.conf"
TUN_RULE = "etc/udev/rules.d/70-osbuild-oci-tun.rules"
SHELLS = ("sh", "bash", "dash")


def is_shell_script(path: Path) -> bool:
    """Whether the #! line names a shell, directly or through env."""
    with path.open("rb") as f:
        first = f.readline()
    words = first[2:].decode(errors="replace").split() if first.startswith(b"#!") else []
    if words[:1] == ["/usr/bin/env"]:
        words = words[1:]
    return bool(words) and Path(words[0]).name in SHELLS


def shell_scripts() -> list[Path]:
    """Every file of the checkout (tracked or new, not ignored) that is a shell script."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\0")
    return [REPO / name for name in names if name and (REPO / name).is_file() and is_shell_script(REPO / name)]


def test_shell_scripts_pass_shellcheck():
    scripts = shell_scripts()
    assert SETUP_HOST in scripts and REPO / ".ci" / "run" in scripts
    proc = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def setup_host(root: Path, *args: str, packages: str = "dash", **env: str) -> subprocess.CompletedProcess:
    """setup-host under dash on the fresh host `root`; apt only prints, no .venv or stage images."""
    return subprocess.run(["/bin/sh", str(SETUP_HOST), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SETUP_HOST_ROOT": str(root), "SETUP_HOST_PACKAGES": packages,
                               "SETUP_HOST_INSTALL": "print", "SETUP_HOST_SKIP": "venv stages", **env})


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


def expected_limit(rlimit: int, cap: int) -> int:
    hard = resource.getrlimit(rlimit)[1]
    return cap if hard == resource.RLIM_INFINITY else min(hard, cap)


def test_fresh_host_gets_podman_config_and_tun(fresh_root):
    proc = setup_host(fresh_root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == proc.stderr == ""
    nofile = expected_limit(resource.RLIMIT_NOFILE, 65536)
    nproc = expected_limit(resource.RLIMIT_NPROC, 16384)
    assert (fresh_root / CONF).read_text() == (
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n\n'
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
