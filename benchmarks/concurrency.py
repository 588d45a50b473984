#!/usr/bin/env python3
"""Two builds that share a prefix, on one store: started together against one after the other.

Each pipeline is the Debian minbase plus a shared stage (sleep 4) plus a stage of its
own. Together, the second build waits for the store's lock, then finds the shared
stage cached; one after the other, the second finds it cached too. The difference is
what waiting costs. Median of 3.
Run as root after scripts/setup-host:  .venv/bin/python benchmarks/concurrency.py
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "osbuild_oci"]
MINBASE = "localhost/osbuild-oci/debian-minbase:bookworm"


def pipelines(work: Path, salt: str) -> list[Path]:
    shared = {"name": "org.osbuild.script", "options": {"script": f"sleep 4; echo {salt} > /shared"}}
    paths = []
    for name in ("one", "two"):
        path = work / f"{name}.json"
        path.write_text(json.dumps({"name": name, "base": MINBASE, "stages": [
            shared, {"name": "org.osbuild.script", "options": {"script": f"echo {name} > /{name}"}}]}))
        paths.append(path)
    return paths


def build(pipeline: Path, store: Path) -> None:
    subprocess.run([*CLI, "build", str(pipeline), "--store", str(store)], check=True, capture_output=True, cwd=REPO)


def run(together: bool) -> float:
    work = Path(tempfile.mkdtemp(prefix="osbuild-oci-bench-"))
    store = work / "store"
    paths = pipelines(work, uuid.uuid4().hex)
    try:
        t0 = time.monotonic()
        if together:
            threads = [threading.Thread(target=build, args=(p, store)) for p in paths]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:
            for p in paths:
                build(p, store)
        return time.monotonic() - t0
    finally:
        subprocess.run([*CLI, "store", "delete", "--store", str(store)], capture_output=True, cwd=REPO)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    sequential = statistics.median(run(False) for _ in range(3))
    together = statistics.median(run(True) for _ in range(3))
    print(f"one after the other: {sequential:.1f} s; started together: {together:.1f} s "
          f"({together / sequential:.2f}x)")


if __name__ == "__main__":
    main()
