"""The flagship: pipelines/debian-bookworm-qcow2.json builds a disk that boots to a ttyS0 login, BIOS and UEFI.

The Debian tree is built once per session in the shared store; the other
assemblers then run on the same cached tree.  qemu runs with TCG (KVM guests
fail on the machines we build on).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import tempfile

import pytest

from helpers import (FLAGSHIP, REPO, boot_to_login, check_gpt_disk, podman, root_file, run_build, sha256,
                     store_state, tree_run)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline() -> dict:
    return json.loads(FLAGSHIP.read_text())


def test_disk_checks(flagship, pipeline, tmp_path):
    first, qcow2 = flagship
    assert "block count mismatch" not in first.stderr, "mkfs.vfat's warning about the ESP's offset is not news"
    subprocess.run(["qemu-img", "check", str(qcow2)], check=True, capture_output=True)
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(qcow2), str(raw)], check=True)
    root = check_gpt_disk(raw, pipeline["assembler"]["options"]["root_fs_uuid"], 2 * 1024 ** 3)
    assert root_file(raw, root["start"], "/etc/hostname").strip() == "debian-oci"


# Waits for ssh.service, which may start after the login prompt, to have made its host key.
HOST_KEY = "until test -s /etc/ssh/ssh_host_ed25519_key.pub; do sleep 1; done; cut -d' ' -f2 " \
           "/etc/ssh/ssh_host_ed25519_key.pub"


def test_boots_bios_and_uefi_to_a_login_and_each_machine_makes_its_own_ssh_host_keys(flagship, tmp_path):
    """Both firmwares boot the same disk to a login.  The image holds no ssh host keys: ssh.service makes
    them at a machine's first start, so two machines from one image never share them."""
    _, qcow2 = flagship
    keys = []
    for firmware in ("bios", "uefi"):
        console = boot_to_login(qcow2, firmware, tmp_path, then=HOST_KEY)
        assert "GNU GRUB" in console
        assert "fsck.ext4 -a" in console, "the initramfs checks the root filesystem"
        keys.append(re.search(r"==>\r?\n(\S+)\r?\n", console)[1])
    assert keys[0].startswith("AAAA") and keys[1].startswith("AAAA"), keys
    assert keys[0] != keys[1], "two boots of one image made the same ssh host key"


def test_warm_rebuild_copies_the_cached_output_and_the_assembler_gives_the_same_disk(flagship, pipeline, shared_store,
                                                                                     tmp_path):
    """An unchanged pipeline copies its cached output and starts no container.  The assembler run again on
    the same tree (its cached output removed) writes the same disk: every identifier and clock of it follows
    root_fs_uuid and the source epoch.

    (qemu-img converts the same raw disk to the same qcow2, so identical qcow2 files hold identical raw disks.
    Disks of the same tree built in two stores: tests/test_reproducible.py.)
    """
    first, qcow2 = flagship
    created = store_state(shared_store)["created"]
    again = run_build(pipeline, shared_store, tmp_path / "cached")
    assert again.returncode == 0, again.stderr
    assert again.ran == []
    done = again.of("assembler-done")
    assert [(e["assembler"], e["cached"], e["source"]) for e in done] == [("org.osbuild-oci.disk", True, "store")]
    assert again.image == first.image
    assert sha256(tmp_path / "cached" / qcow2.name) == sha256(qcow2), \
        "the cached output is byte-identical to what the assembler wrote"
    assert store_state(shared_store)["created"] == created, "neither the assembler nor a tree mount ran"
    kept = shared_store / "outputs" / done[0]["id"]
    assert sha256(kept / qcow2.name) == sha256(qcow2), "the store keeps the output as a plain file"
    assert podman(shared_store, "image", "exists", f"localhost/osbuild-oci/outputs:{done[0]['id']}",
                  check=False).returncode == 1, "no image is made of an output that never travelled"

    shutil.rmtree(kept)
    rerun = run_build(pipeline, shared_store, tmp_path / "out")
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.ran == [] and [e["cached"] for e in rerun.of("assembler-done")] == [False]
    assert sha256(tmp_path / "out" / qcow2.name) == sha256(qcow2)
    sbom = json.loads((tmp_path / "out" / f"{qcow2.name}.spdx.json").read_text())
    assert "linux-image-amd64" in {package["name"] for package in sbom["packages"]}


def test_tar_and_oci_archive_of_the_debian_tree(flagship, pipeline, shared_store, tmp_path):
    first, _ = flagship
    os_release = tree_run(shared_store, first.image, "cat", "/etc/os-release")
    tar = run_build({**pipeline, "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}},
                    shared_store, tmp_path / "tar")
    assert tar.returncode == 0 and tar.ran == [], tar.stderr
    with tarfile.open(tmp_path / "tar" / "tree.tar") as archive:
        assert archive.extractfile("./etc/os-release").read().decode() == os_release
        shadow = archive.getmember("./etc/shadow")
        assert (shadow.mode, shadow.uid, shadow.gid) == (0o640, 0, 42), "owner and mode kept (group shadow)"
    oci = run_build({**pipeline, "assembler": {"name": "org.osbuild.oci-archive", "options": {
        "filename": "image.tar", "ref": "localhost/debian-oci:bookworm", "cmd": ["/bin/bash"]}}},
        shared_store, tmp_path / "oci")
    assert oci.returncode == 0 and oci.ran == [], oci.stderr
    with tempfile.TemporaryDirectory(prefix="oci-") as runroot:  # podman wants a short runroot
        storage = ["--root", str(tmp_path / "storage"), "--runroot", runroot, "--storage-driver", "vfs"]
        subprocess.run(["podman", *storage, "load", "-q", "-i", str(tmp_path / "oci" / "image.tar")], check=True)
        loaded = subprocess.run(["podman", *storage, "run", "--rm", "--network=none", "localhost/debian-oci:bookworm",
                                 "cat", "/etc/os-release"], capture_output=True, text=True)
    assert loaded.stdout == os_release, loaded.stderr


def test_the_readmes_first_command_on_a_fresh_clone_builds_debian_13_and_it_boots(stage_images, tmp_path):
    """The README's quick start as a new user runs it: scripts/build-example in a fresh clone (no .venv, no store,
    no output/), then the disk it names boots.  Debian 13: the flagship's stages, only the suite differs."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    example = subprocess.run(["sh", "scripts/build-example"], cwd=clone, capture_output=True, text=True, timeout=2400)
    assert example.returncode == 0, example.stderr[-3000:]
    qcow2 = clone / "output" / "debian-trixie-qcow2" / "debian-trixie.qcow2"
    assert f".venv/bin/osbuild-oci boot {qcow2.relative_to(clone)}" in example.stdout
    console = boot_to_login(qcow2, "bios", tmp_path)
    assert "Debian GNU/Linux 13" in console
    subprocess.run([str(clone / ".venv" / "bin" / "osbuild-oci"), "store", "delete", "--store", str(clone / "store")],
                   check=True, capture_output=True)