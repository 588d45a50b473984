#!/usr/bin/env python3
"""Cold build of pipelines/debian-bookworm-tree.json against mmdebstrap alone, in the same run.

For each of RUNS rounds, in turn:
  osbuild-oci  - `osbuild-oci build` of the pipeline into a fresh store (every stage runs)
  mmdebstrap   - `mmdebstrap --variant=minbase --include=PACKAGES bookworm DIR` on the host, where
                 PACKAGES is the pipeline's package set (debootstrap's extra packages plus apt's)
Then, from the last store: a fully cached rebuild, and the size of each stage's layer (the
top layer of the tree image that stage made).  Both sides download from the same mirror
without a proxy, so the mirror's speed counts on both.
Run as root after scripts/setup-host:  .venv/bin/python benchmarks/debian_tree.py [RUNS]
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "osbuild_oci"]
PIPELINE = REPO / "pipelines" / "debian-bookworm-tree.json"


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    return time.monotonic() - t0, proc


def package_set(pipeline: dict) -> tuple[str, str, list[str]]:
    boot = next(s["options"] for s in pipeline["stages"] if s["name"] == "org.osbuild.debootstrap")
    packages = list(boot.get("packages", []))
    for stage in pipeline["stages"]:
        if stage["name"] == "org.osbuild.apt":
            packages += stage["options"].get("packages", [])
    return boot["suite"], boot.get("mirror", "http://deb.debian.org/debian"), packages


def layer_sizes(store: Path, events: list[dict]) -> list[dict]:
    podman = ["podman", *subprocess.run([*CLI, "store", "podman-args", "--store", str(store)], check=True,
                                        capture_output=True, text=True, cwd=REPO).stdout.split()]
    out = []
    for event in events:
        history = subprocess.run([*podman, "history", "--format", "json", f"localhost/osbuild-oci/trees:{event['id']}"],
                                 check=True, capture_output=True, text=True).stdout
        out.append({"stage": event["stage"], "layer_bytes": json.loads(history)[0]["size"],
                    "seconds": event["seconds"]})
    return out


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    subprocess.run([*CLI, "stages", "build"], check=True, capture_output=True, cwd=REPO)
    suite, mirror, packages = package_set(json.loads(PIPELINE.read_text()))
    ours, theirs, cached, layers = [], [], None, []
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        for n in range(runs):
            store = tmpdir / f"store-{n}"
            build = [*CLI, "build", str(PIPELINE), "--store", str(store), "-o", str(tmpdir / "out"), "--json"]
            seconds, proc = timed(build)
            ours.append(seconds)
            events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
            assert all(not e["cached"] for e in events if e["event"] == "stage-done"), "a cold build hit a cache"

            rootfs = tmpdir / f"mmdebstrap-{n}"
            seconds, _ = timed(["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(packages)}",
                                suite, str(rootfs), mirror])
            theirs.append(seconds)
            shutil.rmtree(rootfs)

            if n == runs - 1:
                cached, _ = timed(build)
                layers = layer_sizes(store, [e for e in events if e["event"] == "stage-done"])
            subprocess.run([*CLI, "store", "delete", "--store", str(store)], check=True, capture_output=True, cwd=REPO)

    print(json.dumps({
        "packages": packages,
        "osbuild_oci_cold_s": [round(s, 1) for s in ours],
        "mmdebstrap_s": [round(s, 1) for s in theirs],
        "median_ratio": round(statistics.median(ours) / statistics.median(theirs), 2),
        "osbuild_oci_cached_rebuild_s": round(cached, 2),
        "layers": layers,
    }, indent=2))


if __name__ == "__main__":
    main()
