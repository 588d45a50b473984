#!/usr/bin/env python3
"""The disks of docs/disks.md, timed in one run: each trixie example built cold and from its cached tree
(assembler only), booted to its login prompt under TCG, its disk's size on the host against its tree's; what
encryption costs the assembler (the encrypted example's layout with and without `encrypt`); and the plain-shell
way (benchmarks/plain-shell-disk.sh: mmdebstrap, ukify, sbsign and systemd-repart by hand) for the UKI disk.

"Cold" is a new store whose package cache is already warm (the first run, with an empty one, is its own row),
so the rows compare building, not the mirror.  The examples share their first seven stages; each cold row
builds them in a store of its own.

Run as root after scripts/setup-host, on a machine as quiet as you can get (builds and boots run one at a time):
    .venv/bin/python benchmarks/disks.py [--work /var/tmp/bench-disks]
Prints a markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = [str(REPO / ".venv" / "bin" / "osbuild-oci")]
EXAMPLES = ("encrypted-btrfs", "uki", "secureboot")
PASSPHRASE = "correct horse battery staple"
BOOT_LIMIT = 600


def pipeline(name: str) -> Path:
    return REPO / "pipelines" / f"debian-trixie-{name}-qcow2.json"


def disk_name(name: str) -> str:
    return json.loads(pipeline(name).read_text())["assembler"]["options"]["filename"]


class Bench:
    def __init__(self, work: Path):
        self.work = work
        self.packages = work / "packages"
        self.secrets = work / "secrets"
        self.secrets.mkdir(parents=True, exist_ok=True)
        (self.secrets / "luks").write_text(PASSPHRASE + "\n")
        subprocess.run(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-sha256", "-days", "30", "-nodes",
                        "-subj", "/CN=benchmark db key/", "-keyout", str(self.secrets / "db.key"),
                        "-out", str(self.secrets / "db.crt")], check=True, capture_output=True)

    def secret_args(self, name: str) -> list[str]:
        return {"encrypted-btrfs": ["--secret", f"luks={self.secrets / 'luks'}"],
                "uki": ["--secret", f"db-key={self.secrets / 'db.key'}",
                        "--secret", f"db-crt={self.secrets / 'db.crt'}"]}.get(name, [])

    def build(self, path: Path, store: Path, output: Path, *extra: str) -> dict:
        """One build: its wall time, the assembler's seconds and the final tree."""
        shutil.rmtree(output, ignore_errors=True)
        start = time.monotonic()
        proc = subprocess.run([*CLI, "build", str(path), "--store", str(store), "-o", str(output), "--json",
                               "--package-cache", str(self.packages), *extra], capture_output=True, text=True)
        wall = time.monotonic() - start
        if proc.returncode != 0:
            sys.exit(f"build of {path.name} failed:\n{proc.stderr[-3000:]}")
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        done = [e for e in events if e["event"] == "assembler-done"][0]
        tree = [e for e in events if e["event"] == "build-done"][0]["tree"]
        return {"wall": wall, "assembler": done["seconds"], "tree": tree}

    def assembler_only(self, path: Path, store: Path, output: Path, *extra: str) -> dict:
        """The build again on its cached tree, its kept output removed so that the assembler runs."""
        shutil.rmtree(store / "outputs", ignore_errors=True)
        return self.build(path, store, output, *extra)

    def tree_size(self, store: Path, tree: str) -> int:
        args = subprocess.run([*CLI, "store", "podman-args", "--store", str(store)], capture_output=True,
                              text=True, check=True).stdout.split()
        return int(subprocess.run(["podman", *args, "image", "inspect", "--format", "{{.Size}}",
                                   f"localhost/osbuild-oci/trees:{tree}"], capture_output=True, text=True,
                                  check=True).stdout)

    def boot(self, disk: Path, flags: list[str], passphrase: bool) -> float:
        """Seconds from `osbuild-oci boot` to the serial login prompt (the passphrase typed when asked)."""
        log = self.work / "serial.log"
        with open(log, "wb") as console:
            vm = subprocess.Popen([*CLI, "boot", str(disk), *flags], stdin=subprocess.PIPE, stdout=console,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
        start = time.monotonic()
        try:
            if passphrase:
                self._wait(vm, log, rb"Please unlock disk", start)
                vm.stdin.write(PASSPHRASE.encode() + b"\n")
                vm.stdin.flush()
            self._wait(vm, log, rb"login:", start)
            return time.monotonic() - start
        finally:
            os.killpg(vm.pid, signal.SIGTERM)
            vm.wait()

    @staticmethod
    def _wait(vm: subprocess.Popen, log: Path, pattern: bytes, start: float) -> None:
        while not re.search(pattern, log.read_bytes()):
            if vm.poll() is not None or time.monotonic() - start > BOOT_LIMIT:
                sys.exit(f"no {pattern!r} on the console:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.5)


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def virtual(path: Path) -> int:
    info = subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True, text=True,
                          check=True).stdout
    return json.loads(info)["virtual-size"]


def mib(size: float) -> str:
    return f"{size / 2 ** 20:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/bench-disks"))
    work = parser.parse_args().work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    bench = Bench(work)
    rows = []

    first = bench.build(pipeline("encrypted-btrfs"), work / "store-empty", work / "out-empty",
                        *bench.secret_args("encrypted-btrfs"))
    rows.append(("encrypted-btrfs, cold, empty package cache", f"{first['wall']:.1f} s", "", "", ""))
    shutil.rmtree(work / "store-empty")
    flags = {"encrypted-btrfs": ["--uefi"], "secureboot": ["--secure-boot"],
             "uki": ["--secure-boot", "--enroll", str(bench.secrets / "db.crt")]}
    for name in EXAMPLES:
        store, output = work / f"store-{name}", work / f"out-{name}"
        cold = bench.build(pipeline(name), store, output, *bench.secret_args(name))
        cached = bench.assembler_only(pipeline(name), store, output, *bench.secret_args(name))
        disk = output / disk_name(name)
        login = bench.boot(disk, flags[name], name == "encrypted-btrfs")
        tree = bench.tree_size(store, cold["tree"])
        rows.append((f"{name}: cold / cached tree (assembler)", f"{cold['wall']:.1f} s",
                     f"{cached['wall']:.1f} s ({cached['assembler']:.1f} s)", f"{login:.1f} s",
                     f"{mib(allocated(disk))} qcow2 of a {mib(virtual(disk))} disk, tree {mib(tree)}"))

    # Encryption's cost: the encrypted example's layout with and without encrypt, on the same cached tree.
    plain = json.loads(pipeline("encrypted-btrfs").read_text())
    for part in plain["assembler"]["options"]["partitions"]:
        part.pop("encrypt", None)
    unencrypted = work / "unencrypted.json"
    unencrypted.write_text(json.dumps(plain))
    store = work / "store-encrypted-btrfs"
    without = bench.assembler_only(unencrypted, store, work / "out-unencrypted")
    with_key = bench.assembler_only(pipeline("encrypted-btrfs"), store, work / "out-encrypted-btrfs",
                                    *bench.secret_args("encrypted-btrfs"))
    sizes = [allocated(work / out / disk_name("encrypted-btrfs")) for out in ("out-unencrypted", "out-encrypted-btrfs")]
    rows.append(("encryption: assembler without / with encrypt", f"{without['assembler']:.1f} s",
                 f"{with_key['assembler']:.1f} s", "", f"{mib(sizes[0])} / {mib(sizes[1])} qcow2"))

    # The plain-shell way for the UKI disk: once to fill its .deb cache and tool root, then timed.
    for attempt in ("plain shell, UKI disk, empty .deb cache and tool root",
                    "plain shell, UKI disk (mmdebstrap + ukify + repart by hand), warm caches"):
        start = time.monotonic()
        subprocess.run(["sh", str(REPO / "benchmarks" / "plain-shell-disk.sh"), str(work / "out-plain"),
                        str(bench.secrets / "db.key"), str(bench.secrets / "db.crt"), str(work / "plain-debs"),
                        str(work / "plain-tools")], check=True, capture_output=True)
        rows.append((attempt, f"{time.monotonic() - start:.1f} s", "", "", ""))
    plain_disk = work / "out-plain" / "disk.qcow2"
    login = bench.boot(plain_disk, flags["uki"], False)
    rows[-1] = (*rows[-1][:3], f"{login:.1f} s",
                f"{mib(allocated(plain_disk))} qcow2 of a {mib(virtual(plain_disk))} disk")

    print("| what | cold | cached tree (assembler) | boot to login (TCG) | size on the host |")
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
