"""arm64 from this amd64 host against amd64, in the same run: the cold qcow2 build of
pipelines/debian-bookworm-arm64-qcow2.json and of pipelines/debian-bookworm-qcow2.json (each in a new store
with an empty package cache of its own, so both download everything), per stage; then UEFI boots of both
disks from qemu's start to the serial login prompt (arm64: qemu-system-aarch64 -M virt, AAVMF, TCG).

Run as root after scripts/setup-host, from the checkout:
    .venv/bin/python benchmarks/arm64.py [WORKDIR]   (default: a new directory under /var/tmp)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from daytwo import CLI, REPO, to_login

PIPELINES = {"amd64": REPO / "pipelines" / "debian-bookworm-qcow2.json",
             "arm64": REPO / "pipelines" / "debian-bookworm-arm64-qcow2.json"}


def cold_build(arch: str, work: Path) -> tuple[float, list[tuple[str, float]], Path]:
    """Wall seconds, (stage, seconds) for every stage and the assembler, and the disk."""
    out = work / f"out-{arch}"
    start = time.monotonic()
    proc = subprocess.run([*CLI, "build", str(PIPELINES[arch]), "--store", str(work / f"store-{arch}"), "-o",
                           str(out), "--package-cache", str(work / f"packages-{arch}"), "--json"],
                          capture_output=True, text=True, check=True)
    wall = time.monotonic() - start
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    steps = [(e.get("stage") or e["assembler"], e["seconds"]) for e in events
             if e["event"] in ("stage-done", "assembler-done")]
    return wall, steps, next(out.glob("*.qcow2"))


def main(work: Path) -> None:
    subprocess.run([*CLI, "stages", "build"], check=True, capture_output=True)
    builds = {arch: cold_build(arch, work) for arch in ("amd64", "arm64")}
    (amd64, amd64_steps, _), (arm64, arm64_steps, _) = builds["amd64"], builds["arm64"]
    print(f"cold qcow2 build: amd64 {amd64:.1f} s, arm64 {arm64:.1f} s: {arm64 / amd64:.2f}x")
    for (name, a), (_, b) in zip(amd64_steps, arm64_steps):
        print(f"  {name:28} amd64 {a:7.1f} s   arm64 {b:7.1f} s   {b / a if a else 0:6.2f}x")
    for arch in ("amd64", "arm64"):
        argv = [*CLI, "boot", str(builds[arch][2]), "--uefi", "--arch", arch, "--accel", "tcg"]
        print(f"UEFI boot to login under TCG, {arch}: {to_login(argv, work / f'console-{arch}.log'):.1f} s",
              flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bench-arm64.", dir="/var/tmp")))
