"""The commands around build: listing stages, the store's location, cleaning and locking it, human progress."""

from __future__ import annotations

import json
import shlex
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from helpers import (CLI, REPO, LineReader, Terminal, osbuild, osbuild_popen, podman, podman_args, run_dir,
                     stage_images_home, stage_ref, write_stage)

NOOP = REPO / "pipelines" / "noop.json"


def test_stages_list_and_show(stage_images):
    listed = {s["name"]: s for s in json.loads(osbuild("stages", "list", "--json").stdout)}
    assert listed["org.osbuild.debootstrap"]["network"] is True
    assert listed["org.osbuild.hostname"]["network"] is False
    assert listed["org.osbuild-oci.disk"]["kind"] == "assembler"
    assert "CAP_SYS_CHROOT" in listed["org.osbuild.debootstrap"]["capabilities"]
    assert all(s["id"] for s in listed.values()), "every stage of the checkout is built"
    schema = json.loads(osbuild("stages", "show", "org.osbuild.mkdir").stdout)
    assert set(schema["properties"]) == {"paths"}
    missing = osbuild("stages", "show", "org.osbuild.nope")
    assert missing.returncode == 2 and "org.osbuild.nope" in missing.stderr


def test_stages_build_says_one_line_an_image_and_its_steps_only_when_asked(stage_images, new_stage_names, tmp_path):
    """A build of an image shows none of podman's steps (each repeats the whole schema label) unless -v."""
    name = new_stage_names()
    write_stage(tmp_path, name, "#!/bin/sh\n", {"type": "object", "description": "x" * 2000})
    quiet = osbuild("stages", "build", "--source", tmp_path, "--only", name)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.splitlines() == [f"{stage_ref(name)}  built"]
    assert "STEP" not in quiet.stderr and "x" * 2000 not in quiet.stderr, quiet.stderr[-500:]
    (tmp_path / "stages" / name / "stage").write_text("#!/bin/sh\nexit 0\n")
    loud = osbuild("stages", "build", "--source", tmp_path, "--only", name, "-v")
    assert loud.returncode == 0 and loud.stdout.splitlines() == [f"{stage_ref(name)}  built"]
    assert "STEP 1/" in loud.stdout + loud.stderr


def stage_ids() -> dict[str, str]:
    return {s["name"]: s["id"] for s in json.loads(osbuild("stages", "list", "--json").stdout)}


def test_store_clean_and_delete(build, tmp_path):
    store = tmp_path / "store"
    assert build(NOOP, store).ran == ["org.osbuild.noop"]
    assert len(json.loads(osbuild("store", "list", "--store", store, "--json").stdout)) == 1
    stages = stage_ids()

    assert osbuild("store", "clean", "--store", store).returncode == 0
    assert json.loads(osbuild("store", "list", "--store", store, "--json").stdout) == []
    assert stage_ids() == stages, "store clean must leave the stage images alone"
    assert podman(store, "image", "exists", stage_ref("org.osbuild.noop")).returncode == 0
    assert build(NOOP, store).ran == ["org.osbuild.noop"]

    assert osbuild("store", "delete", "--store", store).returncode == 0
    assert not store.exists()
    assert stage_ids() == stages
    refused = osbuild("store", "delete", "--store", tmp_path)
    assert refused.returncode == 2 and "not an osbuild-oci store" in refused.stderr
    assert tmp_path.exists()


def test_a_deleted_store_leaves_no_run_state(build, tmp_path):
    """`store delete` removes the store's run state (/run/osbuild-oci/<key>: a tmpfs), and the next service
    started on any store removes that of a store deleted by hand."""
    deleted, by_hand, other = tmp_path / "deleted", tmp_path / "by-hand", tmp_path / "other"
    for store in (deleted, by_hand):
        assert build(NOOP, store).ran == ["org.osbuild.noop"]
        assert (run_dir(podman_args(store)) / "service.log").is_file()
    gone = run_dir(podman_args(deleted))
    assert osbuild("store", "delete", "--store", deleted).returncode == 0
    assert not gone.exists()

    gone = run_dir(podman_args(by_hand))
    shutil.rmtree(by_hand)
    assert build(NOOP, other).ran == ["org.osbuild.noop"]
    assert not gone.exists()
    assert (run_dir(podman_args(other)) / "service.log").is_file()


def trees_in(store) -> list[dict]:
    proc = osbuild("store", "list", "--store", store, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("where", ["XDG_CACHE_HOME", "HOME", "OSBUILD_OCI_STORE"])
def test_where_the_store_is_without_store(build, tmp_path, where):
    """--store defaults to $XDG_CACHE_HOME/osbuild-oci/store, ~/.cache/... without it, or $OSBUILD_OCI_STORE."""
    env = {"XDG_CACHE_HOME": None, "OSBUILD_OCI_STORE": None, **stage_images_home()}
    expected = {"XDG_CACHE_HOME": tmp_path / "cache" / "osbuild-oci" / "store",
                "HOME": tmp_path / "home" / ".cache" / "osbuild-oci" / "store",
                "OSBUILD_OCI_STORE": tmp_path / "env" / "store"}[where]
    env[where] = str({"XDG_CACHE_HOME": tmp_path / "cache", "HOME": tmp_path / "home"}.get(where, expected))
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"name": where, "stages": [{"name": "org.osbuild.noop", "options": {where: 1}}]}))
    proc = osbuild("build", pipeline, "-o", tmp_path / "out", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    tree = [json.loads(line) for line in proc.stdout.splitlines()][-1]["tree"]
    assert [t["tree"] for t in trees_in(expected)] == [tree]


@contextmanager
def store_held(tmp_path: Path, stage: str, seconds: int) -> Iterator[LineReader]:
    """A first build on tmp_path/store, its stage running (the store held) for SECONDS; stopped if still running."""
    slow = tmp_path / "slow.json"
    slow.write_text(json.dumps({"name": "slow", "stages": [{"name": stage, "options": {"sleep": seconds}}]}))
    reader = LineReader(osbuild_popen("build", slow, "--store", tmp_path / "store", "-o", tmp_path / "out1", "--json"))
    try:
        reader.wait_for(lambda stream, line: "testing stage one running" in line, timeout=60)
        yield reader
    finally:
        if reader.proc.poll() is None:
            reader.proc.terminate()
            reader.proc.wait()


def test_a_second_build_on_a_busy_store_waits_for_it(tmp_path, testing_stage):
    store = tmp_path / "store"
    with store_held(tmp_path, testing_stage, 8) as first:
        started = time.monotonic()
        second = osbuild("build", NOOP, "--store", store, "-o", tmp_path / "out2", "--json")
        finished = time.monotonic()
        first.drain(timeout=60)
    assert first.proc.returncode == 0
    assert second.returncode == 0, second.stderr
    assert "wait" in second.stderr.lower() and str(store) in second.stderr, second.stderr
    assert finished - started > 3, "the second build ran while the first still held the store"
    assert {t["stage"] for t in trees_in(store)} == {testing_stage, "org.osbuild.noop"}


def test_lock_timeout_gives_up_with_a_clear_error(tmp_path, testing_stage):
    store = tmp_path / "store"
    with store_held(tmp_path, testing_stage, 20):
        started = time.monotonic()
        second = osbuild("build", NOOP, "--store", store, "-o", tmp_path / "out2", "--lock-timeout", "2")
        waited = time.monotonic() - started
    assert second.returncode == 1, second.stderr
    errors = [line for line in second.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(store) in errors[0] and "--lock-timeout" in errors[0], second.stderr
    assert "Traceback" not in second.stderr
    assert 2 <= waited < 15


def test_human_progress_on_a_terminal(tmp_path, stage_images):
    """Without --json, a person at a terminal sees each stage, whether it ran or was cached, and the result."""
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"name": "on-a-tty", "stages": [
        {"name": "org.osbuild.noop", "options": {"tty": 1}}, {"name": "org.osbuild.mkdir", "options": {
            "paths": [{"path": "/tty"}]}}]}))
    store = tmp_path / "store"
    cli = " ".join(map(shlex.quote, [*CLI, "build", str(pipeline), "--store", str(store)]))
    script = f"cd {shlex.quote(str(REPO))}; {cli} -o {tmp_path}/o1; {cli} -o {tmp_path}/o2; echo EXIT=$?; sleep 600"
    with Terminal(script) as terminal:
        screen = terminal.wait_for("EXIT=", 120)
    osbuild("store", "list", "--store", store)  # the store is checked for leftovers like every other
    lines = [line.rstrip() for line in screen.splitlines() if line.strip()]
    assert "EXIT=0" in lines, screen
    assert lines.count("Building on-a-tty (2 stages)") == 2, screen
    done = [line for line in lines if line.startswith("■")]
    assert len(done) == 4, screen
    assert done[0].startswith("■ [1/2] org.osbuild.noop done in ") and done[1].startswith(
        "■ [2/2] org.osbuild.mkdir done in "), screen
    assert done[2].startswith("■ [1/2] org.osbuild.noop cached (store)") and done[3].startswith(
        "■ [2/2] org.osbuild.mkdir cached (store)"), screen
    built = [line for line in lines if line.startswith("Built in ")]
    assert len(built) == 2 and built[0].split("final tree ")[1] == built[1].split("final tree ")[1], screen
    assert not any(line.startswith("{") for line in lines), "no JSON without --json"


def test_a_long_stage_shows_its_elapsed_time_live_on_a_terminal(tmp_path, testing_stage):
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"name": "slow", "stages": [{"name": testing_stage, "options": {"sleep": 6}}]}))
    cli = " ".join(map(shlex.quote, [*CLI, "build", str(pipeline), "--store", str(tmp_path / "store")]))
    with Terminal(f"cd {shlex.quote(str(REPO))}; {cli}; echo EXIT=$?; sleep 600") as terminal:
        live = terminal.wait_for(f"[1/1] {testing_stage} running: ", 60)
        assert "testing stage one running" in live, "the stage's own output stays above the live line"
        screen = terminal.wait_for("EXIT=", 60)
    osbuild("store", "list", "--store", tmp_path / "store")  # the store is checked for leftovers like every other
    assert "running: " not in screen and f"■ [1/1] {testing_stage} done in " in screen, screen
