"""What the stage tests share: a tiny tree, one Debian tree, and the refusal of bad options.

Stages that only write files run on a tiny tree (the folders a Debian tree has at
its top, made by org.osbuild.mkdir) and are read back from a tar of it.  Stages
whose result only the tree's own programs can judge (dpkg, sshd, chronyd) run on
one Debian tree built once per session in the shared store: bookworm minbase (the
debootstrap options of test_debian_stages, so its tree is shared too), debconf
answers, then the packages those tests read with.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from helpers import Result, run_build, tree_run

SKELETON = {"name": "org.osbuild.mkdir", "options": {"paths": [
    {"path": "/etc", "mode": 0o755}, {"path": "/usr/lib", "mode": 0o755, "parents": True}]}}
TAR = {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}

DEBOOTSTRAP = {"name": "org.osbuild.debootstrap",
               "options": {"suite": "bookworm", "variant": "minbase", "packages": ["systemd-sysv", "locales"]}}
# Asked while keyboard-configuration installs: without the answer, /etc/default/keyboard says "us".
KEYBOARD_ANSWER = {"package": "keyboard-configuration", "question": "keyboard-configuration/xkb-keymap",
                   "type": "select", "value": "de"}
DEBIAN = [DEBOOTSTRAP,
          {"name": "org.osbuild-oci.debconf", "options": {"selections": [KEYBOARD_ANSWER]}},
          {"name": "org.osbuild.apt", "options": {"packages": ["keyboard-configuration", "openssh-server", "chrony",
                                                               "kmod"]}}]


class Tree:
    """A built tree's files as the tar assembler wrote them."""

    def __init__(self, result: Result, tarball: Path):
        self.result = result
        with tarfile.open(tarball) as tar:
            self.members = {m.name.removeprefix("."): m for m in tar.getmembers()}
            self.files = {name: tar.extractfile(m).read().decode() for name, m in self.members.items() if m.isfile()}

    def __getitem__(self, path: str) -> str:
        return self.files[path]


@pytest.fixture
def tiny(build, tmp_path):
    """tiny(*stages) -> Tree: the stages built on the skeleton tree, which must succeed."""
    counter = iter(range(100))

    def _tiny(*stages: dict) -> Tree:
        out = tmp_path / f"tiny-{next(counter)}"
        result = build({"name": "tiny", "stages": [SKELETON, *stages], "assembler": TAR}, output=out)
        assert result.returncode == 0, result.stderr[-3000:]
        return Tree(result, out / "tree.tar")

    return _tiny


@pytest.fixture
def fails(build):
    """fails(*stages) -> the one error line of a build on the skeleton tree whose last stage exits 1."""
    def _fails(*stages: dict) -> str:
        result = build({"name": "tiny", "stages": [SKELETON, *stages]})
        assert result.returncode == 1, result.stderr[-3000:]
        assert "Traceback" not in result.stderr
        name = stages[-1]["name"]
        lines = [line for line in result.stderr.splitlines() if line.startswith(f"{name}: ")]
        assert len(lines) == 1, result.stderr
        return lines[0][len(name) + 2:]

    return _fails


@pytest.fixture
def refused(build):
    """refused(stage, options, where): the build exits 2 with one line naming the JSON path `where`
    (e.g. "options.config.Unit"; the stage is stages[1]) and prints no event: no stage started."""
    def _refused(stage: str, options: dict, where: str) -> str:
        result = build({"name": "bad", "stages": [SKELETON, {"name": stage, "options": options}]})
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"stages[1].{where}:" in lines[0], result.stderr
        assert result.stdout == ""
        return lines[0]

    return _refused


@pytest.fixture(scope="session")
def debian(shared_store, stage_images, tmp_path_factory) -> list[dict]:
    """The Debian tree's stages, built once; tests add theirs after them (see on_debian)."""
    out = tmp_path_factory.mktemp("stages-debian") / "out"
    result = run_build({"name": "stages-debian", "stages": DEBIAN}, shared_store, out)
    assert result.returncode == 0, result.stderr[-3000:]
    return DEBIAN


@pytest.fixture
def on_debian(debian, build, shared_store):
    """on_debian(*stages) -> run(*cmd) -> stdout of cmd in the tree of the Debian stages and these."""
    def _on_debian(*stages: dict):
        result = build({"name": "stages-debian", "stages": [*debian, *stages]})
        assert result.returncode == 0, result.stderr[-3000:]
        assert not {"org.osbuild.debootstrap", "org.osbuild.apt"} & set(result.ran), "the Debian tree is shared"
        return lambda *cmd: tree_run(shared_store, result.image, *cmd)

    return _on_debian

