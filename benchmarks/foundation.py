#!/usr/bin/env python3
"""Orchestrator overhead: cached rebuilds and uncached no-op stages, against plain podman.

Median of 5 runs each:
  cached   - `osbuild-oci build` of a 5-stage pipeline whose trees are all in the store
  stage    - one uncached no-op stage (container start, stdin, commit), per stage
  shell    - the same no-op stage done by hand in shell: podman create + mount +
             run with the tree bound in + commit, against the same store
Run as root after scripts/setup-host:  .venv/bin/python benchmarks/foundation.py
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
CLI = [sys.executable, "-m", "osbuild_oci"]
RUNS = 5
STAGES = 5


def timed(cmd: list[str], **kwargs) -> float:
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO, **kwargs)
    return time.monotonic() - t0


def pipeline(path: Path, salt: str, stages: int) -> Path:
    path.write_text(json.dumps({"name": "bench", "stages": [
        {"name": "org.osbuild.noop", "options": {"salt": salt, "n": i}} for i in range(stages)]}))
    return path


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        store = tmpdir / "store"
        build = lambda p: [*CLI, "build", str(p), "--store", str(store), "-o", str(tmpdir / "out")]  # noqa: E731
        five = pipeline(tmpdir / "five.json", "cached", STAGES)
        timed(build(five))
        cached = [timed(build(five)) for _ in range(RUNS)]

        per_stage = []
        for _ in range(RUNS):
            fresh = pipeline(tmpdir / "fresh.json", uuid.uuid4().hex, STAGES)
            per_stage.append((timed(build(fresh)) - statistics.median(cached)) / STAGES)

        podman = ["podman", *subprocess.run([*CLI, "store", "podman-args", "--store", str(store)], check=True,
                                            capture_output=True, text=True).stdout.split()]
        script = (f'set -e; P="{" ".join(podman)}"; c=$($P create localhost/osbuild-oci/empty /x); m=$($P mount $c); '
                  'echo \'{"tree":"/run/osbuild/tree","options":{}}\' | $P run --rm -i --network=none --cap-drop=all '
                  '-v $m:/run/osbuild/tree localhost/osbuild-oci/org.osbuild.noop:latest; '
                  '$P commit -q $c localhost/bench/shell:$RANDOM >/dev/null; $P rm $c >/dev/null')
        shell = [timed(["bash", "-c", script]) for _ in range(RUNS)]
        subprocess.run([*CLI, "store", "delete", "--store", str(store)], check=True, cwd=REPO)

    result = {
        "cached_rebuild_5_stages_s": round(statistics.median(cached), 3),
        "uncached_noop_stage_overhead_s": round(statistics.median(per_stage), 3),
        "plain_shell_noop_stage_s": round(statistics.median(shell), 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
