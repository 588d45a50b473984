#!/usr/bin/env python3
"""Sharing trees through a registry, for the Debian qcow2 pipeline.

Measured in one run, against Debian's docker-registry on loopback:
  cold          - build in a fresh store, nothing cached
  push          - push every tree of it (--cache-to), all stages cached
  pulled        - a second fresh store with --stages-from/--cache-from: no stage runs,
                  the final tree is pulled, the assembler runs
  shell_pull    - the same tree pulled by hand with `podman pull` into a fresh storage
  one_stage     - bytes uploaded by --cache-to after adding one small stage at the end
Run as root after scripts/setup-host:  .venv/bin/python benchmarks/registry.py [PIPELINE]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from helpers import start_registry  # noqa: E402

CLI = [sys.executable, "-m", "osbuild_oci"]


def timed(cmd: list) -> tuple[float, list[dict]]:
    t0 = time.monotonic()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-2000:]}")
    return time.monotonic() - t0, [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def blob_bytes(data: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_size for p in (data / "docker/registry/v2/blobs").rglob("data")}


def main() -> None:
    source = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "pipelines" / "debian-bookworm-qcow2.json")
    doc = json.loads(source.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "reg").mkdir()
        registry, address = start_registry(tmpdir / "reg")
        try:
            http = "--no-tls-verify"
            timed([*CLI, "stages", "push", f"{address}/osbuild", http])
            trees = f"{address}/bench/trees"
            pipeline = tmpdir / "p.json"
            pipeline.write_text(json.dumps(doc))

            def build(store: str, out: str, *extra: str) -> tuple[float, list[dict]]:
                return timed([*CLI, "build", pipeline, "--store", tmpdir / store, "-o", tmpdir / out, "--json",
                              *extra])

            cold, events = build("s1", "o1")
            final = [e for e in events if e["event"] == "build-done"][0]["tree"]
            push, _ = build("s1", "o2", "--cache-to", trees, http)
            pulled, events = build("s2", "o3", "--stages-from", f"{address}/osbuild", "--cache-from", trees, http)
            assert not [e for e in events if e["event"] == "stage-done" and not e["cached"]], "a stage ran"

            t0 = time.monotonic()
            subprocess.run(["podman", "--root", tmpdir / "plain", "--runroot", tmpdir / "plainrun", "pull",
                            "--tls-verify=false", "-q", f"{trees}:{final}"], check=True, capture_output=True)
            shell_pull = time.monotonic() - t0

            before = blob_bytes(tmpdir / "reg" / "data")
            doc["stages"].append({"name": "org.osbuild.mkdir",
                                  "options": {"files": [{"path": "/etc/bench-change", "content": "1\n"}]}})
            pipeline.write_text(json.dumps(doc))
            build("s1", "o4", "--cache-to", trees, http)
            added = {d: n for d, n in blob_bytes(tmpdir / "reg" / "data").items() if d not in before}
        finally:
            registry.terminate()
            registry.wait()
            for store in ("s1", "s2"):
                if (tmpdir / store).exists():
                    subprocess.run([*CLI, "store", "delete", "--store", tmpdir / store], cwd=REPO)
            subprocess.run(["podman", "--root", tmpdir / "plain", "--runroot", tmpdir / "plainrun",
                            "system", "reset", "-f"], capture_output=True)

    print(json.dumps({
        "pipeline": source.name,
        "cold_build_s": round(cold, 1),
        "push_all_trees_s": round(push, 1),
        "fresh_store_pulling_final_tree_s": round(pulled, 1),
        "pulled_over_cold_ratio": round(pulled / cold, 2),
        "plain_podman_pull_of_that_tree_s": round(shell_pull, 1),
        "one_stage_change_uploaded_blobs": len(added),
        "one_stage_change_uploaded_bytes": sum(added.values()),
    }, indent=2))


if __name__ == "__main__":
    main()
