"""The stage programs themselves: the stdin contract, hostile paths, apt's signature checks, the disk formats.

Most tests need no Debian tree: the stages run on a tree made by
org.osbuild-oci.files, or the stage image is run directly with podman on a
directory, as the orchestrator would bind-mount a tree.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from helpers import tool_podman

UUID = "0b6c3a5e-1f2d-4c8b-9a7e-5d4c3b2a1f00"
PREFIX = "localhost/osbuild-oci"
DEBOOTSTRAP = {"name": "org.osbuild.debootstrap", "options": {"suite": "bookworm", "variant": "minbase"}}


def run_stage(name: str, stdin: str, tree: Path | None = None) -> subprocess.CompletedProcess:
    """Run a stage image directly, as the orchestrator does: document on stdin, tree (optional) bind-mounted."""
    mount = ["-v", f"{tree}:/run/osbuild/tree"] if tree else []
    return tool_podman("run", "--rm", "-i", "--network=none", "-e", f"OSBUILD_STAGE={name}", *mount,
                       f"{PREFIX}/{name}:latest", input=stdin, capture_output=True, text=True)


def document(options: dict) -> str:
    return json.dumps({"tree": "/run/osbuild/tree", "options": options})


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


# --- the stdin contract (stagelib's main) ---

def test_a_document_that_is_not_json_is_exit_2(stage_images):
    proc = run_stage("org.osbuild.noop", "{not json")
    assert proc.returncode == 2
    assert "bad input document on stdin" in one_line(proc.stderr)


def test_a_document_without_tree_is_exit_2(stage_images):
    proc = run_stage("org.osbuild.noop", json.dumps({"options": {}}))
    assert proc.returncode == 2
    assert 'bad input document on stdin: expected an object with "tree"' in one_line(proc.stderr)


def test_a_bug_in_the_stage_keeps_its_traceback(stage_images, tmp_path):
    # Options the schema would refuse reach the body: its KeyError is the stage's bug, not bad input.
    proc = run_stage("org.osbuild.mkdir", document({"paths": [{"nopath": "/x"}]}), tmp_path)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "KeyError: 'path'" in proc.stderr
    assert "bad input document" not in proc.stderr


def test_a_stage_error_is_one_line_exit_1(stage_images, tmp_path):
    proc = run_stage("org.osbuild.hostname", document({"hostname": "box"}), tmp_path)
    assert proc.returncode == 1
    assert one_line(proc.stderr) == \
        "org.osbuild.hostname: the tree has no /etc; start the pipeline with org.osbuild.debootstrap"


# --- hostile paths ---

HOSTILE = [
    ("org.osbuild.mkdir", {"paths": [{"path": "/../../../etc/x"}]}, "stages[0].options.paths[0].path:"),
    ("org.osbuild.mkdir", {"paths": [{"path": "/srv/.."}]}, "stages[0].options.paths[0].path:"),
    ("org.osbuild.users", {"users": {"alice": {"home": "/../../root"}}}, "stages[0].options.users.alice.home:"),
    ("org.osbuild.users", {"users": {"alice": {"shell": "/bin/../../sh"}}}, "stages[0].options.users.alice.shell:"),
    ("org.osbuild-oci.files", {"files": [{"path": "/srv/../../etc/passwd", "content": "x"}]},
     "stages[0].options.files[0].path:"),
    ("org.osbuild-oci.files", {"symlinks": [{"path": "/a/../../b", "target": "/"}]},
     "stages[0].options.symlinks[0].path:"),
    ("org.osbuild.script", {"script": "true", "interpreter": "/../bin/sh"}, "stages[0].options.interpreter:"),
    ("org.osbuild.fstab", {"filesystems": [{"label": "x", "path": "/mnt/../..", "vfs_type": "ext4"}]},
     "stages[0].options.filesystems[0].path:"),
]


@pytest.mark.parametrize("stage,options,where", HOSTILE, ids=[f"{s}-{i}" for i, (s, _, _) in enumerate(HOSTILE)])
def test_dot_dot_in_a_path_is_refused_by_the_schema(build, stage, options, where):
    result = build({"name": "hostile", "stages": [{"name": stage, "options": options}]})
    assert result.returncode == 2, result.stderr
    assert where in one_line(result.stderr)
    assert result.of("stage-start") == []


def test_symlinks_in_the_tree_never_lead_a_write_outside_it(build, tmp_path):
    """/srv/link -> /, /srv/up -> ../../.., /etc -> ../../../../real: writes through them stay in the tree."""
    pipeline = {"name": "escape", "stages": [
        {"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "/real"}]}},
        {"name": "org.osbuild-oci.files", "options": {"symlinks": [
            {"path": "/srv/link", "target": "/"}, {"path": "/srv/up", "target": "../../.."},
            {"path": "/etc", "target": "../../../../real"}]}},
        {"name": "org.osbuild.mkdir", "options": {"paths": [
            {"path": "/srv/link/made-by-mkdir"}, {"path": "/srv/up/made-through-up"}]}},
        {"name": "org.osbuild-oci.files", "options": {"files": [
            {"path": "/srv/link/written-by-files", "content": "inside\n"}]}},
        {"name": "org.osbuild.hostname", "options": {"hostname": "inside"}}],
        "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}}
    result = build(pipeline, output=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    with tarfile.open(tmp_path / "out" / "tree.tar") as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert members["./made-by-mkdir"].isdir()
        assert members["./made-through-up"].isdir()
        assert tar.extractfile("./written-by-files").read() == b"inside\n"
        assert tar.extractfile("./real/hostname").read() == b"inside\n"
        assert b"127.0.1.1\tinside\n" in tar.extractfile("./real/hosts").read()
        assert (members["./srv/link"].issym(), members["./srv/link"].linkname) == (True, "/")
        assert (members["./etc"].issym(), members["./etc"].linkname) == (True, "../../../../real")


def test_a_symlink_loop_is_one_clear_line(build):
    result = build({"name": "loop", "stages": [
        {"name": "org.osbuild-oci.files", "options": {"symlinks": [{"path": "/srv/loop", "target": "loop"}]}},
        {"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "/srv/loop/x"}]}}]})
    assert result.returncode == 1
    assert "org.osbuild.mkdir: /srv/loop/x: too many levels of symbolic links in the tree" in result.stderr
    assert "Traceback" not in result.stderr


# --- org.osbuild.mkdir with osbuild's options ---

def test_mkdir_takes_osbuilds_options_and_defaults(build, tmp_path):
    result = build({"name": "mkdir", "stages": [{"name": "org.osbuild.mkdir", "options": {"paths": [
        {"path": "/default"}, {"path": "/private", "mode": 0o700},
        {"path": "/a/b/c", "parents": True, "mode": 0o750}]}}],
        "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}}, output=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    with tarfile.open(tmp_path / "out" / "tree.tar") as tar:
        modes = {m.name: m.mode for m in tar.getmembers()}
    # osbuild's default mode 0o777 less the umask 022; parents get the default, as os.makedirs gives them.
    assert (modes["./default"], modes["./private"], modes["./a/b/c"], modes["./a"]) == (0o755, 0o700, 0o750, 0o755)


def test_mkdir_without_parents_or_exist_ok_fails_as_osbuilds_does(build):
    no_parent = build({"name": "m", "stages": [{"name": "org.osbuild.mkdir", "options": {"paths": [
        {"path": "/missing/child"}]}}]})
    assert no_parent.returncode == 1
    assert "No such file or directory" in no_parent.stderr and "Traceback" not in no_parent.stderr
    twice = build({"name": "m", "stages": [{"name": "org.osbuild.mkdir", "options": {"paths": [
        {"path": "/srv"}, {"path": "/srv"}]}}]})
    assert twice.returncode == 1
    assert "File exists" in twice.stderr
    ok = build({"name": "m", "stages": [{"name": "org.osbuild.mkdir", "options": {"paths": [
        {"path": "/srv"}, {"path": "/srv", "exist_ok": True}]}}]})
    assert ok.returncode == 0, ok.stderr


# --- apt refuses sources without signature checks unless told ---

UNSIGNED = "deb [trusted=yes] http://deb.debian.org/debian bookworm main"


@pytest.mark.parametrize("line", [UNSIGNED, "deb [ arch=amd64 allow-insecure=yes ] http://example.org/d stable main",
                                  "deb-src [allow-weak=yes] http://example.org/d stable main",
                                  "deb [allow-downgrade-to-insecure=yes] http://example.org/d stable main"])
def test_apt_schema_refuses_unsigned_sources(build, line):
    result = build({"name": "apt", "stages": [{"name": "org.osbuild.apt", "options": {"sources": [line]}}]})
    assert result.returncode == 2, result.stderr
    assert "stages[0].options.sources[0]:" in one_line(result.stderr)
    assert result.of("stage-start") == []


def test_apt_program_refuses_unsigned_sources_too(stage_images, tmp_path):
    """Should the schema be bypassed, the stage itself refuses before apt runs."""
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/apt-get").touch()
    proc = run_stage("org.osbuild.apt", document({"sources": [UNSIGNED]}), tmp_path)
    assert proc.returncode == 1
    assert one_line(proc.stderr) == ("org.osbuild.apt: sources[0] turns off apt's signature checks (trusted); "
                                     "set unsigned_sources_allowed to true if that is really meant")


@pytest.mark.slow
def test_apt_unsigned_sources_allowed_warns(build):
    result = build({"name": "apt", "stages": [DEBOOTSTRAP, {"name": "org.osbuild.apt", "options": {
        "sources": [UNSIGNED], "unsigned_sources_allowed": True, "packages": ["hello"]}}]})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "org.osbuild.apt: warning: sources[0] turns off apt's signature checks (trusted)" in result.stderr


# --- the disk assembler's formats ---

def small_disk(disk_format: str, **options) -> dict:
    return {"name": "disk", "stages": [{"name": "org.osbuild-oci.files", "options": {"files": [
        {"path": "/etc/os-release", "content": "ID=test\n"}]}}],
        "assembler": {"name": "org.osbuild-oci.disk", "options": {
            "filename": f"disk.{disk_format}", "format": disk_format, "root_fs_uuid": UUID, "size": "64M",
            "bios": False, "uefi": False, **options}}}


@pytest.mark.parametrize("disk_format", ["qcow2", "raw", "vmdk", "vhdx"])
def test_disk_formats(build, tmp_path, disk_format):
    result = build(small_disk(disk_format), output=tmp_path / "out")
    assert result.returncode == 0, result.stderr
    image = tmp_path / "out" / f"disk.{disk_format}"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(image)], check=True,
                                     capture_output=True, text=True).stdout)
    assert (info["format"], info["virtual-size"]) == (disk_format, 64 * 1024 * 1024)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [image.name, f"{image.name}.spdx.json"]


def test_qcow2_only_options_are_refused_for_other_formats(build):
    result = build(small_disk("vmdk", compression=True))
    assert result.returncode == 2, result.stderr
    assert "assembler.options.compression:" in one_line(result.stderr)
    assert result.of("stage-start") == []


# --- org.osbuild.grub2: osbuild's config object, the old top-level keys still work ---

GRUB_CONFIG = {"timeout": 3, "serial": "serial --unit=0 --speed=115200",
               "terminal_input": ["serial", "console"], "terminal_output": ["serial", "console"]}
GRUB_CFG_HEAD = ("set timeout=3\nset default=0\ninsmod all_video\nserial --unit=0 --speed=115200\n"
                 "terminal_input serial console\nterminal_output serial console\n"
                 "menuentry 'Debian GNU/Linux, with Linux 6.1.0-test' {\n")


def grub_cfg(build, out: Path, options: dict):
    result = build({"name": "grub", "stages": [
        {"name": "org.osbuild-oci.files", "options": {"files": [{"path": "/boot/vmlinuz-6.1.0-test", "content": "k"}]}},
        {"name": "org.osbuild.grub2", "options": {"root_fs_uuid": UUID, **options}}],
        "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}}, output=out)
    assert result.returncode == 0, result.stderr
    with tarfile.open(out / "tree.tar") as tar:
        return result, tar.extractfile("./boot/grub/grub.cfg").read().decode()


def test_grub2_config_as_osbuilds(build, tmp_path):
    result, text = grub_cfg(build, tmp_path / "new", {"config": GRUB_CONFIG})
    assert text.startswith(GRUB_CFG_HEAD)
    assert "deprecated" not in result.stderr


def test_grub2_old_timeout_and_serial_still_work_with_a_note(build, tmp_path):
    result, text = grub_cfg(build, tmp_path / "old", {"timeout": 3, "serial": "--unit=0 --speed=115200"})
    assert text.startswith(GRUB_CFG_HEAD)
    assert "org.osbuild.grub2: option timeout is deprecated, use config.timeout" in result.stderr
    assert "org.osbuild.grub2: option serial is deprecated, use config.serial" in result.stderr


def test_grub2_defaults_are_osbuilds(build, tmp_path):
    _, text = grub_cfg(build, tmp_path / "default", {})
    assert text.startswith("set timeout=0\nset default=0\ninsmod all_video\nmenuentry ")


def test_grub2_the_same_setting_twice_is_refused(build):
    result = build({"name": "grub", "stages": [{"name": "org.osbuild.grub2", "options": {
        "root_fs_uuid": UUID, "timeout": 1, "config": {"timeout": 2}}}]})
    assert result.returncode == 2, result.stderr
    assert "stages[0].options.config:" in one_line(result.stderr)


# --- the disk's identifiers follow from root_fs_uuid ---

OTHER_UUID = "7e57a1d0-0000-4000-8000-000000000001"
IDS_SCRIPT = """set -e
sfdisk --json /d/disk.raw
blkid -p -O $((2048 * 512)) -o value -s UUID /d/disk.raw
debugfs -R stats "/d/disk.raw?offset=$((206848 * 512))" 2>/dev/null | grep 'Directory Hash Seed'
"""


def disk_ids(build, out: Path, root_fs_uuid: str) -> tuple[dict, str, str]:
    """The partition table (ids included), the ESP's volume id and ext4's hash seed of a small raw disk."""
    pipeline = small_disk("raw", uefi=True, size="128M")
    pipeline["assembler"]["options"].update(filename="disk.raw", root_fs_uuid=root_fs_uuid)
    pipeline["stages"][0]["options"]["files"].append({"path": "/boot/grub/grub.cfg", "content": "set timeout=0\n"})
    result = build(pipeline, output=out)
    assert result.returncode == 0, result.stderr
    proc = tool_podman("run", "--rm", "--network=none", "-v", f"{out}:/d:ro", "--entrypoint", "sh",
                       f"{PREFIX}/org.osbuild-oci.disk:latest", "-c", IDS_SCRIPT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    table, end = json.JSONDecoder().raw_decode(proc.stdout)
    volume_id, seed = proc.stdout[end:].split("\n", 2)[1:]
    return table["partitiontable"], volume_id, seed.strip()


def test_disk_identifiers_follow_from_root_fs_uuid(build, tmp_path):
    first = disk_ids(build, tmp_path / "first", UUID)
    again = disk_ids(build, tmp_path / "again", UUID)
    other = disk_ids(build, tmp_path / "other", OTHER_UUID)
    assert first == again
    table, volume_id, seed = first
    assert table["id"] == str(uuid.uuid5(uuid.UUID(UUID), "disk")).upper()
    assert [p["start"] for p in table["partitions"]] == [2048, 206848]
    for mine, theirs in zip(first, other):
        assert mine != theirs
    assert len({p["uuid"] for p in table["partitions"]} | {table["id"]}) == 3
    assert volume_id and seed.startswith("Directory Hash Seed:")
