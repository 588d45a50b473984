"""Fixtures that drive the real CLI against real podman, the way a user does.

Tests call `osbuild-oci` as a subprocess and read its `--json` events; trees are
checked with plain `podman` pointed at the store through `osbuild-oci store
podman-args`, as a user would.  After every test, each store it used must hold
no container, no container mount and no podman service: a build that leaks one fails the test.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import (CLI, FLAGSHIP, REPO, Result, make_testing_stage, podman, remove_default_images, run_build,
                     stage_ref, start_registry, stop, touched_stores, unique_name)


def _mounts() -> list[tuple[str, str]]:
    """(mount point, type): the kernel escapes only space, tab, newline and backslash, as octal."""
    with open("/proc/self/mounts", "rb") as mounts:
        return [(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), fields[1]).decode(errors="replace"),
                 fields[2].decode()) for fields in (line.split() for line in mounts)]


def _store_mounts(store: Path) -> list[tuple[str, str]]:
    """Mounts under a store other than the one containers-storage keeps on its own overlay directory."""
    prefix = str(store) + "/"
    own = str(store / "storage" / "overlay")
    return [(point, kind) for point, kind in _mounts() if point.startswith(prefix) and point != own]


def _services(store: Path) -> list[str]:
    """Processes still serving the store: a podman service osbuild-oci did not stop."""
    needle = f"--root\0{store.resolve()}/storage\0".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
        except OSError:
            continue
        if needle in cmdline and b"\0service\0" in cmdline:
            found.append(proc.name + ": " + cmdline.replace(b"\0", b" ").decode(errors="replace")[:200])
    return found


def pytest_collection_modifyitems(items) -> None:
    """Whatever needs the stage images runs containers: slow, whether or not its module says so."""
    for item in items:
        if "stage_images" in item.fixturenames:
            item.add_marker(pytest.mark.slow)


_passed = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember whether the test itself passed, for nothing_left_behind."""
    report = yield
    if report.when == "call":
        item.stash[_passed] = report.passed
    return report


def _unmount_under(base: str) -> None:
    """Innermost first, so a store's own overlay bind mount goes after whatever a failure leaked inside it."""
    for point, _ in sorted(_mounts(), key=lambda m: len(m[0]), reverse=True):
        if point.startswith(base):
            subprocess.run(["umount", point], capture_output=True)


@pytest.fixture(autouse=True)
def nothing_left_behind(request):
    """Every store the test (or a fixture it set up) used: no container, mount or service afterwards.

    Then a passed test's own temporary directory goes, stores, disks and all: a whole run keeps tens of
    gigabytes otherwise, and CI shares the disk with whatever ran on the machine before it."""
    yield
    stores = sorted(s for s in touched_stores if (s / "storage").is_dir())
    touched_stores.clear()
    for store in stores:
        assert podman(store, "ps", "--all", "--quiet").stdout.split() == [], f"containers left in {store}"
        assert _store_mounts(store) == [], f"mounts left under {store}"
        assert _services(store) == [], f"podman service left running for {store}"
    own = request.node.funcargs.get("tmp_path")
    if own is not None and request.node.stash.get(_passed, False):
        _unmount_under(str(own.resolve()) + "/")
        shutil.rmtree(own, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def release_store_mounts(tmp_path_factory):
    """containers-storage keeps each store's overlay directory bind-mounted for good; release it, and
    whatever a failed test leaked (which nothing_left_behind reported), so the next run can remove the stores."""
    yield
    _unmount_under(str(tmp_path_factory.getbasetemp().resolve()) + "/")


@pytest.fixture(scope="session")
def stage_images() -> None:
    """Build (or confirm up to date) every stage and assembler image of this repo, once."""
    proc = subprocess.run([*CLI, "stages", "build"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory) -> Path:
    """One store for tests that do not depend on what else is in it; saves rebuilding trees."""
    return tmp_path_factory.mktemp("shared") / "store"


@pytest.fixture(scope="session")
def flagship(shared_store, stage_images, tmp_path_factory) -> tuple[Result, Path]:
    """pipelines/debian-bookworm-qcow2.json built once per session in the shared store: its result and qcow2."""
    pipeline = json.loads(FLAGSHIP.read_text())
    output = tmp_path_factory.mktemp("flagship") / "out"
    result = run_build(pipeline, shared_store, output)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, output / pipeline["assembler"]["options"]["filename"]


@pytest.fixture
def build(tmp_path, shared_store, stage_images):
    """build(pipeline_dict_or_path, store=None, output=None, *extra, env=None) -> Result."""
    counter = iter(range(1000))

    def _build(pipeline, store: Path | None = None, output: Path | None = None, *extra: str,
               env: dict | None = None) -> Result:
        return run_build(pipeline, store or shared_store, output or tmp_path / f"out-{next(counter)}", *extra, env=env)

    return _build


@pytest.fixture
def new_stage_names():
    """new_stage_names() -> a fresh stage name; every image built under such a name is removed afterwards."""
    names: list[str] = []

    def _new(prefix: str = "test.stage") -> str:
        names.append(unique_name(prefix))
        return names[-1]

    yield _new
    remove_default_images(*map(stage_ref, reversed(names)))


@pytest.fixture(scope="module")
def testing_stage(tmp_path_factory, stage_images) -> str:
    """A testing stage (prints, sleeps, fails or writes /version as asked) nobody rebuilds; its name."""
    name = unique_name("test.testing")
    make_testing_stage(tmp_path_factory.mktemp("testing-source"), name, "one")
    yield name
    remove_default_images(stage_ref(name))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A plain-HTTP registry on 127.0.0.1, yielding (address, its data directory)."""
    root = tmp_path_factory.mktemp("registry")
    proc, address = start_registry(root)
    yield address, root / "data"
    stop(proc)


# -- the unprivileged user the rootless scenarios run as (test_rootless, test_disks) --------------

# Another name lets two checkouts on one machine run their rootless tests side by side.
USER = os.environ.get("OSBUILD_OCI_TEST_USER", "osbuild-oci-test")


@dataclass
class Rootless:
    """An unprivileged user with a checkout of its own, prepared by scripts/setup-host."""

    name: str
    home: Path

    @property
    def src(self) -> Path:
        return self.home / "src"

    def argv(self, *cmd: str) -> list[str]:
        """CMD as the user runs it: through runuser, with a login's environment and the checkout's .venv."""
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name, "LANG": "C.UTF-8",
               "PATH": f"{self.src}/.venv/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
        return ["runuser", "-u", self.name, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *map(str, cmd)]

    def run(self, *cmd: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv(*cmd), capture_output=True, text=True, cwd=self.src, timeout=timeout)
        if check:
            assert proc.returncode == 0, f"{' '.join(map(str, cmd))} as {self.name}: {proc.stderr[-3000:]!r}"
        return proc

    def build(self, pipeline: Path | str, store: Path, *extra: str, output: Path | None = None) -> dict:
        """`osbuild-oci build --json` as the user; the events and the process."""
        args = ["osbuild-oci", "build", pipeline, "--store", store, "--json", *extra]
        if output is not None:
            args += ["-o", output]
        proc = self.run(*args, check=False)
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        return {"proc": proc, "events": events,
                "ran": [e["stage"] for e in events if e["event"] == "stage-done" and not e["cached"]],
                "tree": next((e["tree"] for e in events if e["event"] == "build-done"), None)}

    def remove(self, path: Path) -> None:
        """Remove what the user made, files of its subordinate ids included."""
        subprocess.run(["sh", "-c", f'grep -o " {path}/[^ ]*" /proc/self/mounts | xargs -r -n1 umount -l'],
                       check=False)
        shutil.rmtree(path, ignore_errors=True)

    def podman_args(self, store: Path) -> list[str]:
        """The flags `osbuild-oci store podman-args` gives the user for a store."""
        return shlex.split(self.run("osbuild-oci", "store", "podman-args", "--store", store).stdout)

    def podman(self, store: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("podman", *self.podman_args(store), *args, check=check)


@pytest.fixture(scope="session")
def rootless(tmp_path_factory) -> Rootless:
    """The user, its subordinate ids and overlay storage, its checkout, .venv and stage images."""
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
    home = Path(pwd.getpwnam(USER).pw_dir)
    prepared = subprocess.run(["sh", "scripts/setup-host", "--user", USER], cwd=REPO, capture_output=True, text=True)
    assert prepared.returncode == 0, prepared.stderr
    user = Rootless(USER, home)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.split(b"\0")
    shutil.rmtree(user.src, ignore_errors=True)
    for name in filter(None, files):
        source, target = REPO / name.decode(), user.src / name.decode()
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(user.src)], check=True)
    setup = user.run("sh", "scripts/setup-host", timeout=3000)
    assert "Traceback" not in setup.stderr
    info = json.loads(user.run("podman", "info", "--format", "json").stdout)
    assert info["host"]["security"]["rootless"] is True
    assert info["store"]["graphDriverName"] == "overlay", "rootless storage must not be vfs"
    return user
