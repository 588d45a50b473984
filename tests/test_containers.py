"""What a stage container gets, seen from inside it: no capabilities but its label's, no network unless
its label asks, the ulimits, and OSBUILD_STAGE."""

from __future__ import annotations

import json
import socket

import pytest

from helpers import build_stage, remove_default_images, stage_ref, tree_entry, unique_name, write_stage

REPORT = """#!/usr/bin/python3
import json, os, resource, socket, sys
args = json.load(sys.stdin)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
report = {"CapEff": status["CapEff"].strip(), "CapBnd": status["CapBnd"].strip(),
          "nofile": resource.getrlimit(resource.RLIMIT_NOFILE), "nproc": resource.getrlimit(resource.RLIMIT_NPROC),
          "OSBUILD_STAGE": os.environ.get("OSBUILD_STAGE"), "interfaces": sorted(os.listdir("/sys/class/net")),
          "SOURCE_DATE_EPOCH": os.environ.get("SOURCE_DATE_EPOCH")}
try:
    socket.create_connection(tuple(args["options"]["connect"]), timeout=10).close()
    report["connect"] = "connected"
except OSError as err:
    report["connect"] = str(err)
with open(os.path.join(args["tree"], args["options"]["report"]), "w") as f:
    json.dump(report, f)
"""

# Both need CAP_DAC_OVERRIDE (bit 1) to write their report into the tree; CAP_FOWNER is bit 3.
CONFINED_CAPS, CONFINED_MASK = "CAP_DAC_OVERRIDE CAP_FOWNER", f"{(1 << 1) | (1 << 3):016x}"
NETWORKED_CAPS, NETWORKED_MASK = "CAP_DAC_OVERRIDE", f"{1 << 1:016x}"
EPOCH = 1234567890


@pytest.fixture(scope="module")
def reporters(tmp_path_factory, stage_images):
    """Two stages that report what they got, one with network: their names."""
    source = tmp_path_factory.mktemp("reporters")
    confined, networked = unique_name("test.confined"), unique_name("test.networked")
    write_stage(source, confined, REPORT, labels={"org.osbuild-oci.capabilities": CONFINED_CAPS})
    write_stage(source, networked, REPORT, labels={"org.osbuild-oci.capabilities": NETWORKED_CAPS,
                                                   "org.osbuild-oci.network": "true"})
    build_stage(source, confined)
    build_stage(source, networked)
    yield confined, networked
    remove_default_images(stage_ref(confined), stage_ref(networked))


def test_what_a_stage_container_gets(build, tmp_path, reporters):
    confined, networked = reporters
    # The Debian mirror, which containers with network reach (the only place they can, on our machines).
    mirror = [socket.gethostbyname("deb.debian.org"), 80]
    pipeline = {"name": "report", "source_epoch": EPOCH, "stages": [
        {"name": confined, "options": {"connect": mirror, "report": "confined.json"}},
        {"name": networked, "options": {"connect": mirror, "report": "networked.json"}}]}
    # Under hard limits of its own (prlimit), so the containers' limits are known numbers: nofile as the
    # process's, nproc capped at 16384 where runc cannot set more.
    result = build(pipeline, tmp_path / "store", None, "--allow-network", networked,
                   prefix=("prlimit", "--nofile=3000:3000", "--nproc=20000:20000"))
    assert result.returncode == 0, result.stderr
    assert result.ran == [confined, networked]
    entries = {name: tree_entry(tmp_path / "store", result.image, f"/{name}.json")
               for name in ("confined", "networked")}
    reports = {name: json.loads(data) for name, (_, data) in entries.items()}
    assert [info.mtime for info, _ in entries.values()] == [EPOCH, EPOCH], "clamped to source_epoch"
    # --refresh runs again from the first stage that fetches (asks for the network), not before it.
    refreshed = build(pipeline, tmp_path / "store", None, "--refresh", "--allow-network", networked)
    assert refreshed.returncode == 0, refreshed.stderr
    assert refreshed.ran == [networked] and refreshed.tree == result.tree

    assert reports["confined"]["CapEff"] == reports["confined"]["CapBnd"] == CONFINED_MASK
    assert reports["networked"]["CapEff"] == reports["networked"]["CapBnd"] == NETWORKED_MASK
    assert reports["confined"]["interfaces"] == ["lo"]
    assert reports["confined"]["connect"] != "connected"
    assert "lo" in reports["networked"]["interfaces"] and len(reports["networked"]["interfaces"]) > 1
    assert reports["networked"]["connect"] == "connected"
    for report, stage in zip(reports.values(), reporters):
        assert report["OSBUILD_STAGE"] == stage
        assert report["SOURCE_DATE_EPOCH"] == str(EPOCH)
        assert report["nofile"] == [3000, 3000]
        assert report["nproc"] == [16384, 16384]
