"""arm64 from this amd64 host: pipelines/debian-bookworm-arm64-qcow2.json builds (stage images native, the
tree's own programs through qemu-user), boots to a ttyAMA0 login on qemu's virt machine with AAVMF, and its
trees are arm64 images that `podman run --arch arm64` runs, for root and for a rootless user.

One arm64 Debian build in the session's shared store, shared by every test here; the amd64 flagship's stage ids
come from `inspect`, which builds nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from helpers import (GPT, REPO, SECTOR, TREES, Result, User, boot_to_login, esp_listing, partitions, podman,
                     osbuild, root_fs, run_build, skopeo_inspect)

pytestmark = pytest.mark.slow

PIPELINE = REPO / "pipelines" / "debian-bookworm-arm64-qcow2.json"
FLAGSHIP = REPO / "pipelines" / "debian-bookworm-qcow2.json"
ARM64_ROOT = "B921B045-1DF0-41C3-AF44-4C6F280D3FAE"


@pytest.fixture(scope="module")
def arm64(shared_store, stage_images, tmp_path_factory) -> tuple[Result, Path]:
    output = tmp_path_factory.mktemp("arm64") / "out"
    result = run_build(PIPELINE, shared_store, output)
    assert result.returncode == 0, result.stderr[-3000:]
    return result, output / json.loads(PIPELINE.read_text())["assembler"]["options"]["filename"]


def test_disk_is_an_arm64_uefi_disk(arm64, tmp_path):
    _, qcow2 = arm64
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(qcow2), str(raw)], check=True)
    parts = partitions(raw)["partitions"]
    assert [(p["name"], p["type"]) for p in parts] == [("esp", GPT["esp"]), ("root", ARM64_ROOT)], \
        "no BIOS boot partition, the arm64 root partition type"
    assert esp_listing(raw, parts[0]["start"]).split() == ["::/EFI/BOOT/BOOTAA64.EFI"]
    assert root_fs(raw, parts[1]["start"])["TYPE"] == "ext4"
    with open(raw, "rb") as disk:
        assert disk.read(SECTOR)[:0x5C] == bytes(0x5C), "no BIOS boot code in the MBR"


def test_boots_to_serial_login_on_qemu_virt(arm64, tmp_path):
    _, qcow2 = arm64
    console = boot_to_login(qcow2, "uefi", tmp_path, disk_arch="arm64")
    assert "GNU GRUB" in console
    assert "debian-oci ttyAMA0" in console, "the login prompt is on the PL011 serial port of qemu's virt machine"


def test_trees_are_arm64_images_with_ids_of_their_own(arm64, shared_store, tmp_path):
    """Every stage id differs from the amd64 flagship's (as `inspect` plans it: nothing is built), the arm64 trees
    stay cached, and the final tree is an arm64 image that runs through binfmt_misc."""
    result, _ = arm64
    planned = osbuild("inspect", FLAGSHIP, "--json", "--store", tmp_path / "plan-store")
    assert planned.returncode == 0, planned.stderr
    amd64_ids = [stage["id"] for stage in json.loads(planned.stdout)["stages"]]
    again = run_build(PIPELINE, shared_store, tmp_path / "arm64")
    assert again.returncode == 0 and again.ran == [], again.stderr[-3000:]
    arm64_ids = [e["id"] for e in result.of("stage-done")]
    assert len(arm64_ids) == len(amd64_ids) == 8 and not set(arm64_ids) & set(amd64_ids)
    platform = podman(shared_store, "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", result.image)
    assert platform.stdout.split() == ["linux/arm64"]
    assert podman(shared_store, "run", "--rm", "--network=none", "--arch", "arm64", result.image,
                  "uname", "-m").stdout == "aarch64\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="makes its own unprivileged user")
def test_pushed_tree_runs_as_arm64_for_root_and_a_rootless_user(arm64, shared_store, registry):
    """The debootstrap tree (the smallest of the pipeline), pushed: the registry's config says arm64, and
    `podman run --arch arm64` runs it through binfmt_misc, also in a rootless user's namespace."""
    address, _ = registry
    result, _ = arm64
    ref = f"{address}/arm64/tree:{result.of('stage-done')[0]['id']}"
    podman(shared_store, "push", "--tls-verify=false", f"{TREES}{result.of('stage-done')[0]['id']}", ref)
    config = skopeo_inspect(ref, "--config")
    assert (config["os"], config["architecture"]) == ("linux", "arm64")
    run = ["run", "--rm", "--network=none", "--tls-verify=false", "--arch", "arm64", ref, "uname", "-m"]
    rootful = subprocess.run(["podman", *run], capture_output=True, text=True)
    subprocess.run(["podman", "rmi", "--force", ref], capture_output=True)
    assert (rootful.returncode, rootful.stdout) == (0, "aarch64\n"), rootful.stderr
    user = User(f"osbuild-oci-arm64-{os.getpid()}")
    try:
        assert subprocess.run(["sh", "scripts/setup-host", "--user", user.name], cwd=REPO,
                              capture_output=True).returncode == 0
        rootless = user.run("podman", *run)
        assert (rootless.returncode, rootless.stdout) == (0, b"aarch64\n"), rootless.stderr
    finally:
        user.remove()
