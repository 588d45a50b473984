"""Assemblers on a small tree: disk layout, root UUID, boot code, tar and OCI archives, a read-only tree.

Disks are inspected with the tools of the raw assembler image itself (sfdisk,
blkid, debugfs, mtools), so the host needs none of them.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from conftest import podman

DISK_TOOLS = "localhost/osbuild-oci/org.osbuild.raw:latest"
UUID = "0b6c3a5e-1f2d-4c8b-9a7e-5d4c3b2a1f00"
OS_RELEASE = 'PRETTY_NAME="osbuild-oci test tree"\nID=test\n'
SECTOR = 512
GPT = {"bios": "21686148-6E49-704E-6564-65654E656564", "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
       "root": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"}


def small_tree(assembler: dict, grub_cfg: bool = True) -> dict:
    files = [{"path": "/etc/os-release", "content": OS_RELEASE}]
    if grub_cfg:
        files.append({"path": "/boot/grub/grub.cfg", "content": "set timeout=0\n"})
    return {"name": "small", "stages": [{"name": "org.osbuild.mkdir", "options": {
        "paths": [{"path": "/root", "mode": "0700"}], "files": files}}], "assembler": assembler}


def disk_tool(image: Path, *cmd: str) -> str:
    """Run a disk tool from the assembler image on IMAGE (mounted read-only at /d/NAME)."""
    proc = subprocess.run(["podman", "run", "--rm", "--network=none", "-v", f"{image.parent}:/d:ro",
                           "--entrypoint", cmd[0], DISK_TOOLS, *[c.replace("IMG", f"/d/{image.name}") for c in cmd[1:]]],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stderr}"
    return proc.stdout


def partitions(image: Path) -> dict:
    return json.loads(disk_tool(image, "sfdisk", "--json", "IMG"))["partitiontable"]


def root_fs(image: Path, start_sector: int) -> dict:
    out = disk_tool(image, "blkid", "-p", "-O", str(start_sector * SECTOR), "-o", "export", "IMG")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def root_file(image: Path, start_sector: int, path: str) -> str:
    return disk_tool(image, "debugfs", "-R", f"cat {path}", f"IMG?offset={start_sector * SECTOR}")


def esp_listing(image: Path, start_sector: int) -> str:
    return disk_tool(image, "mdir", "-b", "-i", f"IMG@@{start_sector * SECTOR}", "::/EFI/BOOT")


def check_gpt_disk(image: Path, uuid: str, size: int) -> dict:
    """The layout every bootable GPT disk of ours has; returns the root partition."""
    table = partitions(image)
    assert table["label"] == "gpt"
    parts = table["partitions"]
    assert [(p["start"], p["size"], p["type"], p["name"]) for p in parts[:2]] == [
        (2048, 2048, GPT["bios"], "bios"), (4096, 204800, GPT["esp"], "esp")]
    root = parts[2]
    assert (root["start"], root["type"]) == (208896, GPT["root"])
    assert (root["start"] + root["size"]) * SECTOR == size - 1024 * 1024, "the last MiB is left to the backup GPT"
    assert root_fs(image, root["start"])["UUID"] == uuid
    assert "BOOTX64.EFI" in esp_listing(image, 4096)
    with open(image, "rb") as f:
        mbr = f.read(SECTOR)
    assert mbr[:0x5C] == boot_img()[:0x5C], "GRUB's boot code is in the MBR"
    assert int.from_bytes(mbr[0x5C:0x64], "little") == 2048, "the boot code points at core.img"
    return root


def boot_img() -> bytes:
    """GRUB's boot.img, as the assembler image has it."""
    return subprocess.run(["podman", "run", "--rm", "--network=none", "--entrypoint", "cat", DISK_TOOLS,
                           "/usr/lib/grub/i386-pc/boot.img"], capture_output=True, check=True).stdout


def test_raw_gpt_disk(build, tmp_path):
    size = 256 * 1024 * 1024
    result = build(small_tree({"name": "org.osbuild.raw", "options": {
        "filename": "disk.img", "root_fs_uuid": UUID, "size": "256M"}}), output=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    image = tmp_path / "out" / "disk.img"
    assert image.stat().st_size == size
    assert image.stat().st_blocks * 512 < size / 4, "the raw image is sparse"
    root = check_gpt_disk(image, UUID, size)
    assert root_file(image, root["start"], "/etc/os-release") == OS_RELEASE


def test_qcow2_dos_bios_only(build, tmp_path):
    result = build(small_tree({"name": "org.osbuild.qcow2", "options": {
        "filename": "disk.qcow2", "root_fs_uuid": UUID, "size": 200 * 1024 * 1024, "pt_type": "dos",
        "uefi": False, "compat": "0.10"}}), output=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    qcow2 = tmp_path / "out" / "disk.qcow2"
    subprocess.run(["qemu-img", "check", str(qcow2)], check=True, capture_output=True)
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(qcow2)], check=True,
                                     capture_output=True, text=True).stdout)
    assert (info["format"], info["format-specific"]["data"]["compat"]) == ("qcow2", "0.10")
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(qcow2), str(raw)], check=True)
    table = partitions(raw)
    assert table["label"] == "dos"
    assert [(p["start"], p["type"], p.get("bootable", False)) for p in table["partitions"]] == [(2048, "83", True)]
    assert root_fs(raw, 2048)["UUID"] == UUID
    with open(raw, "rb") as f:
        head = f.read(2 * SECTOR)
    assert int.from_bytes(head[0x5C:0x64], "little") == 1, "core.img follows the MBR"
    assert int.from_bytes(head[SECTOR + 500:SECTOR + 508], "little") == 2, "core.img loads its rest from LBA 2"


def test_disk_without_grub_cfg_is_refused(build):
    result = build(small_tree({"name": "org.osbuild.raw", "options": {"filename": "d.img", "root_fs_uuid": UUID}},
                              grub_cfg=False))
    assert result.returncode != 0
    assert "org.osbuild.grub2" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_tar_round_trip(build, tmp_path):
    result = build(small_tree({"name": "org.osbuild.tar", "options": {"filename": "tree.tar.gz",
                                                                      "compression": "gzip"}}),
                   output=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    with tarfile.open(tmp_path / "out" / "tree.tar.gz") as tar:
        assert tar.extractfile("./etc/os-release").read().decode() == OS_RELEASE
        root = tar.getmember("./root")
        assert (root.mode, root.uid, root.gid) == (0o700, 0, 0)


def test_oci_archive_round_trip(build, tmp_path):
    result = build(small_tree({"name": "org.osbuild.oci-archive", "options": {
        "filename": "image.tar", "ref": "localhost/small:1", "cmd": ["/bin/true"], "env": {"A": "b c"},
        "labels": {"org.example": "yes"}}}), output=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    archive = f"oci-archive:{tmp_path / 'out' / 'image.tar'}"
    info = json.loads(subprocess.run(["skopeo", "inspect", "--config", archive], check=True, capture_output=True,
                                     text=True).stdout)
    assert info["architecture"] == "amd64"
    assert (info["config"]["Cmd"], info["config"]["Env"], info["config"]["Labels"]) == (
        ["/bin/true"], ["A=b c"], {"org.example": "yes"})
    subprocess.run(["skopeo", "copy", "--quiet", archive, f"dir:{tmp_path / 'dir'}"], check=True)
    manifest = json.loads((tmp_path / "dir" / "manifest.json").read_text())
    assert len(manifest["layers"]) == 1
    layer = tmp_path / "dir" / manifest["layers"][0]["digest"].split(":")[1]
    with tarfile.open(fileobj=gzip.open(layer)) as tar:
        assert tar.extractfile("./etc/os-release").read().decode() == OS_RELEASE
    with tempfile.TemporaryDirectory(prefix="oci-") as runroot:  # podman wants a short runroot
        storage = ["--root", str(tmp_path / "storage"), "--runroot", runroot, "--storage-driver", "vfs"]
        loaded = subprocess.run(["podman", *storage, "load", "-i", str(tmp_path / "out" / "image.tar")],
                                capture_output=True, text=True)
    assert "localhost/small:1" in loaded.stdout, loaded.stderr


EVIL = """#!/usr/bin/python3
import json, os, sys
args = json.load(sys.stdin)
try:
    open(os.path.join(args["tree"], "etc/os-release"), "a").write("tampered")
    outcome = "written"
except OSError as err:
    outcome = os.strerror(err.errno)
open(os.path.join(args["output"], "outcome"), "w").write(outcome)
"""


@pytest.fixture
def evil_assembler(tmp_path):
    """An assembler that tries to change the tree, with CAP_DAC_OVERRIDE to make it worse."""
    name = "test.osbuild-oci.evil"
    context = tmp_path / "evil-context"
    context.mkdir()
    (context / "assemble").write_text(EVIL)
    (context / "assemble").chmod(0o755)
    (context / "Containerfile").write_text(
        "FROM localhost/osbuild-oci/stage-base:latest\nCOPY assemble /assemble\nENTRYPOINT [\"/assemble\"]\n")
    schema = json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"})
    labels = {"org.osbuild-oci.name": name, "org.osbuild-oci.kind": "assembler", "org.osbuild-oci.schema": schema,
              "org.osbuild-oci.capabilities": "CAP_DAC_OVERRIDE"}
    ref = f"localhost/osbuild-oci/{name}:latest"
    subprocess.run(["podman", "build", "-q", "-t", ref, *[f"--label={k}={v}" for k, v in labels.items()],
                    str(context)], check=True, capture_output=True)
    yield name
    subprocess.run(["podman", "rmi", "-f", ref], capture_output=True)


def test_assembler_cannot_change_the_tree(build, tmp_path, shared_store, evil_assembler):
    pipeline = small_tree({"name": "org.osbuild.tar", "options": {"filename": "before.tar"}})
    before = build(pipeline, output=tmp_path / "before")
    assert before.returncode == 0, before.stderr
    tree_id = podman(shared_store, "image", "inspect", "--format", "{{.Id}}", before.image).stdout
    pipeline["assembler"] = {"name": evil_assembler, "options": {}}
    evil = build(pipeline, output=tmp_path / "evil")
    assert evil.returncode == 0, evil.stderr
    assert (tmp_path / "evil" / "outcome").read_text() == "Read-only file system"
    assert evil.image == before.image
    assert podman(shared_store, "image", "inspect", "--format", "{{.Id}}", evil.image).stdout == tree_id


def test_seed_name_io_weldr_qcow2(build, tmp_path):
    result = build(small_tree({"name": "io.weldr.qcow2", "options": {"filename": "seed.qcow2", "root_fs_uuid": UUID}}),
                   output=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(tmp_path / "out" / "seed.qcow2")],
                                     check=True, capture_output=True, text=True).stdout)
    assert (info["format"], info["virtual-size"]) == ("qcow2", 2 * 1024 ** 3)
