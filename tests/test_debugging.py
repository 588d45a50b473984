"""Looking into trees: a failed stage keeps its tree, a shell opens in any tree or in that failed one."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from helpers import (CLI, MINBASE, REPO, TREES, Terminal, osbuild, podman, run_build, stage_podman, store_state,
                     tree_tags)

pytestmark = pytest.mark.slow


def script(text: str) -> dict:
    return {"name": "org.osbuild.script", "options": {"script": text}}


FAILS = {"name": "third-fails", "base": MINBASE, "stages": [
    script("echo one > /one"), script("echo two > /two"), script("echo half-built > /half; exit 1")]}


@pytest.fixture(scope="module")
def store(tmp_path_factory, stage_images):
    return tmp_path_factory.mktemp("debugging") / "store"


def test_failed_stage_keeps_its_tree_for_a_shell_and_never_as_a_cache_hit(store, tmp_path):
    failed = run_build(FAILS, store, tmp_path / "o1")
    assert failed.returncode == 1, failed.stderr
    failed_id = failed.of("stage-start")[-1]["id"]
    shell_line, podman_line = failed.stderr.rstrip().splitlines()[-3], failed.stderr.rstrip().splitlines()[-1]
    assert shell_line.strip() == f"osbuild-oci shell --failed {failed_id} --store {store}", failed.stderr
    assert f"localhost/osbuild-oci/trees:failed-{failed_id}" in tree_tags(store)
    assert f"localhost/osbuild-oci/trees:{failed_id}" not in tree_tags(store), "nothing half-built under its id"

    shown = osbuild(*shlex.split(shell_line)[1:], "--command", "cat /half /two")
    assert (shown.returncode, shown.stdout) == (0, "half-built\ntwo\n"), shown.stderr
    plain = subprocess.run(shlex.split(podman_line.replace(" -it ", " ").removesuffix("/bin/sh")) + ["cat", "/half"],
                           capture_output=True, text=True)
    assert plain.stdout == "half-built\n", plain.stderr
    listing = osbuild("store", "list", "--store", store, "--json")
    assert listing.returncode == 0, listing.stderr
    listed = json.loads(listing.stdout)
    assert failed_id not in [t["tree"] for t in listed if not t.get("failed")]

    again = run_build(FAILS, store, tmp_path / "o2")
    assert again.returncode == 1
    assert [e["cached"] for e in again.of("stage-done")] == [True, True], "the failed stage ran again"
    assert again.of("stage-start")[-1]["id"] == failed_id
    assert all(names for _, names in store_state(store)["images"]), "the older failure is gone, not left unnamed"


def test_no_keep_failed_keeps_nothing(tmp_path, stage_images):
    store = tmp_path / "store"
    failed = run_build(FAILS, store, tmp_path / "o", "--no-keep-failed")
    assert failed.returncode == 1
    assert "shell --failed" not in failed.stderr
    assert not any("failed-" in tag for tag in tree_tags(store))


def test_shell_builds_up_to_its_stage_and_changes_nothing(store, tmp_path):
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({**FAILS, "stages": [
        FAILS["stages"][0], script("echo two > /two; echo for the shell"), script("echo three > /three")]}))
    # The command's own exit statuses (7, 9) are none that osbuild-oci gives (1 build failed, 2 bad input).
    seen = osbuild("shell", pipeline, "--store", store, "--stage", "2", "--command",
                   "cat /two; touch /x; test -e /three && exit 1; exit 7")
    assert seen.returncode == 7 and seen.stdout == "two\n", seen.stderr
    assert "■ [2/2] org.osbuild.script done" in seen.stderr, "the missing second stage was built"
    before = store_state(store)
    again = osbuild("shell", pipeline, "--store", store, "--stage", "2", "--command", "test -e /x && exit 1; exit 9")
    assert again.returncode == 9, "what the last shell did is gone"
    after = store_state(store)
    assert (after["images"], after["layers"], after["containers"]) == (
        before["images"], before["layers"], before["containers"]), "a shell changes nothing in the store"
    offline = osbuild("shell", pipeline, "--store", store, "--stage", "0", "-c", "cat /sys/class/net/*/operstate")
    assert offline.stdout.split() in ([], ["unknown"]), "no network but loopback"
    unknown = osbuild("shell", pipeline, "--store", store, "--stage", "org.osbuild.script")
    assert unknown.returncode == 2 and "give its number" in unknown.stderr


def test_interactive_shell_on_a_terminal(store, tmp_path):
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({**FAILS, "stages": FAILS["stages"][:1]}))
    cli = shlex.join([*CLI, "shell", str(pipeline), "--store", str(store)])
    with Terminal(f"cd {shlex.quote(str(REPO))}; {cli}; echo EXIT=$?; sleep 600") as terminal:
        terminal.wait_for("root@", 60)
        # The answer is computed, so it is on the screen only once the shell ran the line.
        terminal.type('cat /one; echo "=$((6 * 7))="')
        screen = terminal.wait_for("=42=", 10)
        assert "one\n=42=" in "\n".join(line.rstrip() for line in screen.splitlines())
        terminal.type("exit 3")
        terminal.wait_for("EXIT=3", 20)


def test_inspect_marks_exactly_the_missing_trees_and_finds_them_in_a_cache_registry(tmp_path, stage_images, registry):
    address, _ = registry
    stages = [{"name": "org.osbuild-oci.files", "options": {"files": [{"path": f"/{n}", "content": "x"}]}}
              for n in range(4)]
    full = {"name": "inspect-me", "stages": stages,
            "assembler": {"name": "org.osbuild.tar", "options": {"filename": "t.tar"}}}
    half = tmp_path / "half"
    assert run_build({"name": "inspect-me", "stages": stages[:2]}, half, tmp_path / "o1").returncode == 0
    elsewhere = run_build(full, tmp_path / "elsewhere", tmp_path / "o2", "--cache-to", f"{address}/daytwo/trees",
                          "--tls-verify=false")
    assert elsewhere.returncode == 0, elsewhere.stderr
    ids = [e["id"] for e in elsewhere.of("stage-done")]
    pipeline = tmp_path / "full.json"
    pipeline.write_text(json.dumps(full))
    before = store_state(half)

    local = osbuild("inspect", pipeline, "--store", half, "--json")
    assert local.returncode == 0, local.stderr
    report = json.loads(local.stdout)
    assert [(s["id"], s["tree"]) for s in report["stages"]] == list(zip(ids, ["store", "store", "build", "build"]))
    first = report["stages"][0]
    assert first["digest"] == stage_image_id("org.osbuild-oci.files")
    assert (first["network"], "CAP_DAC_OVERRIDE" in first["capabilities"]) == (False, True)
    assert 0 < first["size"] < 10_000 and first["last_used"] and report["stages"][2]["size"] is None
    assert report["assembler"]["stage"] == "org.osbuild.tar"

    cached = osbuild("inspect", pipeline, "--store", half, "--json", "--cache-from", f"{address}/daytwo/trees",
                     "--tls-verify=false")
    # As a build would: the newest tree found holds the older stages' layers, so stage 3 needs no pull.
    assert [(s["tree"], s["registry"]) for s in json.loads(cached.stdout)["stages"]] == [
        ("store", None), ("store", None), ("covered", None), ("remote", f"{address}/daytwo/trees")], cached.stderr
    human = osbuild("inspect", pipeline, "--store", half)
    assert human.stdout.count("tree: to build") == 2 and human.stdout.count("tree: in the store") == 2, human.stdout
    assert store_state(half) == before, "inspect changes nothing and starts no container"

    podman(tmp_path / "elsewhere", "rmi", TREES + ids[0])
    newer = json.loads(osbuild("inspect", pipeline, "--store", tmp_path / "elsewhere", "--json").stdout)
    assert [s["tree"] for s in newer["stages"]] == ["covered", "store", "store", "store"]


def stage_image_id(name: str) -> str:
    """The id of a stage image in the stage images' storage, where `stages build` put it."""
    proc = stage_podman("image", "inspect", "--format", "{{.Id}}", f"localhost/osbuild-oci/{name}", text=True)
    return proc.stdout.strip()
