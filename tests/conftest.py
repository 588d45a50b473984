"""Fixtures that drive the real CLI against real podman, the way a user does.

Tests call `osbuild-oci` as a subprocess and read its `--json` events; trees are
checked with plain `podman` pointed at the store, as a user would.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from osbuild_oci.engine.host import unmount_below
from osbuild_oci.engine.client import Engine

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "osbuild_oci"]


def osbuild(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the CLI; never raises on a non-zero exit, tests assert on it."""
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})})


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    events: list[dict] = field(default_factory=list)

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == kind]

    @property
    def ran(self) -> list[str]:
        """Names of the stages whose container really ran (not cached)."""
        return [e["stage"] for e in self.of("stage-done") if not e["cached"]]

    @property
    def tree(self) -> str:
        return self.of("build-done")[0]["tree"]

    @property
    def image(self) -> str:
        return self.of("build-done")[0]["image"]


def podman(store: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Plain podman pointed at a store's storage, as `osbuild-oci store podman-args` tells users."""
    proc = subprocess.run(["podman", *Engine(store).podman_args(), *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {proc.stderr}")
    return proc


def tree_run(store: Path, image: str, *cmd: str) -> str:
    """Run a command in a tree image (no network) and return its stdout."""
    return podman(store, "run", "--rm", "--network=none", image, *cmd).stdout


@pytest.fixture(scope="session", autouse=True)
def release_store_mounts(tmp_path_factory):
    """containers-storage leaves its stores mounted; undo that so pytest can remove them."""
    yield
    unmount_below(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def stage_images() -> None:
    """Build (or confirm up to date) every stage and assembler image of this repo, once."""
    proc = subprocess.run([*CLI, "stages", "build"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory) -> Path:
    """One store for tests that do not depend on what else is in it; saves rebuilding trees."""
    return tmp_path_factory.mktemp("shared") / "store"


@pytest.fixture
def build(tmp_path, shared_store, stage_images):
    """build(pipeline_dict_or_path, store=None, output=None, *extra) -> Result."""
    counter = iter(range(1000))

    def _build(pipeline, store: Path | None = None, output: Path | None = None, *extra: str,
               env: dict | None = None) -> Result:
        n = next(counter)
        if isinstance(pipeline, dict):
            path = tmp_path / f"pipeline-{n}.json"
            path.write_text(json.dumps(pipeline))
        else:
            path = Path(pipeline)
        out = output or tmp_path / f"out-{n}"
        proc = osbuild("build", path, "--store", store or shared_store, "-o", out, "--json", *extra, env=env)
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        return Result(proc.returncode, proc.stdout, proc.stderr, events)

    return _build


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(root: Path, htpasswd: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Debian's docker-registry on a random loopback port, storing into root."""
    port = _free_port()
    auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n" if htpasswd else ""
    config = root / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\n"
                      f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=open(root / "registry.log", "w"))
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((root / "registry.log").read_text())
            time.sleep(0.05)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A plain-HTTP registry on 127.0.0.1, yielding (address, its data directory)."""
    root = tmp_path_factory.mktemp("registry")
    proc, address = start_registry(root)
    yield address, root / "data"
    proc.terminate()
    proc.wait()
