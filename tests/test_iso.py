"""The live ISO: pipelines/debian-bookworm-live-iso.json, built rootless, boots from a CD-ROM on BIOS and UEFI.

The ISO is built once, by an ordinary user (the normal case), and that ISO
boots both times; a second assembly of the same cached tree must give the same
bytes.  The assembler's options are checked before anything runs, and a tree
whose initrd cannot boot a live system is refused with one line.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import REPO, Rootless, boot_to_login, run_build, sha256

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="makes its own unprivileged user: run the suite as root")]

LIVE = REPO / "pipelines" / "debian-bookworm-live-iso.json"
# What a logged-in user checks: the root is live-boot's overlay on the squashfs, read from the ISO 9660 medium.
MOUNTS = "findmnt -n -o FSTYPE /; findmnt -n -o FSTYPE /run/live/medium; ls /run/live/medium/live"


@pytest.fixture(scope="module")
def live_iso(rootless: Rootless) -> dict:
    """The example built by the unprivileged user in a store of its own: its build, store and ISO."""
    store, output = rootless.home / "iso-store", rootless.home / "iso-out"
    rootless.remove(store)
    rootless.remove(output)
    built = rootless.build(rootless.src / LIVE.relative_to(REPO), store, output=output)
    assert built["proc"].returncode == 0, built["proc"].stderr[-3000:]
    yield {**built, "store": store, "iso": output / json.loads(LIVE.read_text())["assembler"]["options"]["filename"]}
    rootless.run("osbuild-oci", "store", "delete", "--store", store, check=False)
    rootless.remove(store)
    rootless.remove(output)


def test_the_rootless_iso_boots_from_a_cdrom_on_bios_and_uefi(live_iso, rootless, tmp_path):
    """Both boots run at once, one CPU each: on two cores that is faster than one after the other."""
    def boot(firmware: str) -> str:
        then = MOUNTS if firmware == "bios" else None
        return boot_to_login(live_iso["iso"], firmware, tmp_path, cli=rootless.argv("osbuild-oci"),
                             hostname="debian-live", then=then, boot_args=("--", "-smp", "1"))
    with ThreadPoolExecutor(2) as pool:
        bios, uefi = pool.map(boot, ("bios", "uefi"))
    for console in bios, uefi:
        assert "Debian GNU/Linux 12 debian-live ttyS0" in console
        assert "boot=live components" in console, "the kernel got the ISO's own command line"
    assert "UEFI QEMU DVD-ROM" in uefi, "OVMF booted the CD-ROM"
    shown = re.search(r"==>\r?\n(.*?)<==", bios, re.S)[1].split()
    assert shown == ["overlay", "iso9660", "filesystem.squashfs", "initrd.img", "vmlinuz"], shown


def test_assembling_the_same_tree_again_gives_the_same_iso(live_iso, rootless):
    """Another file name is another assembler output, so the assembler runs again on the cached tree."""
    pipeline = json.loads(LIVE.read_text())
    pipeline["assembler"]["options"]["filename"] = "again.iso"
    path, output = rootless.home / "again.json", rootless.home / "again-out"
    path.write_text(json.dumps(pipeline))
    rootless.remove(output)
    again = rootless.build(path, live_iso["store"], output=output)
    assert again["proc"].returncode == 0, again["proc"].stderr[-3000:]
    assert again["ran"] == [] and [e["cached"] for e in again["events"] if e["event"] == "assembler-done"] == [False]
    assert sha256(output / "again.iso") == sha256(live_iso["iso"])
    rootless.remove(output)
    rootless.remove(path)


@pytest.mark.parametrize("top, options, error", [
    ({}, {"volid": "debian live"}, "assembler.options.volid: 'debian live' is not of the form allowed here"),
    ({}, {"volid": "X" * 33}, "assembler.options.volid:"),
    ({}, {"kernel_opts": "quiet\nset root=(hd0)"}, "assembler.options.kernel_opts:"),
    ({}, {"kernel_opts": "quiet; reboot"},
     "assembler.options.kernel_opts: 'quiet; reboot' is not of the form allowed here"),
    ({}, {"compression": {"method": "bzip2"}}, "assembler.options.compression: {'method': 'bzip2'} matches none "
                                               "of the allowed forms: {\"method\": \"zstd\", \"level\": 1 to 22"),
    ({}, {"compression": {"method": "xz", "level": 6}}, "assembler.options.compression: {'method': 'xz', 'level': 6} "
                                                       "matches none of the allowed forms"),
    ({}, {"compression": {"method": "gzip", "level": 12}},
     "assembler.options.compression.level: 12 is greater than the maximum of 9"),
    ({}, {"compression": "xz"}, "assembler.options.compression: expected object, got string 'xz'"),
    ({}, {"filename": "../live.iso"}, "assembler.options.filename: '../live.iso' is not of the form allowed here"),
    ({}, {"size": "2G"}, "assembler.options.size: unknown property"),
    ({"arch": "arm64"}, {}, "assembler.options.arch: 'arm64' is not one of 'amd64'"),
])
def test_bad_options_are_refused_before_anything_runs(top, options, error, stage_images, tmp_path):
    pipeline = {**json.loads(LIVE.read_text()), **top}
    pipeline["assembler"]["options"].update(options)
    store = tmp_path / "store"
    refused = run_build(pipeline, store, tmp_path / "out")
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and error in lines[0], refused.stderr
    assert not store.exists(), "a refused build leaves no store behind"


def test_a_tree_without_live_boot_is_refused_in_one_line(flagship, shared_store, tmp_path):
    """The flagship's tree has a kernel but no live-boot: its initrd would stop at an initramfs prompt."""
    result, _ = flagship
    pipeline = json.loads((REPO / "pipelines" / "debian-bookworm-qcow2.json").read_text())
    pipeline["assembler"] = {"name": "org.osbuild-oci.iso", "options": {"filename": "live.iso"}}
    refused = run_build(pipeline, shared_store, tmp_path / "out")
    assert refused.returncode == 1 and refused.ran == []
    assert "the tree's initrd has no live-boot (no scripts/live in it): install live-boot" in refused.stderr
    assert not (tmp_path / "out" / "live.iso").exists()
