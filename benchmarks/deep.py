#!/usr/bin/env python3
"""Deep pipelines under the layer budget: per-stage overhead by depth, push and pull of the deepest tree.

  1. A 500-stage pipeline (noop, every 4th stage writes a file) in a fresh store; each
     stage's seconds from the --json events.  Reported at depths 1, 64, 250 and 500 as
     the median of the 8 stages around that depth, and their mean (which carries a
     merge where a unit of 16 stages completes among them).
  2. `podman push` of the final tree to an empty loopback registry, `podman pull` of it
     into a fresh storage.
  3. With --debian: the merge on a Debian tree of about 700 MB: the first 3 stages of
     the qcow2 pipeline (debootstrap, files, apt with the kernel), then noop stages up
     to stage 16, which merges stages 1-16 into one layer; its time against stage 15's.
Run as root after scripts/setup-host:  .venv/bin/python benchmarks/deep.py [--debian]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from helpers import start_registry  # noqa: E402

CLI = [sys.executable, "-m", "osbuild_oci"]
DEPTH = 500
DEPTHS = (1, 64, 250, 500)


def build(pipeline: dict, store: Path, tmp: Path) -> list[float]:
    path = tmp / "pipeline.json"
    path.write_text(json.dumps(pipeline))
    proc = subprocess.run([*CLI, "build", str(path), "--store", str(store), "--json"], cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-2000:])
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return [e["seconds"] for e in events if e.get("event") == "stage-done"]


def stages(salt: str) -> list[dict]:
    return [{"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "/srv"}], "files": [
                {"path": f"/srv/f{i % 7}", "content": f"{salt} {i}"}]}} if i % 4 == 0 else
            {"name": "org.osbuild.noop", "options": {"salt": salt, "n": i}} for i in range(DEPTH)]


def timed(cmd: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.monotonic() - t0


def podman_args(store: Path) -> list[str]:
    return subprocess.run([*CLI, "store", "podman-args", "--store", str(store)], check=True, capture_output=True,
                          text=True, cwd=REPO).stdout.split()


def deep(tmp: Path) -> None:
    store = tmp / "store"
    seconds = build({"name": "deep", "stages": stages(uuid.uuid4().hex)}, store, tmp)
    print(f"{DEPTH} stages built in {sum(seconds):.1f} s")
    for depth in DEPTHS:
        window = seconds[max(0, min(depth - 4, len(seconds) - 8)):][:8]
        print(f"depth {depth:3}: stage {seconds[depth - 1]:.3f} s, median of 8 around it "
              f"{statistics.median(window):.3f} s, mean {statistics.mean(window):.3f} s")
    podman = ["podman", *podman_args(store)]
    final = subprocess.run([*podman, "images", "--format", "{{.Repository}}:{{.Tag}} {{.Labels}}"], check=True,
                           capture_output=True, text=True).stdout
    ref = next(line.split()[0] for line in final.splitlines() if f"org.osbuild-oci.depth:{DEPTH} " in line + " ")
    layers = subprocess.run([*podman, "image", "inspect", "--format", "{{len .RootFS.Layers}}", ref], check=True,
                            capture_output=True, text=True).stdout.strip()
    registry, address = start_registry(tmp)
    try:
        push = timed([*podman, "push", "--tls-verify=false", ref, f"docker://{address}/deep/final:latest"])
        other = tmp / "other"
        pull = timed(["podman", "--root", str(other / "storage"), "--runroot", str(other / "run"), "pull",
                      "--tls-verify=false", f"{address}/deep/final:latest"])
        print(f"final tree: {layers} layers; push to an empty registry {push:.2f} s, pull into a fresh storage "
              f"{pull:.2f} s")
    finally:
        registry.terminate()
        registry.wait()
        subprocess.run(["umount", "-R", str(tmp / "other" / "storage" / "overlay")], capture_output=True)


def debian(tmp: Path) -> None:
    pipeline = json.loads((REPO / "pipelines" / "debian-bookworm-qcow2.json").read_text())
    salt = uuid.uuid4().hex
    pipeline["stages"] = pipeline["stages"][:3] + [
        {"name": "org.osbuild.noop", "options": {"n": i, "salt": salt}} for i in range(3, 16)]
    del pipeline["assembler"]
    seconds = build(pipeline, tmp / "debian-store", tmp)
    print(f"debian: first 3 stages {sum(seconds[:3]):.1f} s; stage 15 {seconds[14]:.2f} s; stage 16 (merges "
          f"stages 1-16 into one layer) {seconds[15]:.2f} s")


def main() -> None:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        try:
            deep(Path(tmp))
            if "--debian" in sys.argv[1:]:
                debian(Path(tmp))
        finally:
            subprocess.run([*CLI, "store", "delete", "--store", str(Path(tmp) / "store")], capture_output=True,
                           cwd=REPO)
            subprocess.run([*CLI, "store", "delete", "--store", str(Path(tmp) / "debian-store")],
                           capture_output=True, cwd=REPO)


if __name__ == "__main__":
    main()
