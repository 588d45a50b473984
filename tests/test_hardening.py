"""Run as root, a stage image gets no more power than the allowlist, whatever its labels ask."""

from __future__ import annotations

import os

import pytest

from helpers import build_stage, store_state, write_stage

GREEDY = '''#!/usr/bin/python3
import osbuild_stage

def greedy(tree, options):
    print("greedy stage ran")

osbuild_stage.main(greedy)
'''

# name_to_handle_at on a file of the host's filesystem (the output bind mount), then
# open_by_handle_at: the call behind the "shocker" escape, which needs CAP_DAC_READ_SEARCH.
SHOCKER = '''#!/usr/bin/python3
import ctypes, errno, os, sys, osbuild_stage

def shocker(tree, options, output):
    libc = ctypes.CDLL(None, use_errno=True)
    path = os.path.join(output, "probe")
    open(path, "w").close()
    handle = ctypes.create_string_buffer(8 + 128)
    ctypes.c_uint.from_buffer(handle).value = 128
    mount_id = ctypes.c_int()
    if libc.name_to_handle_at(-100, path.encode(), handle, ctypes.byref(mount_id), 0) != 0:
        raise OSError(ctypes.get_errno(), "name_to_handle_at")
    fd = libc.open_by_handle_at(os.open(output, os.O_RDONLY), handle, os.O_RDONLY)
    result = "opened" if fd >= 0 else errno.errorcode[ctypes.get_errno()]
    with open(os.path.join(output, "result"), "w") as f:
        f.write(result)

osbuild_stage.main(shocker)
'''


def test_a_label_asking_for_cap_sys_admin_is_refused_before_anything_runs(build, tmp_path, new_stage_names,
                                                                         shared_store):
    name = new_stage_names("test.greedy")
    source = tmp_path / "source"
    write_stage(source, name, GREEDY, labels={"org.osbuild-oci.capabilities": "CAP_CHOWN CAP_SYS_ADMIN"})
    assert build_stage(source, name).returncode == 0
    pipeline = {"name": "greedy", "stages": [{"name": "org.osbuild.noop", "options": {"greedy": 1}},
                                             {"name": name}]}
    warm = build({"name": "warm", "stages": [{"name": "org.osbuild.noop", "options": {"warm": 1}}]})
    assert warm.returncode == 0, warm.stderr
    before = store_state(shared_store)
    refused = build(pipeline)
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert f"stages[1].name: stage image localhost/osbuild-oci/{name}:latest asks for CAP_SYS_ADMIN" in lines[0]
    assert "org.osbuild-oci.capabilities" in lines[0] and "--allow-capability CAP_SYS_ADMIN" in lines[0]
    assert store_state(shared_store) == before, "nothing ran and the store is unchanged"

    allowed = build(pipeline, None, None, "--allow-capability", "CAP_SYS_ADMIN")
    assert allowed.returncode == 0, allowed.stderr
    assert "--allow-capability CAP_SYS_ADMIN" in allowed.stderr, "a lifted allowlist is said out loud"


@pytest.mark.skipif(os.geteuid() != 0, reason="the escape it guards against needs real root")
def test_an_assembler_cannot_open_host_files_by_handle(build, tmp_path, new_stage_names):
    name = new_stage_names("test.shocker")
    source = tmp_path / "source"
    write_stage(source, name, SHOCKER, kind="assemblers",
                labels={"org.osbuild-oci.capabilities": "CAP_DAC_OVERRIDE"})
    assert build_stage(source, name).returncode == 0
    result = build({"name": "shocker", "stages": [], "assembler": {"name": name}}, None, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "result").read_text() == "EPERM"
