#!/usr/bin/env python3
"""Rootless against root, in the same run: stage images from scratch, the flagship qcow2 cold and cached,
one trivial stage, and the store's size.

Each side gets a podman storage of its own (CONTAINERS_STORAGE_CONF, overlay), so "from
scratch" includes mmdebstrap's minbase and every stage image. The rootless side is an
unprivileged user prepared with `scripts/setup-host --user NAME`, with a checkout and
.venv of its own (the test suite's osbuild-oci-test has both).

Run as root after scripts/setup-host:
    .venv/bin/python benchmarks/rootless.py [--user osbuild-oci-test]
"""

from __future__ import annotations

import argparse
import json
import pwd
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PIPELINE = "pipelines/debian-bookworm-qcow2.json"


class Side:
    """One way of running osbuild-oci: as root, or as the given user through runuser."""

    def __init__(self, name: str, user: str | None, work: Path):
        self.name, self.user, self.work = name, user, work
        home = Path(pwd.getpwnam(user).pw_dir) if user else REPO
        self.src = home / "src" if user else REPO
        self.conf = work / "storage.conf"
        self.store = work / "store"
        work.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{work}/graph"\n'
                             f'runroot = "/tmp/bench-{name}-run"\n')
        if user:
            subprocess.run(["chown", "-R", user, str(work)], check=True)

    def run(self, *args: str) -> tuple[float, subprocess.CompletedProcess]:
        env = {"CONTAINERS_STORAGE_CONF": str(self.conf), "PATH": f"{self.src}/.venv/bin:/usr/bin:/bin:/usr/sbin:/sbin",
               "LANG": "C.UTF-8"}
        if self.user:
            env["HOME"] = pwd.getpwnam(self.user).pw_dir
            cmd = ["runuser", "-u", self.user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *args]
        else:
            cmd = ["env", *(f"{k}={v}" for k, v in env.items()), *args]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.src)
        took = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{self.name}: {' '.join(args)} failed: {proc.stderr[-2000:]}")
        return took, proc

    def build(self, pipeline: str, output: str) -> tuple[float, list[dict]]:
        shutil.rmtree(self.work / output, ignore_errors=True)
        took, proc = self.run("osbuild-oci", "build", pipeline, "--store", str(self.store), "-o",
                              str(self.work / output), "--json")
        return took, [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]

    def cleanup(self) -> None:
        """Remove the store and the side's own podman storage (as root: the user's files have subuids)."""
        self.run("osbuild-oci", "store", "delete", "--store", str(self.store))
        mounts = Path("/proc/self/mounts").read_text().split("\n")
        for point in sorted((line.split()[1] for line in mounts if f" {self.work}/" in line), reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)


def measure(side: Side) -> dict:
    row = {}
    row["stages build from scratch"], _ = side.run("osbuild-oci", "stages", "build")
    row["cold qcow2 build"], _ = side.build(PIPELINE, "cold")
    row["cached rebuild (assembler only)"], _ = side.build(PIPELINE, "warm")
    changed = json.loads((REPO / PIPELINE).read_text())
    next(s for s in changed["stages"] if s["name"] == "org.osbuild.hostname")["options"]["hostname"] = "bench"
    (side.work / "changed.json").write_text(json.dumps(changed))
    if side.user:
        subprocess.run(["chown", side.user, str(side.work / "changed.json")], check=True)
    _, events = side.build(str(side.work / "changed.json"), "changed")
    row["one trivial stage (hostname)"] = next(e["seconds"] for e in events if e["event"] == "stage-done"
                                               and e["stage"] == "org.osbuild.hostname")
    _, du = side.run("du", "-sb", str(side.store))
    row["store size (MB)"] = int(du.stdout.split()[0]) / 1e6
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--user", default="osbuild-oci-test")
    parser.add_argument("--work", default="/var/tmp/osbuild-oci-bench")
    args = parser.parse_args()
    sides = [Side("root", None, Path(args.work) / "root"),
             Side("rootless", args.user, Path(pwd.getpwnam(args.user).pw_dir) / "bench")]
    results = {}
    for side in sides:
        try:
            results[side.name] = measure(side)
        finally:
            side.cleanup()
    print("| what | root | rootless | rootless / root |")
    print("|---|---|---|---|")
    for what in results["root"]:
        root, rootless = results["root"][what], results["rootless"][what]
        print(f"| {what} | {root:.1f} | {rootless:.1f} | {rootless / root:.2f}× |")


if __name__ == "__main__":
    main()
