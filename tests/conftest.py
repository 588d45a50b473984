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
import shutil
import subprocess
from pathlib import Path

import fcntl
from contextlib import contextmanager

import pytest

from helpers import (CLI, FLAGSHIP, REPO, TOOLS_STORE, Result, Rootless, make_testing_stage, podman,
                     remove_default_images, run_build, stage_ref, start_registry, stop, touched_rootless, touched_stores,
                     unique_name)


def _mounts() -> list[tuple[str, str]]:
    """(mount point, type): the kernel escapes only space, tab, newline and backslash, as octal."""
    with open("/proc/self/mounts", "rb") as mounts:
        return [(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), fields[1]).decode(errors="replace"),
                 fields[2].decode()) for fields in (line.split() for line in mounts)]


def _store_mounts(store: Path) -> list[tuple[str, str]]:
    """Mounts under a store other than the bind mount of its own overlay directory, which plain podman without
    osbuild-oci's flags still makes (record 042)."""
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


# Session fixtures too costly to make twice: under pytest-xdist (scripts/test), every test needing one runs
# on the same worker.  Anything else stays with its module, whose module-scoped fixtures are built once.  The
# test user is made once per run for every worker (one_worker_at_a_time), so its tests spread over them.
_SHARED_ONCE = ("flagship",)
# The groups that take longest, longest first (from --durations): scripts/test runs them before the rest, so no
# worker starts a long group when the others are about done.  Every other group keeps its collection order.
_LONGEST_FIRST = ("flagship", "test_disks", "test_deep", "test_rootless", "test_boot_arm64", "test_ci_containers",
                  "test_iso", "test_debian_stages", "test_boot", "test_faults", "test_registry")


def _module_fixtures(item) -> list[str]:
    """The module-scoped fixtures a test needs, directly or through other fixtures."""
    return [name for name in item.fixturenames
            if any(d.scope == "module" for d in item._fixtureinfo.name2fixturedefs.get(name, ()))]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items) -> None:
    """Whatever needs the stage images runs containers: slow, whether or not its module says so.  Each test
    gets its xdist group (`--dist loadgroup`): the first of _SHARED_ONCE it needs, or else its module; the
    longest groups come first.  First among the hooks: xdist reads the groups in its own, and a group marked after
    it is ignored (pytest-randomly and xdist's reordering by test count would undo the order: scripts/test turns
    both off)."""
    groups = {}
    for item in items:
        if "stage_images" in item.fixturenames:
            item.add_marker(pytest.mark.slow)
        groups[item] = next((name for name in _SHARED_ONCE if name in item.fixturenames), item.module.__name__)
    # A module fixture a shared group's test needs is made on that group's worker; the module's other tests that
    # need it follow it there, or a second worker makes it again (test_reproducible's three cold builds did).
    needs = {item: _module_fixtures(item) for item in items}
    followed = {(item.module, name): groups[item] for item in items if groups[item] in _SHARED_ONCE
                for name in needs[item]}
    for item in items:
        groups[item] = next((followed[item.module, name] for name in needs[item]
                             if (item.module, name) in followed), groups[item])
        item.add_marker(pytest.mark.xdist_group(groups[item]))
    rank = {name: index for index, name in enumerate(_LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(groups[item], len(rank)))


def pytest_collection_finish(session) -> None:
    """A worker whose tests lost their groups would build every shared fixture again (three flagships, three
    times the disk): pytest 9.2 did that to xdist 3.8 without a word.  Refuse to run rather than run that way."""
    if session.config.getoption("dist", None) == "loadgroup" and any("@" not in item.nodeid for item in session.items):
        raise pytest.UsageError("--dist loadgroup did not group the tests (is pytest newer than pyproject.toml "
                                "allows?); run scripts/setup-host to install the pinned versions")


@contextmanager
def one_worker_at_a_time(tmp_path_factory, name: str):
    """Held while a fixture changes what every worker shares (root's stage images, the test user's set-up):
    the other workers wait, then find it done.  The lock lives in the run's base directory, above the workers';
    yields the path of a file that marks the work done for this run, for work no second worker may redo."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield root / f"{name}.done"


def pytest_sessionfinish(session, exitstatus) -> None:
    """On CI (CI=true) a skipped test fails the run: a tool missing on the machine is a failure, not a green run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") == "true" and skipped and exitstatus == 0:
        reporter.write_line(f"CI=true: {len(skipped)} test(s) skipped; on CI every test must run", red=True)
        session.exitstatus = 1


_passed = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember whether the test itself passed, for nothing_left_behind."""
    report = yield
    if report.when == "call":
        item.stash[_passed] = report.passed
    return report


def _unmount_under(base: str) -> None:
    """Innermost first, so a store's own overlay bind mount (plain podman's, record 042) goes after whatever a
    failure leaked inside it."""
    for point, _ in sorted(_mounts(), key=lambda m: len(m[0]), reverse=True):
        if point.startswith(base):
            subprocess.run(["umount", point], capture_output=True)


@pytest.fixture(autouse=True)
def nothing_left_behind(request):
    """Every store the test (or a fixture it set up) used: no container, mount or service afterwards.

    Then a passed test's own temporary directory goes, stores, disks and all: a whole run keeps tens of
    gigabytes otherwise, and CI shares the disk with whatever ran on the machine before it.  A test that failed,
    or left something behind, keeps its directory for a person to read."""
    yield
    own = request.node.funcargs.get("tmp_path")
    if own is not None:
        _kept_for_reading.add(own.resolve())
    stores = sorted(s for s in touched_stores if (s / "storage").is_dir())
    touched_stores.clear()
    for store in stores:
        assert podman(store, "ps", "--all", "--quiet").stdout.split() == [], f"containers left in {store}"
        assert _store_mounts(store) == [], f"mounts left under {store}"
        assert _services(store) == [], f"podman service left running for {store}"
    # A rootless store's mounts live in its user's namespace: its containers and service are asked instead.
    rootless_stores = sorted(touched_rootless)
    touched_rootless.clear()
    for name, home, path in rootless_stores:
        user, store = Rootless(name, Path(home)), Path(path)
        if (store / "storage").is_dir():
            assert user.podman(store, "ps", "--all", "--quiet").stdout.split() == [], f"containers left in {store}"
            assert _services(store) == [], f"podman service left running for {store}"
    if own is not None and request.node.stash.get(_passed, False):
        _kept_for_reading.discard(own.resolve())
        _unmount_under(str(own.resolve()) + "/")
        shutil.rmtree(own, ignore_errors=True)


# The directories of tests that failed: what a run keeps of itself for a person to read.
_kept_for_reading: set[Path] = set()


@pytest.fixture(scope="session", autouse=True)
def tools_store(tmp_path_factory) -> None:
    """Where helpers.tool_podman runs the tests' own containers, in this worker's temporary directory."""
    TOOLS_STORE[:] = [tmp_path_factory.mktemp("tools") / "store"]


@pytest.fixture(scope="session", autouse=True)
def release_store_mounts(tmp_path_factory):
    """Release what a failed test leaked (which nothing_left_behind reported), and a store folder's bind mount
    that plain podman left (record 042).  Then only the failed tests' own
    directories stay: the session's shared stores, builds and disks are tens of gigabytes, and CI's disk is
    the machine's."""
    yield
    base = tmp_path_factory.getbasetemp().resolve()
    _unmount_under(str(base) + "/")
    for entry in base.iterdir():
        if entry.is_dir() and entry not in _kept_for_reading:
            shutil.rmtree(entry, ignore_errors=True)


# The suite's unprivileged user; another name lets two checkouts on one machine run their rootless tests side by side.
USER = os.environ.get("OSBUILD_OCI_TEST_USER", "osbuild-oci-test")


@pytest.fixture(scope="session")
def test_user(tmp_path_factory) -> str:
    """The unprivileged user, with subordinate ids and overlay storage from scripts/setup-host --user; its name."""
    with one_worker_at_a_time(tmp_path_factory, "test-user"):
        if subprocess.run(["id", USER], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
        prepared = subprocess.run(["sh", "scripts/setup-host", "--user", USER], cwd=REPO, capture_output=True,
                                  text=True)
    assert prepared.returncode == 0, prepared.stderr
    return USER


@pytest.fixture(scope="session")
def rootless(test_user, tmp_path_factory) -> Rootless:
    """The test user with its own checkout, .venv and stage images."""
    user = Rootless(test_user, Path(pwd.getpwnam(test_user).pw_dir))
    # Once per run: another worker's tests may be running the user's checkout and .venv already.
    with one_worker_at_a_time(tmp_path_factory, "rootless") as done:
        if not done.exists():
            user.give_checkout()
            setup = user.run("sh", "scripts/setup-host", timeout=3000)
            assert "Traceback" not in setup.stderr
            done.touch()
    info = json.loads(user.run("podman", "info", "--format", "json").stdout)
    assert info["host"]["security"]["rootless"] is True
    assert info["store"]["graphDriverName"] == "overlay", "rootless storage must not be vfs"
    return user


@pytest.fixture(scope="session")
def stage_images(tmp_path_factory) -> None:
    """Build (or confirm up to date) every stage and assembler image of this repo, once."""
    with one_worker_at_a_time(tmp_path_factory, "stage-images"):
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
    """build(pipeline_dict_or_path, store=None, output=None, *extra, env=None, prefix=()) -> Result."""
    counter = iter(range(1000))

    def _build(pipeline, store: Path | None = None, output: Path | None = None, *extra: str,
               env: dict | None = None, prefix: tuple[str, ...] = ()) -> Result:
        return run_build(pipeline, store or shared_store, output or tmp_path / f"out-{next(counter)}", *extra, env=env,
                         prefix=prefix)

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
