"""The live ISO and the cloud image, timed in one run: each example's cold build (a new store and an empty
package cache of its own) against the plain shell's live ISO (benchmarks/plain-shell-live-iso.sh, no cache);
the squashfs compressions, each an assembler run on the cached tree; the ISO booted as a CD-ROM on BIOS and on
UEFI, one after the other (2 CPUs each) and both at once (1 CPU each), to the serial login prompt; the cloud
image booted with a NoCloud seed on a disk grown to 6 GiB, to cloud-init's "finished" line; and the sizes
(ISO and squashfs, the cloud qcow2 beside its raw disk).

Run as root after scripts/setup-host, from the checkout, with the baseline's tools on the host:
    apt-get install squashfs-tools faketime
    .venv/bin/python benchmarks/iso.py [WORKDIR]   (default: a new directory under /var/tmp)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from daytwo import CLI, REPO, to_login

sys.path.insert(0, str(REPO / "tests"))
from helpers import sha256  # noqa: E402

LIVE = REPO / "pipelines" / "debian-bookworm-live-iso.json"
CLOUD = REPO / "pipelines" / "debian-bookworm-cloud-qcow2.json"
LIVE_PROMPT = re.compile(rb"debian-live (?:\[[^\n]*\n)*login:")
CLOUD_DONE = re.compile(rb"Cloud-init v\. \S+ finished")
COMPRESSIONS = [{"method": "zstd", "level": 9}, {"method": "zstd", "level": 15}, {"method": "xz"}, {"method": "gzip"},
                {"method": "lz4"}]
MB = 1000 * 1000


def build(pipeline: dict, work: Path, name: str) -> tuple[float, list[tuple[str, float]], Path]:
    """Wall seconds, (step, seconds) of every stage and the assembler, and the output."""
    path, out = work / f"{name}.json", work / f"out-{name}"
    path.write_text(json.dumps(pipeline))
    store = work / ("store-" + pipeline["name"])
    start = time.monotonic()
    proc = subprocess.run([*CLI, "build", str(path), "--store", str(store), "-o", str(out), "--json",
                           "--package-cache", str(work / f"packages-{pipeline['name']}")],
                          capture_output=True, text=True, check=True)
    wall = time.monotonic() - start
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    steps = [(e.get("stage") or e["assembler"], e["seconds"]) for e in events
             if e["event"] in ("stage-done", "assembler-done") and not e["cached"]]
    return wall, steps, out / pipeline["assembler"]["options"]["filename"]


def squashfs_size(iso: Path) -> int:
    """The size of /live/filesystem.squashfs, as xorriso lists the ISO."""
    listing = subprocess.run(["xorriso", "-indev", str(iso), "-find", "/live/filesystem.squashfs", "-exec", "lsdl"],
                             capture_output=True, text=True, check=True).stdout
    return int(listing.split()[4])


def report_build(name: str, wall: float, steps: list[tuple[str, float]]) -> None:
    print(f"cold build, {name}: {wall:.1f} s")
    for step, seconds in steps:
        print(f"  {step:28} {seconds:7.1f} s")


def boot(image: Path, work: Path, name: str, *flags: str, prompt: re.Pattern = LIVE_PROMPT) -> float:
    """Seconds from `osbuild-oci boot` to the prompt; the boot's private files go to WORK (it is killed)."""
    scratch = work / f"boot-{name}"
    scratch.mkdir()
    argv = ["env", f"TMPDIR={scratch}", *CLI, "boot", str(image), "--accel", "tcg", *flags]
    return to_login(argv, work / f"console-{name}.log", prompt)


def main(work: Path) -> None:
    subprocess.run([*CLI, "stages", "build"], check=True, capture_output=True)
    start = time.monotonic()
    subprocess.run([str(REPO / "benchmarks" / "plain-shell-live-iso.sh"), str(work / "shell")], check=True,
                   capture_output=True)
    shell = time.monotonic() - start
    live_pipeline = json.loads(LIVE.read_text())
    live, live_steps, iso = build(live_pipeline, work, "live")
    print(f"cold live ISO: {live:.1f} s; plain shell: {shell:.1f} s ({live / shell:.2f}x)")
    report_build("live ISO", live, live_steps)
    shell_iso = work / "shell" / "live.iso"
    print(f"ISO {iso.stat().st_size / MB:.0f} MB (squashfs {squashfs_size(iso) / MB:.0f} MB); plain shell's "
          f"{shell_iso.stat().st_size / MB:.0f} MB (squashfs {squashfs_size(shell_iso) / MB:.0f} MB)")

    for n, compression in enumerate(COMPRESSIONS):
        variant = json.loads(LIVE.read_text())
        variant["assembler"]["options"].update(filename=f"c{n}.iso", compression=compression)
        _, steps, out = build(variant, work, f"compression-{n}")
        same = ", same bytes as the cold build's" if sha256(out) == sha256(iso) else ""
        print(f"squashfs {json.dumps(compression)}: assembler {steps[-1][1]:.1f} s, squashfs "
              f"{squashfs_size(out) / MB:.0f} MB, ISO {out.stat().st_size / MB:.0f} MB{same}")
        out.unlink()

    for firmware in ("bios", "uefi"):
        print(f"ISO as a CD-ROM, {firmware}, 2 CPUs: login after {boot(iso, work, firmware, f'--{firmware}'):.1f} s",
              flush=True)
    start = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda fw: boot(iso, work, f"{fw}-1", f"--{fw}", "--", "-smp", "1"), ("bios", "uefi")))
    print(f"ISO as a CD-ROM, BIOS and UEFI at once, 1 CPU each: login after {both[0]:.1f} and {both[1]:.1f} s, "
          f"both in {time.monotonic() - start:.1f} s")

    cloud, cloud_steps, qcow2 = build(json.loads(CLOUD.read_text()), work, "cloud")
    report_build("cloud qcow2", cloud, cloud_steps)
    seed = work / "user-data"
    seed.write_text("#cloud-config\nhostname: timed\nruncmd:\n  - touch /var/tmp/ran\n")
    done = boot(qcow2, work, "cloud", "--bios", "--seed", str(seed), "--size", "6G", prompt=CLOUD_DONE)
    print(f"cloud qcow2 with a NoCloud seed, grown to 6 GiB, BIOS: cloud-init finished after {done:.1f} s")
    raw = work / "cloud.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(qcow2), str(raw)], check=True)
    print(f"cloud qcow2 {qcow2.stat().st_size / MB:.0f} MB; its raw disk {raw.stat().st_size / MB:.0f} MB, "
          f"{os.stat(raw).st_blocks * 512 / MB:.0f} MB allocated")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bench-iso.", dir="/var/tmp")))
