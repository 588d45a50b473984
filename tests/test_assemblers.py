"""Assemblers on a small tree: disk layout, root UUID, boot code, tar and OCI archives, a read-only tree.

Disks are inspected with the tools of the raw assembler image itself (sfdisk,
blkid, debugfs, mtools), so the host needs none of them.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import tarfile
import tempfile
import time

import pytest

from helpers import (SECTOR, build_stage, check_gpt_disk, disk_tool, partitions, podman, remove_default_images, root_file,
                     root_fs, stage_ref, tree_entry, unique_name, write_stage)

UUID = "0b6c3a5e-1f2d-4c8b-9a7e-5d4c3b2a1f00"
DEFAULT_EPOCH = 1704067200  # docs/decisions/019-*.md: a pipeline without source_epoch
OS_RELEASE = 'PRETTY_NAME="osbuild-oci test tree"\nID=test\n'


def small_tree(assembler: dict, grub_cfg: bool = True) -> dict:
    files = [{"path": "/etc/os-release", "content": OS_RELEASE}]
    if grub_cfg:
        files.append({"path": "/boot/grub/grub.cfg", "content": "set timeout=0\n"})
    return {"name": "small", "stages": [{"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "/root", "mode": 0o700}]}},
                                        {"name": "org.osbuild-oci.files", "options": {"files": files}}],
            "assembler": assembler}


def test_raw_gpt_disk(build, tmp_path):
    """Also: every file's access and change times on the disk are its modification time, the source epoch,
    not when the store unpacked the layer (a name with a space and quotes included)."""
    size = 256 * 1024 * 1024
    pipeline = small_tree({"name": "org.osbuild.raw", "options": {
        "filename": "disk.img", "root_fs_uuid": UUID, "size": "256M"}})
    odd = '/etc/a "quoted" name'
    pipeline["stages"][1]["options"]["files"].append({"path": odd, "content": "x"})
    result = build(pipeline, output=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    image = tmp_path / "out" / "disk.img"
    assert image.stat().st_size == size
    assert image.stat().st_blocks * 512 < size / 4, "the raw image is sparse"
    root = check_gpt_disk(image, UUID, size)
    assert root_file(image, root["start"], "/etc/os-release") == OS_RELEASE
    for path in ("/etc/os-release", odd, "/root"):
        quoted = '"' + path.replace('"', '""') + '"'
        stat = disk_tool(image, "debugfs", "-R", f"stat {quoted}", f"IMG?offset={root['start'] * SECTOR}")
        times = dict(re.findall(r"\b(atime|ctime|mtime): (0x[0-9a-f]+)", stat))
        assert {name: int(value, 16) for name, value in times.items()} == dict.fromkeys(
            ("atime", "ctime", "mtime"), DEFAULT_EPOCH), f"{path}: {stat}"


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
    assert result.returncode == 1, result.stderr
    assert "org.osbuild.grub2" in result.stderr
    assert "Traceback" not in result.stderr


def test_tar_round_trip(build, tmp_path):
    result = build(small_tree({"name": "org.osbuild.tar", "options": {"filename": "tree.tar.gz",
                                                                      "compression": "gzip"}}),
                   output=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    with tarfile.open(tmp_path / "out" / "tree.tar.gz") as tar:
        assert tar.extractfile("./etc/os-release").read().decode() == OS_RELEASE
        root = tar.getmember("./root")
        assert (root.mode, root.uid, root.gid) == (0o700, 0, 0)


def test_working_containers_are_removed_while_the_assembler_runs(build, tmp_path):
    """Deleting a committed stage's working container holds the store's layer lock (seconds for a big
    tree), so it waits for the assembler's container, which needs no lock; none is left afterwards."""
    store = tmp_path / "store"
    since = str(int(time.time()))  # a store's events outlive it, kept by the path under /run
    result = build(small_tree({"name": "org.osbuild.tar", "options": {"filename": "t.tar"}}), store)
    assert result.returncode == 0, result.stderr
    events = [(e["Status"], e["ID"]) for e in map(json.loads, podman(
        store, "events", "--stream=false", "--since", since, "--filter", "type=container", "--format", "json"
    ).stdout.splitlines())]
    started = {cid for status, cid in events if status == "start"}
    working = {cid for status, cid in events if status == "create"} - started
    assert len(working) == 3, events  # never started: one per stage, and the assembler's view of the tree
    assembler_start = max(i for i, (status, _) in enumerate(events) if status == "start")  # the last to run
    removed = {cid: i for i, (status, cid) in enumerate(events) if status == "remove"}
    assert working <= removed.keys(), events
    assert all(removed[cid] > assembler_start for cid in working), events


def test_an_output_directory_in_folders_that_do_not_exist_yet_is_made_with_them(build, tmp_path):
    """`-o output/debian` on a fresh clone, as scripts/build-example does: the folders on the way are made too."""
    output, pipeline = tmp_path / "new" / "nested" / "out", tmp_path / "p.json"
    pipeline.write_text(json.dumps(small_tree({"name": "org.osbuild.tar", "options": {"filename": "t.tar"}})))
    result = build(pipeline, output=output)
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in output.iterdir()) == ["t.tar", "t.tar.spdx.json"]
    assert oct((tmp_path / "new").stat().st_mode & 0o777) == oct(0o755)


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
import json, os, subprocess, sys
args = json.load(sys.stdin)
if args["options"].get("remount"):
    subprocess.run(["mount", "-o", "remount,bind,rw", args["tree"]], check=True)
try:
    with open(os.path.join(args["tree"], "etc/os-release"), "a") as f:
        f.write("tampered")
    outcome = "written"
except OSError as err:
    outcome = os.strerror(err.errno)
open(os.path.join(args["output"], "outcome"), "w").write(outcome)
"""


@pytest.fixture(scope="module")
def evil_assembler(tmp_path_factory, stage_images):
    """An assembler that tries to change the tree, with CAP_DAC_OVERRIDE, and CAP_SYS_ADMIN to remount it
    (outside the allowlist: the tests grant it with --allow-capability, as a user who trusts it would)."""
    source = tmp_path_factory.mktemp("evil")
    name = unique_name("test.evil")
    write_stage(source, name, EVIL, {"type": "object", "properties": {"remount": {"type": "boolean"}}},
                {"org.osbuild-oci.capabilities": "CAP_DAC_OVERRIDE CAP_SYS_ADMIN"}, kind="assemblers")
    build_stage(source, name)
    yield name
    remove_default_images(stage_ref(name))


def test_assembler_gets_the_tree_read_only(build, tmp_path, shared_store, evil_assembler):
    result = build(small_tree({"name": evil_assembler, "options": {}}), None, tmp_path / "evil",
                   "--allow-capability", "CAP_SYS_ADMIN")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "evil" / "outcome").read_text() == "Read-only file system"
    assert tree_entry(shared_store, result.image, "/etc/os-release")[1].decode() == OS_RELEASE


def test_assembler_that_changes_the_tree_fails_the_build(build, tmp_path, shared_store, evil_assembler):
    result = build(small_tree({"name": evil_assembler, "options": {"remount": True}}), None, tmp_path / "evil",
                   "--allow-capability", "CAP_SYS_ADMIN")
    assert result.returncode == 1, result.stderr
    assert not (tmp_path / "evil").exists() or list((tmp_path / "evil").iterdir()) == [], \
        "what a failed assembler wrote never reaches -o"
    assert f"error: tree {result.of('stage-done')[-1]['id']} was altered by a reader that must only read it" \
        in result.stderr
    assert result.of("build-done") == []
    tree = f"localhost/osbuild-oci/trees:{result.of('stage-done')[-1]['id']}"
    assert tree_entry(shared_store, tree, "/etc/os-release")[1].decode() == OS_RELEASE


def test_seed_name_io_weldr_qcow2(build, tmp_path):
    result = build(small_tree({"name": "io.weldr.qcow2", "options": {"filename": "seed.qcow2", "root_fs_uuid": UUID}}),
                   output=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(tmp_path / "out" / "seed.qcow2")],
                                     check=True, capture_output=True, text=True).stdout)
    assert (info["format"], info["virtual-size"]) == ("qcow2", 2 * 1024 ** 3)
