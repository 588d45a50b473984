"""The day-two commands, timed: inspect on the cached qcow2 pipeline, gc of a 20-tree store, boot to login
through `osbuild-oci boot` against the bare qemu command, in the same run.

Run as root after scripts/setup-host, from the checkout:
    .venv/bin/python benchmarks/daytwo.py [WORKDIR]   (default: a new directory under /var/tmp)
The qcow2 pipeline is built into WORKDIR/store first if it is not there (minutes, once).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = [str(REPO / ".venv" / "bin" / "osbuild-oci")]
PIPELINE = REPO / "pipelines" / "debian-bookworm-qcow2.json"
PROMPT = re.compile(rb"debian-oci (?:\[[^\n]*\n)*login:")


def timed(*args: str) -> float:
    start = time.monotonic()
    subprocess.run([*CLI, *args], check=True, capture_output=True)
    return time.monotonic() - start


def to_login(argv: list[str], console: Path, prompt: re.Pattern = PROMPT) -> float:
    """Seconds from start until the serial console (argv's stdout, kept in console) shows the login prompt (or
    whatever else `prompt` matches)."""
    with open(console, "wb") as out:
        start = time.monotonic()
        vm = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        while not prompt.search(console.read_bytes()):
            if vm.poll() is not None or time.monotonic() - start > 600:
                raise RuntimeError(f"{argv[0]} ended or took too long; see {console}")
            time.sleep(0.2)
        return time.monotonic() - start
    finally:
        os.killpg(vm.pid, signal.SIGKILL)
        vm.wait()


def main(work: Path) -> None:
    store, out = work / "store", work / "out"
    if not (out / "debian-bookworm.qcow2").exists():
        subprocess.run([*CLI, "build", str(PIPELINE), "--store", str(store), "-o", str(out)], check=True)
    inspect = [timed("inspect", str(PIPELINE), "--store", str(store)) for _ in range(3)]
    print(f"inspect, cached qcow2 pipeline (8 stages): {min(inspect):.2f} s (best of 3; "
          f"{', '.join(f'{t:.2f}' for t in inspect)})")

    small = work / "small"
    pipeline = work / "twenty.json"
    pipeline.write_text(json.dumps({"name": "twenty", "stages": [
        {"name": "org.osbuild-oci.files", "options": {"files": [{"path": f"/f{n}", "content": "x" * 100_000}]}}
        for n in range(20)]}))
    subprocess.run([*CLI, "store", "delete", "--store", str(small)], capture_output=True)
    subprocess.run([*CLI, "build", str(pipeline), "--store", str(small)], check=True, capture_output=True)
    half = timed("store", "gc", "--store", str(small), "--max-size", "1M")
    print(f"store gc --max-size 1M on a store of 20 trees: {half:.2f} s")
    subprocess.run([*CLI, "store", "delete", "--store", str(small)], check=True, capture_output=True)

    qcow2 = out / "debian-bookworm.qcow2"
    bare = ["qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "2", "-nographic", "-snapshot",
            "-drive", f"file={qcow2},format=qcow2,if=virtio"]
    runs = [("bare qemu", bare), ("osbuild-oci boot", [*CLI, "boot", str(qcow2), "--bios"])] * 2
    for n, (name, argv) in enumerate(runs):
        print(f"BIOS boot to login, {name}: {to_login(argv, work / f'console-{n}.log'):.1f} s", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bench-daytwo.", dir="/var/tmp")))
