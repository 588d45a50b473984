"""A pipeline's `arch`, without a Debian build: ids, the empty tree's platform, what a foreign tree needs.

The arm64 Debian build, its disk and its boot are tests/test_boot_arm64.py.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import pytest

from helpers import CLI, MINBASE, REPO, TREES, build_stage, podman, run_build, stage_ref, store_state, write_stage

NOOP = {"name": "noop", "stages": [{"name": "org.osbuild.noop", "options": {"zero": 0}}]}


@pytest.fixture(scope="module")
def noop_store(tmp_path_factory, stage_images):
    store = tmp_path_factory.mktemp("arch") / "store"
    first = run_build(NOOP, store, store.parent / "out")
    assert first.returncode == 0, first.stderr
    return store


def test_arch_is_in_every_id_and_both_trees_stay_cached(noop_store, tmp_path):
    """The noop stage takes no arch option, yet an arm64 and an amd64 tree of it never share an id."""
    host = run_build(NOOP, noop_store, tmp_path / "host")
    amd64 = run_build({**NOOP, "arch": "amd64"}, noop_store, tmp_path / "amd64")
    arm64 = run_build({**NOOP, "arch": "arm64"}, noop_store, tmp_path / "arm64")
    assert host.returncode == amd64.returncode == arm64.returncode == 0, arm64.stderr
    assert host.tree == amd64.tree != arm64.tree, "the default arch is the host's (amd64 here)"
    again = [run_build({**NOOP, "arch": a}, noop_store, tmp_path / f"again-{a}") for a in ("arm64", "amd64")]
    assert [(r.tree, r.ran) for r in again] == [(arm64.tree, []), (amd64.tree, [])]
    platform = podman(noop_store, "image", "inspect", "--format", "{{.Os}}/{{.Architecture}}",
                      f"{TREES}{arm64.tree}", f"{TREES}{amd64.tree}").stdout.split()
    assert platform == ["linux/arm64", "linux/amd64"], "a tree's config names the pipeline's arch"


@pytest.mark.skipif(os.geteuid() != 0, reason="hides binfmt_misc in a mount namespace of its own")
@pytest.mark.parametrize("files, reason", [
    ({}, "binfmt_misc is not mounted at /proc/sys/fs/binfmt_misc"),
    ({"register": ""}, "no qemu-aarch64 handler is registered in /proc/sys/fs/binfmt_misc"),
    ({"register": "", "qemu-aarch64": "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n"
                                       "flags: PO\noffset 0\n"},
     "the qemu-aarch64 handler was registered without the F (fix binary) flag, so containers cannot use it"),
])
def test_host_without_binfmt_support_is_one_line_before_anything_runs(noop_store, tmp_path, files, reason):
    """This host has the handler registered (scripts/setup-host), so the build runs in a mount namespace of its
    own whose /proc/sys/fs/binfmt_misc is a tmpfs holding what an unprepared host shows there: nothing (not
    mounted), no handler, or a handler without the F flag (as binfmt-support registers it)."""
    pipeline = tmp_path / "arm64.json"
    pipeline.write_text(json.dumps({**NOOP, "arch": "arm64"}))
    before = store_state(noop_store)
    fake = "".join(f"printf %s {shlex.quote(text)} > /proc/sys/fs/binfmt_misc/{name}; "
                   for name, text in files.items())
    for store in noop_store, tmp_path / "new-store":
        argv = shlex.join([*CLI, "build", str(pipeline), "--store", str(store), "-o", str(tmp_path / "out")])
        proc = subprocess.run(["unshare", "--mount", "sh", "-c",
                               f"mount -t tmpfs binfmt /proc/sys/fs/binfmt_misc && {fake}exec {argv}"],
                              capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == (f"error: {pipeline}: arch: this amd64 host cannot run the arm64 tree's programs: "
                               f"{reason}; install qemu-user-static (and binfmt-support) and run scripts/setup-host, "
                               "which mounts binfmt_misc and registers the handlers with the F flag\n")
    assert store_state(noop_store) == before
    assert not (tmp_path / "new-store").exists() and not (tmp_path / "out").exists()


def test_stage_without_arch_label_is_refused_on_a_foreign_tree(noop_store, tmp_path, new_stage_names):
    """An image that does not say it works on a foreign tree is assumed not to; on the host's arch it runs."""
    name = new_stage_names("test.native")
    write_stage(tmp_path / "src", name, "#!/bin/sh\ncat > /dev/null\n")
    build_stage(tmp_path / "src", name)
    pipeline = {"name": "native", "stages": [{"name": "org.osbuild.noop"}, {"name": name}]}
    before = store_state(noop_store)
    refused = run_build({**pipeline, "arch": "arm64"}, noop_store, tmp_path / "arm64")
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1].endswith(
        f"stages[1].name: {name} works only on trees of the host's architecture (amd64), not arm64: its image "
        f'{stage_ref(name)} has no org.osbuild-oci.arch label of "any" or "option"')
    assert store_state(noop_store) == before
    assert run_build(pipeline, noop_store, tmp_path / "host").returncode == 0


def test_a_base_of_another_arch_is_refused_before_anything_runs(noop_store, tmp_path):
    """An arm64 pipeline on an amd64 image or tree would add arm64 programs to an amd64 tree."""
    amd64 = run_build(NOOP, noop_store, tmp_path / "amd64")
    arm64 = run_build({**NOOP, "arch": "arm64"}, noop_store, tmp_path / "arm64")
    assert amd64.returncode == arm64.returncode == 0, arm64.stderr
    before = store_state(noop_store)
    for base in (MINBASE, amd64.tree):
        refused = run_build({**NOOP, "arch": "arm64", "base": base}, noop_store, tmp_path / "refused")
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.splitlines()[-1].endswith(
            f"base: {base} is an image for amd64, not for the pipeline's arch arm64; give a base built for arm64, "
            'or set "arch": "amd64"')
    assert store_state(noop_store) == before
    on_arm64 = run_build({**NOOP, "arch": "arm64", "base": arm64.tree}, noop_store, tmp_path / "on-arm64")
    assert on_arm64.returncode == 0 and on_arm64.ran == ["org.osbuild.noop"], on_arm64.stderr


def test_the_oci_archive_of_an_arm64_tree_is_an_arm64_image(noop_store, tmp_path):
    """The assembler's `architecture` defaults to the pipeline's arch (OSBUILD_OCI_ARCH), not amd64."""
    pipeline = {**NOOP, "arch": "arm64",
                "assembler": {"name": "org.osbuild.oci-archive", "options": {"filename": "image.tar"}}}
    result = run_build(pipeline, noop_store, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    config = subprocess.run(["skopeo", "inspect", "--config", f"oci-archive:{tmp_path / 'out' / 'image.tar'}"],
                            capture_output=True, text=True, check=True).stdout
    assert json.loads(config)["architecture"] == "arm64"
