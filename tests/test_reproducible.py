"""Reproducible trees: the Debian tree pipeline, built twice in two fresh stores with the same source_epoch,
gives the same layers (diff ids) and byte-identical tar and oci-archive outputs.

This is the suite's one double Debian build: both builds run at the same time.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from helpers import REPO, Result, events_of, osbuild_popen, podman, run_build, sha256

pytestmark = pytest.mark.slow

EPOCH = 1700000000
# Files a package manager run or a first boot makes differently each time: none may be in the tree.
BUILD_RECORDS = ["./var/log/dpkg.log", "./var/log/apt/history.log", "./var/log/apt/term.log",
                 "./var/log/alternatives.log", "./var/cache/ldconfig/aux-cache", "./var/lib/systemd/random-seed",
                 "./etc/ssh/ssh_host_ed25519_key", "./etc/ssh/ssh_host_rsa_key"]


@pytest.fixture(scope="module")
def twice(stage_images, tmp_path_factory) -> list[tuple[Path, Result]]:
    pipeline = json.loads((REPO / "pipelines" / "debian-bookworm-tree.json").read_text())
    pipeline["source_epoch"] = EPOCH
    root = tmp_path_factory.mktemp("reproducible")
    path = root / "tree.json"
    path.write_text(json.dumps(pipeline))
    stores = [root / "a" / "store", root / "b" / "store"]
    builds = [osbuild_popen("build", path, "--store", store, "--json") for store in stores]
    results = []
    for store, proc in zip(stores, builds):
        stdout, stderr = proc.communicate(timeout=1800)
        assert proc.returncode == 0, stderr[-3000:]
        results.append((store, Result(proc.returncode, stdout, stderr, events_of(stdout))))
    return results


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
