"""The commands around build: listing stages, inspecting and cleaning stores."""

from __future__ import annotations

import fcntl
import json

from conftest import REPO, osbuild


def test_stages_list_and_show(stage_images):
    listed = {s["name"]: s for s in json.loads(osbuild("stages", "list", "--json").stdout)}
    assert listed["org.osbuild.debootstrap"]["network"] is True
    assert listed["org.osbuild.hostname"]["network"] is False
    assert listed["org.osbuild.qcow2"]["kind"] == "assembler"
    assert "CAP_SYS_CHROOT" in listed["org.osbuild.debootstrap"]["capabilities"]
    assert all(s["id"] for s in listed.values()), "every stage of the checkout is built"
    schema = json.loads(osbuild("stages", "show", "org.osbuild.mkdir").stdout)
    assert set(schema["properties"]) == {"paths", "files"}
    missing = osbuild("stages", "show", "org.osbuild.nope")
    assert missing.returncode == 2 and "org.osbuild.nope" in missing.stderr


def test_store_clean_and_delete(build, tmp_path):
    store = tmp_path / "store"
    assert build(REPO / "pipelines" / "noop.json", store).ran == ["org.osbuild.noop"]
    assert len(json.loads(osbuild("store", "list", "--store", store, "--json").stdout)) == 1

    assert osbuild("store", "clean", "--store", store).returncode == 0
    assert json.loads(osbuild("store", "list", "--store", store, "--json").stdout) == []
    assert build(REPO / "pipelines" / "noop.json", store).ran == ["org.osbuild.noop"]

    assert osbuild("store", "delete", "--store", store).returncode == 0
    assert not store.exists()
    refused = osbuild("store", "delete", "--store", tmp_path)
    assert refused.returncode == 2 and "not an osbuild-oci store" in refused.stderr
    assert tmp_path.exists()


def test_a_second_build_on_a_busy_store_is_told_so(tmp_path, stage_images):
    store = tmp_path / "store"
    store.mkdir()
    with open(store / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = osbuild("build", REPO / "pipelines" / "noop.json", "--store", store, "-o", tmp_path / "out")
    assert proc.returncode == 2
    assert "in use by another osbuild-oci process" in proc.stderr
