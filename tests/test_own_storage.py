"""osbuild-oci's own storage is overlay whatever the user's podman default is, before and after setup-host.

A user who installs with pip and never runs scripts/setup-host has podman's vfs default (every layer a
full copy). osbuild-oci does not use it: stage images and stores are overlay. When that user runs
setup-host later, nothing under osbuild-oci changes: the tree built before is still a cache hit.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from helpers import REPO, Rootless, remove_user

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="makes its own unprivileged user: run the suite as root")]


@pytest.fixture
def newcomer():
    """A new ordinary user (Debian's useradd gives it subordinate ids), with a checkout and a pip install."""
    name = f"oci-new-{os.getpid()}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    user = Rootless(name, Path(pwd.getpwnam(name).pw_dir))
    try:
        user.give_checkout()
        user.run("python3", "-m", "venv", ".venv")
        user.run(".venv/bin/pip", "install", "-q", "-e", ".", timeout=600)
        yield user
    finally:
        remove_user(name, pwd.getpwnam(name).pw_uid)


def test_a_user_who_never_ran_setup_host_builds_on_overlay_and_keeps_the_tree_after_it(newcomer):
    own = json.loads(newcomer.run("podman", "info", "--format", "json").stdout)["store"]["graphDriverName"]
    assert own == "vfs", "the user's own podman default: the case this test is about"
    newcomer.run("osbuild-oci", "stages", "build", "--only", "org.osbuild.noop", timeout=900)
    stages = newcomer.run("osbuild-oci", "stages", "podman-args").stdout
    assert "--storage-driver overlay" in stages and "/.local/share/osbuild-oci/storage" in stages
    store = newcomer.home / "store"
    first = newcomer.build("pipelines/noop.json", store, output=newcomer.home / "out1")
    assert first["proc"].returncode == 0, first["proc"].stderr
    assert first["ran"] == ["org.osbuild.noop"]
    assert (store / "storage" / "overlay").is_dir() and not (store / "storage" / "vfs").exists()
    assert "--storage-driver overlay" in newcomer.run("osbuild-oci", "store", "podman-args", "--store", store).stdout

    prepared = subprocess.run(["sh", "scripts/setup-host", "--user", newcomer.name], cwd=REPO, capture_output=True,
                              text=True)
    assert prepared.returncode == 0, prepared.stderr
    again = newcomer.build("pipelines/noop.json", store, output=newcomer.home / "out2")
    assert again["proc"].returncode == 0, again["proc"].stderr
    assert again["ran"] == [] and again["tree"] == first["tree"], "the tree built before setup-host is still a hit"


def test_a_podman_command_on_a_store_leaves_its_folder_and_the_stage_images_folder_unmounted(tmp_path,
                                                                                             stage_images):
    """podman 4.3 bind-mounts an overlay storage's folder onto itself while a command runs, and detaches it when
    the command ends: a build whose layer path crossed the folder just then had its overlay mount refused with
    EINVAL (record 042).  osbuild-oci's podman flags turn that off, for a store and the stage images alike."""
    from helpers import MINBASE, podman_args, stage_podman_args
    store = tmp_path / "store"
    args, stage_args = podman_args(store), stage_podman_args()
    folders = {Path(flags[flags.index("--root") + 1]) / "overlay" for flags in (args, stage_args)}
    with subprocess.Popen(["podman", *args, "run", "--rm", "--network=none", MINBASE, "sleep", "5"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as running:
        mounted: set[Path] = set()
        for _ in range(100):
            points = {Path(line.split()[4]) for line in Path("/proc/self/mountinfo").read_text().splitlines()}
            mounted |= points & folders
            if any(str(point).startswith(f"{store}/storage/overlay/") for point in points):
                break  # the container's root is mounted: the command is well under way
            time.sleep(0.1)
        else:
            pytest.fail(f"no container of the store was ever mounted: {running.stderr.read()}")
        assert mounted == set(), "podman mounted the storage's own folder onto itself"
    assert running.returncode == 0, running.stderr.read()
