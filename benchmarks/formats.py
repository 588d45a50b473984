"""The clouds' formats of one disk, timed in one run: the cloud example (pipelines/debian-bookworm-cloud-qcow2.json)
built once, then its cached tree assembled in each format the disk assembler makes (assembler only), beside the
plain-shell way of making the same file from the raw disk (qemu-img convert, xz, zstd, GNU tar and gzip, as each
cloud's documentation says), and each file's size on the host against the raw disk's.

Run as root after scripts/setup-host, from the checkout:
    .venv/bin/python benchmarks/formats.py [WORKDIR [FORMAT...]]   (default: a new directory under /var/tmp,
    every format)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from daytwo import CLI
from iso import CLOUD, MB, build

# format: (file name, the plain shell's command from RAW to OUT)
FORMATS = {
    "raw": ("disk.raw", "cp --sparse=always RAW OUT"),
    "qcow2": ("disk.qcow2", "qemu-img convert -O qcow2 RAW OUT"),
    "raw.zst": ("disk.raw.zst", "zstd -q -10 -T0 RAW -o OUT"),
    "vmdk": ("disk.vmdk", "qemu-img convert -O vmdk -o subformat=streamOptimized RAW OUT"),
    "vhdx": ("disk.vhdx", "qemu-img convert -O vhdx RAW OUT"),
    "vhd": ("disk.vhd", "qemu-img convert -O vpc -o subformat=fixed,force_size RAW OUT"),
    "gce": ("disk.tar.gz", "cd $(dirname RAW) && tar --format=oldgnu --sparse -c disk.raw | gzip -n > OUT"),
    "raw.xz": ("disk.raw.xz", "xz -6 -T0 -c RAW > OUT"),  # last: minutes on two cores
}


def sizes(path: Path) -> str:
    return f"{path.stat().st_size / MB:.0f} MB ({os.stat(path).st_blocks * 512 / MB:.0f} MB allocated)"


def main(work: Path, only: list[str]) -> None:
    subprocess.run([*CLI, "stages", "build"], check=True, capture_output=True)
    pipeline = json.loads(CLOUD.read_text())
    wall, _, qcow2 = build(pipeline, work, "cloud")
    print(f"cloud example, cold: {wall:.1f} s")
    shell = work / "shell"
    shell.mkdir()
    raw = shell / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(qcow2), str(raw)], check=True)
    print(f"{'format':8} {'assembler':>10} {'plain shell':>12}  osbuild-oci's file / the shell's file")
    for disk_format, (filename, command) in FORMATS.items():
        if only and disk_format not in only:
            continue
        variant = json.loads(CLOUD.read_text())
        # A name of this run's own: an output cached by an earlier run would not run the assembler.
        options = {"format": disk_format, "filename": filename.replace("disk", f"disk-{os.getpid()}")}
        if disk_format == "vmdk":
            options["subformat"] = "streamOptimized"
        variant["assembler"]["options"].update(options)
        _, steps, made = build(variant, work, f"format-{disk_format}")
        out = shell / ("out-" + filename)
        start = time.monotonic()
        subprocess.run(["sh", "-c", command.replace("RAW", str(raw)).replace("OUT", str(out))], check=True)
        by_hand = time.monotonic() - start
        print(f"{disk_format:8} {steps[-1][1]:9.1f}s {by_hand:11.1f}s  {sizes(made)} / {sizes(out)}", flush=True)
        shutil.rmtree(made.parent)
        out.unlink()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="bench-formats.", dir="/var/tmp")),
         sys.argv[2:])
