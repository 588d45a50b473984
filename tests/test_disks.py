"""Disks people ship: a described layout, LUKS2, btrfs, Secure Boot, systemd-boot with a UKI, a root that grows, and
the clouds' formats.

The three trixie examples are built by the unprivileged test user in one store, as the README shows them: they
share their first seven stages, so the user builds one trixie tree, the UKI example only runs the assembler on
it and the Secure Boot example adds two stages.  Each disk is then booted from that rootless build under qemu
(TCG): the encrypted one with its passphrase typed on the serial console, the Secure Boot one on OVMF's
Microsoft-keyed firmware, the UKI one with its own db key enrolled and on a disk three times its size.  The
formats are made from one small cached tree, assembler only, and read back as each cloud documents them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from helpers import (GPT, REPO, SECTOR, boot_to_login, disk_tool, mkdir_stage, osbuild, partitions, qcow2_file_stat,
                     run_build, sha256)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="builds as its own unprivileged user: run as root")]

# As the user reads them: relative to its own copy of the checkout (the suite's may be in root's 0700 home).
EXAMPLES = {name: Path("pipelines") / f"debian-trixie-{name}-qcow2.json"
            for name in ("encrypted-btrfs", "uki", "secureboot")}
PASSPHRASE = "correct horse battery staple"
UUID = "0b6c3a5e-1f2d-4c8b-9a7e-5d4c3b2a1f00"
GIB = 1024 ** 3
GPT_TYPES = {"xbootldr": "BC13C2FF-59E6-4262-A352-B275FD6F7172", "swap": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"}


@pytest.fixture(scope="module")
def secrets(rootless) -> dict[str, Path]:
    """The LUKS passphrase (written as `echo` writes it, with a newline) and a db key and certificate of the user's
    own, files only the user reads."""
    folder = rootless.home / "disks-secrets"
    rootless.remove(folder)
    folder.mkdir(mode=0o700)
    (folder / "luks").write_text(PASSPHRASE + "\n")
    subprocess.run(["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-sha256", "-days", "3650", "-nodes",
                    "-subj", "/CN=osbuild-oci test db key/", "-keyout", str(folder / "db.key"),
                    "-out", str(folder / "db.crt")], check=True, capture_output=True)
    for path in folder.iterdir():
        path.chmod(0o600)
    subprocess.run(["chown", "-R", f"{rootless.name}:{rootless.name}", str(folder)], check=True)
    yield {"luks": folder / "luks", "db-key": folder / "db.key", "db-crt": folder / "db.crt"}
    rootless.remove(folder)


@pytest.fixture(scope="module")
def examples(rootless, secrets) -> dict[str, dict]:
    """The three examples built by the user in one store, in the README's order; each one's build and disk."""
    store = rootless.home / "disks-store"
    rootless.remove(store)
    given = {"encrypted-btrfs": ["--secret", f"luks={secrets['luks']}", "--lock", rootless.home / "disks.lock"],
             "uki": ["--secret", f"db-key={secrets['db-key']}", "--secret", f"db-crt={secrets['db-crt']}"],
             "secureboot": []}
    built = {}
    for name, extra in given.items():
        output = rootless.home / f"disks-{name}"
        rootless.remove(output)
        result = rootless.build(EXAMPLES[name], store, *extra, output=output)
        assert result["proc"].returncode == 0, result["proc"].stderr[-3000:]
        filename = json.loads((REPO / EXAMPLES[name]).read_text())["assembler"]["options"]["filename"]
        built[name] = {**result, "disk": output / filename, "output": output}
    yield {"store": store, **built}
    rootless.run("osbuild-oci", "store", "delete", "--store", store, check=False)
    for name in given:
        rootless.remove(built[name]["output"])
    rootless.remove(rootless.home / "disks.lock")


def raw_of(qcow2: Path, tmp: Path) -> Path:
    raw = tmp / f"{qcow2.stem}.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(qcow2), str(raw)], check=True)
    return raw


def test_the_examples_share_one_tree_and_the_passphrase_is_kept_nowhere(examples, rootless):
    """The UKI example reuses the encrypted one's tree whole, the Secure Boot one adds its two stages; the LUKS
    passphrase reaches the assembler alone: not the output, the logs, the lock file, the SBOM or the store."""
    encrypted, uki, secure = examples["encrypted-btrfs"], examples["uki"], examples["secureboot"]
    assert len(encrypted["ran"]) == 7 and uki["ran"] == [], uki["ran"]
    assert uki["tree"] == encrypted["tree"]
    assert secure["ran"] == ["org.osbuild.fstab", "org.osbuild.grub2"]
    texts = {"stdout": encrypted["proc"].stdout, "stderr": encrypted["proc"].stderr,
             "lock file": (rootless.home / "disks.lock").read_text(),
             "SBOM": Path(f"{encrypted['disk']}.spdx.json").read_text()}
    for name, text in texts.items():
        assert PASSPHRASE not in text, f"the passphrase is in the {name}"
    for where in (examples["store"], encrypted["disk"]):
        found = subprocess.run(["grep", "-rlaF", PASSPHRASE, str(where)], capture_output=True, text=True)
        assert found.stdout == "", f"the passphrase is in {found.stdout}"


def test_the_encrypted_btrfs_disk_asks_for_its_passphrase_and_boots_with_root_on_luks(examples, rootless, tmp_path):
    """ESP, /boot, swap and a LUKS2 root on btrfs with @ and @home, as the pipeline describes them; the booted
    system unlocks root with the passphrase typed on the serial console and mounts the rest from the fstab and
    crypttab the assembler wrote from the same description."""
    disk = examples["encrypted-btrfs"]["disk"]
    table = partitions(raw_of(disk, tmp_path))
    assert [(p["name"], p["type"]) for p in table["partitions"]] == [
        ("bios", GPT["bios"]), ("esp", GPT["esp"]), ("boot", GPT_TYPES["xbootldr"]), ("swap", GPT_TYPES["swap"]),
        ("root", GPT["root"])]
    console = boot_to_login(disk, "uefi", tmp_path, cli=rootless.argv("osbuild-oci"),
                            answers=[(rb"Please unlock disk root", PASSPHRASE)],
                            then="echo debian | sudo -S cryptsetup status root; "
                                 "findmnt -nr -o SOURCE,FSTYPE,OPTIONS /; "
                                 "findmnt -nr -o SOURCE,OPTIONS /home; findmnt -nr -o FSTYPE /boot; "
                                 "findmnt -nr -o FSTYPE /boot/efi; cat /proc/swaps")
    shown = console[console.rindex("==>"):]
    assert "/dev/mapper/root is active and is in use." in shown, shown
    assert re.search(r"type:\s+LUKS2", shown), shown
    assert re.search(r"/dev/mapper/root(\[/@\])?\s+btrfs\s+\S*subvol=/@(,|\s|$)", shown), shown
    assert re.search(r"/dev/mapper/root(\[/@home\])?\s+\S*subvol=/@home", shown), shown
    assert "/dev/vda4" in shown and "partition" in shown, "swap is on"
    assert re.search(r"ext4\s+vfat", shown), "/boot and /boot/efi are mounted"


def test_the_secure_boot_disk_carries_debians_signed_chain_and_boots_with_secure_boot_enforced(examples, rootless,
                                                                                             tmp_path):
    disk = raw_of(examples["secureboot"]["disk"], tmp_path)
    esp = [p for p in partitions(disk)["partitions"] if p["name"] == "esp"][0]
    where = f"IMG@@{esp['start'] * SECTOR}"
    listing = disk_tool(disk, "mdir", "-b", "-/", "-i", where, "::/EFI")
    assert sorted(line for line in listing.split() if not line.endswith("/")) == [
        "::/EFI/BOOT/BOOTX64.EFI", "::/EFI/BOOT/grubx64.efi", "::/EFI/BOOT/mmx64.efi", "::/EFI/debian/grub.cfg"]
    assert "fbx64" not in listing.lower(), "fallback would reset in a loop without a BOOTX64.CSV"
    assert disk_tool(disk, "mtype", "-i", where, "::/EFI/debian/grub.cfg") == (
        "search.fs_uuid 76a22bf4-f153-4541-b6c7-0332c0dfaeac root\nset prefix=($root)'/boot/grub'\n"
        "configfile $prefix/grub.cfg\n")
    console = boot_to_login(examples["secureboot"]["disk"], "uefi", tmp_path, cli=rootless.argv("osbuild-oci"),
                            boot_args=("--secure-boot",))
    assert "secureboot: Secure boot enabled" in console
    assert "Debian Secure Boot CA" in console, "the kernel trusts Debian's CA through shim"


def test_unsigned_grub_is_refused_under_secure_boot(flagship, tmp_path):
    """The default layout's own GRUB (grub-mkimage, unsigned) under the same firmware: the firmware refuses it."""
    _, qcow2 = flagship
    console = boot_to_login(qcow2, "uefi", tmp_path, boot_args=("--secure-boot",), expect=rb"Access Denied")
    assert "Linux version" not in console


def test_the_uki_disk_boots_with_its_own_db_key_enrolled_and_grows_into_a_larger_disk(examples, secrets, rootless,
                                                                                      tmp_path):
    """systemd-boot and the UKI, signed with the user's db key, boot with Secure Boot enforced once that key is in
    db; written to a 6 GiB disk, the 2 GiB image's root fills it at its first boot (systemd-repart, growfs)."""
    crt = secrets["db-crt"]
    console = boot_to_login(examples["uki"]["disk"], "uefi", tmp_path, cli=rootless.argv("osbuild-oci"),
                            boot_args=("--secure-boot", "--enroll", str(crt), "--size", "6G"),
                            then="df -B1 --output=size / | tail -1; findmnt -n -o SOURCE /")
    assert "secureboot: Secure boot enabled" in console
    assert "Kernel is locked down from EFI Secure Boot" in console
    size, source = console[console.rindex("==>"):].split("\n")[1:3]
    assert int(size) > 5.3 * GIB, f"root is {int(size) / GIB:.2f} GiB on a 6 GiB disk"
    assert source.strip() == "/dev/vda2"


@pytest.mark.parametrize("name", ["uki", "secureboot"], ids=["described-layout", "default-layout"])
def test_a_rootless_build_keeps_owners_and_modes_on_the_disk(name, examples, rootless, tmp_path):
    """Both ways a disk is filled (systemd-repart for a described layout, mkfs.ext4 -d for the default one) ran as
    the root of the user's namespace, so the filesystem has the tree's owners and modes: group shadow's
    /etc/shadow, a setuid su, the user's own home."""
    paths = ("/etc/shadow", "/usr/bin/su", "/home/debian")
    tree = rootless.podman(examples["store"], "run", "--rm", "--network=none",
                           f"localhost/osbuild-oci/trees:{examples[name]['tree']}", "stat", "-c", "%f %u %g",
                           *paths).stdout.split("\n")
    in_tree = [(int(mode, 16), int(uid), int(gid)) for mode, uid, gid in (line.split() for line in tree[:3])]
    assert in_tree[:2] == [(0o100640, 0, 42), (0o104755, 0, 0)] and in_tree[2][1:] == (1000, 1000), in_tree
    assert [qcow2_file_stat(examples[name]["disk"], tmp_path, path) for path in paths] == in_tree


def test_an_unchanged_example_copies_the_output_the_users_store_kept(examples, rootless):
    """Built again by the user, the Secure Boot example runs nothing, the assembler's output comes from the store,
    and it is byte-identical to the disk written the first time."""
    again_output = rootless.home / "disks-again"
    rootless.remove(again_output)
    try:
        again = rootless.build(EXAMPLES["secureboot"], examples["store"], output=again_output)
        assert again["proc"].returncode == 0, again["proc"].stderr[-3000:]
        assert again["ran"] == [] and [e["cached"] for e in again["events"] if e["event"] == "assembler-done"] == [True]
        disk = examples["secureboot"]["disk"]
        assert sha256(again_output / disk.name) == sha256(disk), "the user's store kept the output as written"
    finally:
        rootless.remove(again_output)


def test_lvm_is_refused_before_anything_runs(tmp_path, stage_images):
    pipeline = tmp_path / "lvm.json"
    lvm = formats_pipeline("raw")
    lvm["assembler"]["options"] = {"filename": "d.raw", "root_fs_uuid": UUID,
                                   "partitions": [{"type": "root"}, {"type": "lvm"}]}
    pipeline.write_text(json.dumps(lvm))
    proc = osbuild("build", pipeline, "--store", tmp_path / "store", "-o", tmp_path / "out")
    assert proc.returncode == 2
    assert "assembler.options.partitions[1].type: LVM is refused: its volume groups are made and filled through " \
           "device-mapper, which needs root" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "store").exists()


def test_an_empty_keyslot_waits_for_the_target_machines_key(build, tmp_path):
    """empty_slot: the passphrase (from a file ending in a newline, typed without it) and an empty one both open
    the partition, the wrong one does not; systemd-cryptenroll --wipe-slot=empty takes the empty one away later."""
    key = tmp_path / "luks"
    key.write_text(PASSPHRASE + "\n")
    pipeline = formats_pipeline("raw")
    pipeline["assembler"]["options"] = {"filename": "d.raw", "format": "raw", "root_fs_uuid": UUID, "size": "256M",
                                        "partitions": [{"type": "root", "encrypt": {"key": {"secret": "luks"},
                                                                                    "empty_slot": True}}]}
    result = build(pipeline, None, tmp_path / "out", "--secret", f"luks={key}")
    assert result.returncode == 0, result.stderr[-3000:]
    disk = tmp_path / "out" / "d.raw"
    opened = disk_tool(disk, "sh", "-c", "dd if=IMG of=/tmp/h bs=1M skip=1 count=16 status=none; "
                                         "cryptsetup luksDump /tmp/h | grep -c ': luks2'; "
                                         f"for p in '' 'wrong' '{PASSPHRASE}'; do echo \"$p\" | "
                                         "cryptsetup open --test-passphrase /tmp/h && echo yes || echo no; done")
    assert opened.split() == ["2", "yes", "no", "yes"], opened


# -- the clouds' formats ------------------------------------------------------------------------

def filename(disk_format: str) -> str:
    return "disk.tar.gz" if disk_format == "gce" else f"disk.{disk_format}"


def formats_pipeline(disk_format: str, **options) -> dict:
    """A small tree's 1 GiB data disk (no boot loader) in the format."""
    return {"name": "formats", "stages": [mkdir_stage("a disk in every format")],
            "assembler": {"name": "org.osbuild-oci.disk", "options": {
                "filename": filename(disk_format), "format": disk_format, "root_fs_uuid": UUID, "size": "1G",
                "bios": False, "uefi": False, **options}}}


def qemu_info(path: Path, *how: str) -> dict:
    return json.loads(subprocess.run(["qemu-img", "info", "--output=json", *how, str(path)], check=True,
                                     capture_output=True, text=True).stdout)


def digest(stream) -> str:
    h = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        h.update(chunk)
    return h.hexdigest()


def test_the_clouds_formats_follow_their_documented_rules(shared_store, stage_images, registry, tmp_path):
    """Each format from the same cached tree, assembler only, read back as its cloud documents it; each holds the
    raw disk's bytes.  A format is cached like any output and --cache-to carries it."""
    disks = {}
    for fmt, extra in (("raw", {}), ("vhd", {}), ("gce", {}), ("vmdk", {"subformat": "streamOptimized"}),
                       ("raw.xz", {}), ("raw.zst", {})):
        result = run_build(formats_pipeline(fmt, **extra), shared_store, tmp_path / fmt)
        assert result.returncode == 0, result.stderr[-3000:]
        disks[fmt] = tmp_path / fmt / filename(fmt)
    raw = sha256(disks["raw"])

    # Azure: a fixed VHD, its virtual size a whole number of MiB, the raw disk followed by a 512-byte footer.
    vhd = disks["vhd"]
    # A fixed VHD has its footer at the end only: qemu-img (like Azure) is told the format.
    assert qemu_info(vhd, "-f", "vpc")["virtual-size"] == GIB
    assert vhd.stat().st_size == GIB + 512
    with open(vhd, "rb") as f:
        f.seek(GIB)
        footer = f.read()
    assert footer[:8] == b"conectix"
    assert int.from_bytes(footer[60:64], "big") == 2, "disk type 2: fixed"
    assert int.from_bytes(footer[48:56], "big") == GIB, "current size"
    with open(vhd, "rb") as f:
        assert hashlib.sha256(f.read(GIB)).hexdigest() == raw

    # GCE: a gzip'd GNU tar (oldgnu), sparse, holding exactly disk.raw.
    with gzip.open(disks["gce"]) as f:
        header = f.read(512)
    assert header[257:265] == b"ustar  \0", "GNU tar's oldgnu format"
    assert header[156:157] == b"S", "a sparse member"
    with tarfile.open(disks["gce"]) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["disk.raw"] and members[0].issparse()
        assert members[0].size == GIB
        assert digest(tar.extractfile(members[0])) == raw

    # AWS import and vSphere: a streamOptimized VMDK.
    vmdk = qemu_info(disks["vmdk"])
    assert vmdk["format"] == "vmdk" and vmdk["format-specific"]["data"]["create-type"] == "streamOptimized"
    with open(disks["vmdk"], "rb") as f:
        assert b'createType="streamOptimized"' in f.read(4096)
    converted = tmp_path / "vmdk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(disks["vmdk"]), str(converted)], check=True)
    assert sha256(converted) == raw

    # Bare metal: the raw disk compressed.
    with lzma.open(disks["raw.xz"]) as f:
        assert digest(f) == raw
    assert disk_tool(disks["raw.zst"], "sh", "-c", "zstd -dc IMG | sha256sum").split()[0] == raw

    # Cached like any output, and carried by --cache-to to a store that never built it.
    cache = f"{registry[0]}/disks/trees"
    again = run_build(formats_pipeline("gce"), shared_store, tmp_path / "again", "--cache-to", cache,
                      "--tls-verify=false")
    assert [e["cached"] for e in again.of("assembler-done")] == [True], again.stderr[-3000:]
    fresh = run_build(formats_pipeline("gce"), tmp_path / "fresh-store", tmp_path / "fresh", "--cache-from", cache,
                      "--tls-verify=false")
    assert fresh.returncode == 0 and fresh.ran == [], fresh.stderr[-3000:]
    assert [(e["cached"], e["source"]) for e in fresh.of("assembler-done")] == [(True, cache)]
    assert sha256(tmp_path / "fresh" / filename("gce")) == sha256(disks["gce"])
