"""Reproducible trees: the Debian tree pipeline, built twice in two fresh stores with the same source_epoch,
gives the same layers (diff ids) and byte-identical tar and oci-archive outputs; the flagship built in a
fresh store gives the same layers and the same qcow2 and raw disks as the session's shared store.

These are the suite's repeated Debian builds: all three run at the same time.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from helpers import FLAGSHIP, REPO, Result, events_of, osbuild_popen, podman, run_build, sha256

pytestmark = pytest.mark.slow

EPOCH = 1700000000
# Files a package manager run or a first boot makes differently each time: none may be in the tree.
BUILD_RECORDS = ["./var/log/dpkg.log", "./var/log/apt/history.log", "./var/log/apt/term.log",
                 "./var/log/alternatives.log", "./var/cache/ldconfig/aux-cache", "./var/lib/systemd/random-seed",
                 "./etc/ssh/ssh_host_ed25519_key", "./etc/ssh/ssh_host_rsa_key"]


@pytest.fixture(scope="module")
def builds(stage_images, tmp_path_factory) -> dict[str, tuple[Path, Result]]:
    """The Debian tree pipeline with EPOCH in fresh stores a and b, and the flagship (its default epoch) in
    fresh store c, all at the same time."""
    pipeline = json.loads((REPO / "pipelines" / "debian-bookworm-tree.json").read_text())
    pipeline["source_epoch"] = EPOCH
    root = tmp_path_factory.mktemp("reproducible")
    path = root / "tree.json"
    path.write_text(json.dumps(pipeline))
    jobs = {"a": path, "b": path, "c": FLAGSHIP}
    procs = {name: osbuild_popen("build", job, "--store", root / name / "store", "--output", root / name / "out",
                                 "--json") for name, job in jobs.items()}
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=1800)
        assert proc.returncode == 0, stderr[-3000:]
        results[name] = (root / name / "store", Result(proc.returncode, stdout, stderr, events_of(stdout)))
    return results


@pytest.fixture(scope="module")
def twice(builds) -> list[tuple[Path, Result]]:
    return [builds["a"], builds["b"]]


def _layers(store: Path, image: str) -> list[str]:
    return json.loads(podman(store, "image", "inspect", image).stdout)[0]["RootFS"]["Layers"]


def test_same_epoch_gives_the_same_layers(twice):
    (store_a, first), (store_b, second) = twice
    assert first.tree == second.tree
    layers = _layers(store_a, first.image)
    assert len(layers) == len(first.ran) == 6
    assert _layers(store_b, second.image) == layers, "every stage layer has the same diff id"


@pytest.mark.parametrize("assembler", [{"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}},
                                       {"name": "org.osbuild.oci-archive", "options": {"filename": "image.tar"}}],
                         ids=["tar", "oci-archive"])
def test_same_epoch_gives_identical_outputs(twice, assembler, tmp_path):
    pipeline = {**json.loads((REPO / "pipelines" / "debian-bookworm-tree.json").read_text()),
                "source_epoch": EPOCH, "assembler": assembler}
    digests = []
    for name, (store, _) in zip("ab", twice):
        result = run_build(pipeline, store, tmp_path / name)
        assert result.returncode == 0 and result.ran == [], result.stderr[-3000:]
        digests.append(sha256(tmp_path / name / assembler["options"]["filename"]))
    assert digests[0] == digests[1], f"{assembler['name']} outputs of the same tree differ"
    if assembler["name"] == "org.osbuild.tar":
        with tarfile.open(tmp_path / "a" / "tree.tar") as archive:
            members = archive.getmembers()
            names = {member.name for member in members}
            assert max(member.mtime for member in members) == EPOCH, "every file clamped to source_epoch"
            assert archive.extractfile("./etc/machine-id").read() == b"", "systemd's first-boot mark"
        assert names.isdisjoint(BUILD_RECORDS), sorted(names.intersection(BUILD_RECORDS))


def test_the_flagship_built_in_two_stores_gives_the_same_layers_and_the_same_qcow2(builds, flagship, shared_store):
    """The disk assembler's every identifier and clock, and each inode's times, follow the tree and options,
    so two stores that built the same tree write the same disk.  (qemu-img converts the same raw disk to the same
    qcow2, so identical qcow2 files hold identical raw disks: a raw output of each is not assembled too.)"""
    store, fresh = builds["c"]
    shared, qcow2 = flagship
    assert fresh.tree == shared.tree
    assert _layers(store, fresh.image) == _layers(shared_store, shared.image)
    assert sha256(store.parent / "out" / qcow2.name) == sha256(qcow2), "qcow2 of the same tree from two stores"


DESCRIBED = {"filename": "described.raw", "format": "raw", "size": "3G", "kernel_opts": "console=ttyS0,115200",
             "partitions": [{"type": "bios-boot"}, {"type": "esp", "size": "100M"},
                            {"type": "xbootldr", "size": "300M"}, {"type": "swap", "size": "64M"}, {"type": "root"}]}


def test_a_described_layout_of_the_same_tree_from_two_stores_is_byte_identical(builds, flagship, shared_store,
                                                                                tmp_path):
    """systemd-repart's seed, its clock (the epoch), ext4's hash seed and the times of every file the assembler
    writes onto the disk follow the tree and the options: an unencrypted described disk (GPT, BIOS boot code,
    ESP, ext4 /boot and root, swap) comes out the same from a store that never saw the other's run."""
    pipeline = json.loads(FLAGSHIP.read_text())
    pipeline["assembler"]["options"] = {"root_fs_uuid": pipeline["assembler"]["options"]["root_fs_uuid"], **DESCRIBED}
    digests = []
    for name, where in (("fresh", builds["c"][0]), ("shared", shared_store)):
        result = run_build(pipeline, where, tmp_path / name)
        assert result.returncode == 0 and result.ran == [], result.stderr[-3000:]
        digests.append(sha256(tmp_path / name / "described.raw"))
    assert digests[0] == digests[1], "described raw disks of the same tree from two stores"
    with open(tmp_path / "fresh" / "described.raw", "rb") as disk:
        mbr = disk.read(512)
    assert int.from_bytes(mbr[0x5C:0x64], "little") == 2048, "GRUB's boot code points at core.img in bios-boot"
