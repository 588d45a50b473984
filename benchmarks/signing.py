#!/usr/bin/env python3
"""What signing and verifying cost for the Debian qcow2 pipeline's trees, in one run.

The pipeline (without its assembler, so only trees move) is built once; then every
tree is pushed with --cache-to to one registry unsigned and to a second one signed
(--sign-key), each registry empty, so both upload every layer. Then fresh stores
pull the final tree with --cache-from, unsigned and verified (--trust-key),
alternating, REPEAT times each. Times are the whole command as a user waits for it;
on a loaded machine its noise is larger than what signing adds, so the fixed costs
are also measured alone: pushing every tree again (the registry has every blob, so
only manifests and signatures move), and the check of one signed tree before its
pull (signing.trusted: its manifest, its signature artifact, the ECDSA check).
Run as root after scripts/setup-host:  .venv/bin/python benchmarks/signing.py [PIPELINE] [REPEAT]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from helpers import start_registry, stop  # noqa: E402

from osbuild_oci.registry import signing  # noqa: E402

CLI = [sys.executable, "-m", "osbuild_oci"]
HTTP = "--no-tls-verify"


def timed(*cmd) -> tuple[float, list[dict]]:
    t0 = time.monotonic()
    proc = subprocess.run([*CLI, *map(str, cmd)], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-2000:]}")
    return time.monotonic() - t0, [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def main() -> None:
    source = Path(sys.argv[1] if len(sys.argv) > 1 else REPO / "pipelines" / "debian-bookworm-qcow2.json")
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    doc = {key: value for key, value in json.loads(source.read_text()).items() if key != "assembler"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        registries = []
        for name in ("plain", "signed"):
            (work / name).mkdir()
            registries.append(start_registry(work / name))
        stores = []
        try:
            pipeline = work / "p.json"
            pipeline.write_text(json.dumps(doc))
            timed("key", "generate", work / "bench")

            def build(store: str, *extra: str) -> tuple[float, list[dict]]:
                stores.append(work / store)
                return timed("build", pipeline, "--store", work / store, "--json", *extra)

            cold, _ = build("origin")
            plain_repo, signed_repo = (f"{address}/bench/trees" for _, address in registries)
            push_plain, events = build("origin", "--cache-to", plain_repo, HTTP)
            trees = len([e for e in events if e["event"] == "tree-pushed"])
            push_signed, events = build("origin", "--cache-to", signed_repo, HTTP, "--sign-key", work / "bench.key")
            final = [e for e in events if e["event"] == "build-done"][0]["tree"]
            repush: dict[str, list[float]] = {"plain": [], "signed": []}
            for n in range(repeat):
                repush["plain"].append(build("origin", "--cache-to", plain_repo, HTTP)[0])
                repush["signed"].append(build("origin", "--cache-to", signed_repo, HTTP, "--sign-key",
                                              work / "bench.key")[0])
            public = (signing.load_public(work / "bench.pub"),)
            checks = []
            for n in range(5):
                t0 = time.monotonic()
                signing.trusted(f"{signed_repo}:{final}", public, False)
                checks.append(time.monotonic() - t0)
            pulls: dict[str, list[float]] = {"plain": [], "verified": []}
            for n in range(repeat):
                for kind, extra in (("plain", ("--cache-from", plain_repo)),
                                    ("verified", ("--cache-from", signed_repo, "--trust-key", work / "bench.pub"))):
                    seconds, events = build(f"{kind}{n}", *extra, HTTP)
                    assert not [e for e in events if e["event"] == "stage-done" and not e["cached"]], "a stage ran"
                    pulls[kind].append(seconds)
        finally:
            for proc, _ in registries:
                stop(proc)
            for store in set(stores):
                subprocess.run([*CLI, "store", "delete", "--store", store], cwd=REPO, capture_output=True)
    plain, verified = statistics.median(pulls["plain"]), statistics.median(pulls["verified"])
    print(json.dumps({
        "pipeline": source.name, "trees": trees, "cold_build_s": round(cold, 1),
        "push_unsigned_s": round(push_plain, 1), "push_signed_s": round(push_signed, 1),
        "signing_added_s": round(push_signed - push_plain, 1),
        "repush_unsigned_s": [round(s, 1) for s in repush["plain"]],
        "repush_signed_s": [round(s, 1) for s in repush["signed"]],
        "repush_signing_added_s_median": round(statistics.median(repush["signed"])
                                               - statistics.median(repush["plain"]), 1),
        "check_before_pull_s_median": round(statistics.median(checks), 2),
        "pull_unsigned_s": [round(s, 1) for s in pulls["plain"]],
        "pull_verified_s": [round(s, 1) for s in pulls["verified"]],
        "verifying_added_s_median": round(verified - plain, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
