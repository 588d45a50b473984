#!/usr/bin/env python3
"""Rootless against root, in the same run, on every row that made rootless the normal case: stage images
from scratch, the flagship qcow2 cold with an empty and with a warm package cache, rebuilt unchanged, one trivial stage,
a fully cached 5-stage no-op pipeline, `--help`, and the store's size.

Each side gets a podman storage and a home of its own (so the package cache starts empty),
and "from scratch" includes mmdebstrap's minbase and every stage image: what a new user's
machine holds, not the hundreds of images a developer's storage gathers (every image in
the storage makes each `podman image inspect` of a build slower). Both sides run with the
same few environment variables, none inherited (PYTHONDONTWRITEBYTECODE, say, would make
every run compile its modules again). The rootless side is an unprivileged user prepared
with `scripts/setup-host --user NAME`, with a checkout and .venv of its own (the test
suite's osbuild-oci-test has both).

Run as root after scripts/setup-host (rows interleave the two sides, so a busy machine weighs on both):
    .venv/bin/python benchmarks/rootless.py [--user osbuild-oci-test]
"""

from __future__ import annotations

import argparse
import json
import pwd
import shutil
import statistics
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
        # Rootless podman reads ~/.config/containers/storage.conf before CONTAINERS_STORAGE_CONF, so the
        # user side gets a fresh home of its own, configured as scripts/setup-host --user configures one.
        self.home = work / "home"
        self.conf = self.home / ".config" / "containers" / "storage.conf"
        self.store = work / "store"
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{work}/graph"\n'
                             f'runroot = "/tmp/bench-{name}-run"\n')
        if user:
            subprocess.run(["chown", "-R", user, str(work)], check=True)

    def run(self, *args: str) -> tuple[float, subprocess.CompletedProcess]:
        env = {"PATH": f"{self.src}/.venv/bin:/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8",
               "HOME": str(self.home)}
        if self.user:
            # Not CONTAINERS_STORAGE_CONF: rootless podman 4.3 then ignores its graphroot, and skopeo does not.
            cmd = ["runuser", "-u", self.user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *args]
        else:
            env["CONTAINERS_STORAGE_CONF"] = str(self.conf)
            cmd = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *args]
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
        """Remove the stores and the side's own podman storage (as root: the user's files have subuids)."""
        for store in self.work.glob("store*"):
            if (store / "storage").is_dir():
                self.run("osbuild-oci", "store", "delete", "--store", str(store))
        mounts = Path("/proc/self/mounts").read_text().split("\n")
        for point in sorted((line.split()[1] for line in mounts if f" {self.work}/" in line), reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)


def _trivial_stage(side: Side) -> float:
    """The hostname stage alone: the pipeline with another hostname, everything before it cached."""
    changed = json.loads((REPO / PIPELINE).read_text())
    next(s for s in changed["stages"] if s["name"] == "org.osbuild.hostname")["options"]["hostname"] = "bench"
    (side.work / "changed.json").write_text(json.dumps(changed))
    if side.user:
        subprocess.run(["chown", side.user, str(side.work / "changed.json")], check=True)
    _, events = side.build(str(side.work / "changed.json"), "changed")
    return next(e["seconds"] for e in events if e["event"] == "stage-done" and e["stage"] == "org.osbuild.hostname")


def _cold_warm_cache(side: Side) -> float:
    """The cold build again in a new store: its package cache (in the side's home) is now warm."""
    side.run("osbuild-oci", "store", "delete", "--store", str(side.store))
    return side.build(PIPELINE, "cold-warm")[0]


def _noop(side: Side) -> float:
    """The median of five builds of a fully cached 5-stage no-op pipeline, after one that fills the store."""
    noop = side.work / "noop5.json"
    noop.write_text(json.dumps({"name": "noop5", "stages": [{"name": "org.osbuild.noop", "options": {"n": i}}
                                                            for i in range(5)]}))
    if side.user:
        subprocess.run(["chown", side.user, str(noop)], check=True)
    args = ("osbuild-oci", "build", str(noop), "--store", str(side.work / "store-noop"))
    side.run(*args)
    return statistics.median(side.run(*args)[0] for _ in range(5))


ROWS = [
    ("stages build from scratch", lambda side: side.run("osbuild-oci", "stages", "build")[0]),
    ("cold qcow2, empty package cache", lambda side: side.build(PIPELINE, "cold")[0]),
    ("cold qcow2, warm package cache", _cold_warm_cache),
    ("unchanged rebuild (output cached)", lambda side: side.build(PIPELINE, "warm")[0]),
    ("one trivial stage (hostname)", _trivial_stage),
    ("cached 5-stage no-op (median 5)", _noop),
    ("--help (median 5)", lambda side: statistics.median(side.run("osbuild-oci", "--help")[0] for _ in range(5))),
    ("store size (MB)", lambda side: int(side.run("du", "-sb", str(side.store))[1].stdout.split()[0]) / 1e6),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--user", default="osbuild-oci-test")
    parser.add_argument("--work", default="/var/tmp/osbuild-oci-bench")
    args = parser.parse_args()
    sides = [Side("root", None, Path(args.work) / "root"),
             Side("rootless", args.user, Path(pwd.getpwnam(args.user).pw_dir) / "bench")]
    results: dict[str, dict[str, float]] = {side.name: {} for side in sides}
    try:
        # Row by row, each side in turn, the first side alternating: a busy machine then weighs on both.
        for index, (what, measure) in enumerate(ROWS):
            for side in (sides if index % 2 == 0 else sides[::-1]):
                results[side.name][what] = measure(side)
                print(f"{side.name}: {what}: {results[side.name][what]:.1f}", flush=True)
    finally:
        for side in sides:
            side.cleanup()
    print("| what | root | rootless | rootless / root |")
    print("|---|---|---|---|")
    for what, _ in ROWS:
        root, rootless = results["root"][what], results["rootless"][what]
        print(f"| {what} | {root:.3f} | {rootless:.3f} | {rootless / root:.2f}× |")


if __name__ == "__main__":
    main()
