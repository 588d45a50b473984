"""The object store and the stage-id cache, proved with real containers."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from helpers import (LineReader, MINBASE, REPO, STAGE_BASE, TESTING_STAGE, build_stage, make_testing_stage,
                     mkdir_stage, osbuild, osbuild_popen, podman, tool_podman, stage_ref, store_state,
                     tree_run, tree_tags)


def test_noop_pipeline_runs_the_stage_only_the_first_time(build, tmp_path):
    store = tmp_path / "store"
    first = build(REPO / "pipelines" / "noop.json", store)
    assert first.returncode == 0, first.stderr
    assert first.ran == ["org.osbuild.noop"]
    created = store_state(store)["created"]
    assert created >= 1

    second = build(REPO / "pipelines" / "noop.json", store)
    assert second.returncode == 0, second.stderr
    assert second.ran == []
    assert [e["cached"] for e in second.of("stage-done")] == [True]
    assert second.tree == first.tree
    assert store_state(store)["created"] == created, "a cached build must not create any container"


def test_the_last_plans_guess_never_decides_what_runs(build, tmp_path):
    """A plan asks podman early about the trees the last plan of its name used (STORE/last-plans.json):
    a tree removed since, or a file edited by hand, may cost a look but never a wrong hit or a failure."""
    store = tmp_path / "store"
    pipeline = {"name": "guess", "base": MINBASE,
                "stages": [{"name": "org.osbuild.noop", "options": {"guess": 1}}, mkdir_stage("guessed")]}
    first = build(pipeline, store)
    assert first.returncode == 0, first.stderr

    podman(store, "rmi", first.image)
    removed = build(pipeline, store)
    assert removed.returncode == 0, removed.stderr
    assert removed.ran == ["org.osbuild-oci.files"], "the guess named the removed tree; podman's answer counts"

    plans = store / "last-plans.json"
    doc = json.loads(plans.read_text())
    doc["guess"] = ["--all", "not a ref!", f"localhost/osbuild-oci/trees:{'0' * 64}", *doc["guess"]]
    plans.write_text(json.dumps(doc))
    planted = build(pipeline, store)
    assert planted.returncode == 0, planted.stderr
    assert planted.ran == [] and planted.tree == first.tree
    assert json.loads(plans.read_text())["guess"] == doc["guess"][3:], "the next plan remembers its own refs"


def test_second_stage_adds_exactly_one_layer_holding_its_file(build, tmp_path):
    store = tmp_path / "store"
    pipeline = {"name": "two", "base": MINBASE, "stages": [{"name": "org.osbuild.noop", "options": {"two": 1}}, mkdir_stage()]}
    result = build(pipeline, store)
    assert result.returncode == 0, result.stderr
    parent_id, final_id = [e["id"] for e in result.of("stage-done")]
    parent = json.loads(podman(store, "image", "inspect", f"localhost/osbuild-oci/trees:{parent_id}").stdout)[0]
    final = json.loads(podman(store, "image", "inspect", result.image).stdout)[0]
    assert final["RootFS"]["Layers"][:-1] == parent["RootFS"]["Layers"]
    assert len(final["RootFS"]["Layers"]) == len(parent["RootFS"]["Layers"]) + 1

    # The newest layer is the stage's change set: export the image and read that layer's tar.
    archive = tmp_path / "tree.tar"
    podman(store, "save", "--format", "oci-archive", "-o", str(archive), result.image)
    listing = subprocess.run(["tar", "-xOf", str(archive), "index.json"], capture_output=True, text=True).stdout
    manifest_digest = json.loads(listing)["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads(subprocess.run(["tar", "-xOf", str(archive), f"blobs/sha256/{manifest_digest}"],
                                         capture_output=True, text=True).stdout)
    top = manifest["layers"][-1]["digest"].split(":")[1]
    layer = subprocess.run(f"tar -xOf {archive} blobs/sha256/{top} | tar -tzf - 2>/dev/null || "
                           f"tar -xOf {archive} blobs/sha256/{top} | tar -tf -",
                           shell=True, capture_output=True, text=True).stdout.split()
    assert "srv/data/greeting" in [p.lstrip("./") for p in layer]

    assert tree_run(store, result.image, "cat", "/srv/data/greeting") == "hello"


def test_changed_options_rerun_only_that_stage(build, shared_store):
    base = {"name": "opts", "base": MINBASE, "stages": [{"name": "org.osbuild.noop", "options": {"opts": 1}}, mkdir_stage("a")]}
    first = build(base)
    assert first.returncode == 0, first.stderr
    base["stages"][1] = mkdir_stage("b")
    second = build(base)
    assert second.returncode == 0, second.stderr
    assert second.ran == ["org.osbuild-oci.files"]
    assert second.of("stage-done")[0]["id"] == first.of("stage-done")[0]["id"]
    assert second.tree != first.tree
    assert tree_run(shared_store, second.image, "cat", "/srv/data/greeting") == "b"


def test_new_stage_image_invalidates_exactly_its_trees(build, tmp_path, new_stage_names):
    store, source, name = tmp_path / "store", tmp_path / "source", new_stage_names("test.testing")
    pipeline = {"name": "code", "base": MINBASE, "stages": [{"name": "org.osbuild.noop", "options": {"code": 1}},
                                                            {"name": name, "options": {}}]}
    make_testing_stage(source, name, "one")
    first = build(pipeline, store)
    assert first.returncode == 0, first.stderr
    assert tree_run(store, first.image, "cat", "/version") == "one"

    assert f"{stage_ref(name)}  up to date" in build_stage(source, name).stdout
    assert build(pipeline, store).ran == []

    make_testing_stage(source, name, "two")
    second = build(pipeline, store)
    assert second.returncode == 0, second.stderr
    assert second.ran == [name]
    assert second.of("stage-done")[0]["id"] == first.of("stage-done")[0]["id"]
    assert tree_run(store, second.image, "cat", "/version") == "two"


def test_failed_stage_stores_nothing_and_earlier_stages_stay_cached(build, tmp_path, testing_stage):
    store = tmp_path / "store"
    stages = [{"name": "org.osbuild.noop", "options": {"fail": 1}}, mkdir_stage(),
              {"name": testing_stage, "options": {"fail": True}}]
    failed = build({"name": "fails", "stages": stages}, store, None, "--no-keep-failed")
    assert failed.returncode == 1
    assert f"{testing_stage} (stages[2]) failed with exit status 3" in failed.stderr
    assert "failing as asked" in failed.stderr
    assert "Traceback" not in failed.stderr and "kept" not in failed.stderr
    failed_id = failed.of("stage-start")[-1]["id"]
    tags = tree_tags(store)
    assert len(tags) == 2 and not any(failed_id in tag for tag in tags)
    assert podman(store, "ps", "-a", "-q").stdout.strip() == "", "no container may be left behind"

    stages[2]["options"] = {}
    fixed = build({"name": "fails", "stages": stages}, store)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.ran == [testing_stage]


def _running(reader: LineReader) -> float:
    """Wait until the testing stage's own first line arrives (its container is running); when it did."""
    return reader.wait_for(lambda stream, line: stream == "stderr" and "testing stage one running" in line,
                           timeout=60)[1]


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_interrupted_stage_stores_nothing(tmp_path, testing_stage, sig, status):
    store = tmp_path / "store"
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"name": "slow", "stages": [
        {"name": "org.osbuild.noop", "options": {"slow": 1}},
        {"name": testing_stage, "options": {"sleep": 60}}]}))
    proc = osbuild_popen("build", pipeline, "--store", store, "-o", tmp_path / "o", "--json")
    reader = LineReader(proc)
    _running(reader)
    proc.send_signal(sig)
    reader.drain(timeout=30)
    assert proc.returncode == status, reader.seen[-10:]
    events = [json.loads(line) for stream, _, line in reader.seen if stream == "stdout"]
    first_id, slow_id = [e["id"] for e in events if e["event"] == "stage-start"]
    assert [e["id"] for e in events if e["event"] == "stage-done"] == [first_id]
    assert tree_tags(store) == {f"localhost/osbuild-oci/trees:{first_id}"}, "only the finished stage is stored"
    assert "Traceback" not in "".join(line for stream, _, line in reader.seen if stream == "stderr")


def test_stage_output_streams_and_tree_is_a_plain_image(tmp_path, testing_stage):
    store = tmp_path / "store"
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"name": "plain", "base": MINBASE,
                                    "stages": [{"name": testing_stage, "options": {"sleep": 4}}]}))
    proc = osbuild_popen("build", pipeline, "--store", store, "-o", tmp_path / "o", "--json")
    reader = LineReader(proc)
    printed = _running(reader)
    _, done, line = reader.wait_for(lambda stream, line: '"build-done"' in line, timeout=60)
    reader.drain(timeout=30)
    assert proc.returncode == 0, reader.seen
    assert done - printed > 2, "the stage's output arrived only when it ended, not as it printed it"

    image = json.loads(line)["image"]
    listed = json.loads(osbuild("store", "list", "--store", store, "--json").stdout)
    assert {t["image"]: t["stage"] for t in listed}[image] == testing_stage
    # A plain image: plain podman runs it, and a copy saved from it runs in another podman storage too.
    assert tree_run(store, image, "cat", "/version") == "one"
    archive = tmp_path / "tree.tar"
    podman(store, "save", "--format", "oci-archive", "-o", str(archive), image)
    other = tmp_path / "other"
    loaded = podman(other, "load", "-q", "-i", str(archive)).stdout
    assert "trees:" in loaded, loaded
    assert podman(other, "run", "--rm", "--network=none", image, "sh", "-c",
                  "cat /version; . /etc/os-release; echo $VERSION_CODENAME").stdout == "onebookworm\n"


def test_image_built_from_another_stage_image_follows_its_changes(tmp_path, stage_images, new_stage_names):
    parent, child = new_stage_names("test.parent"), new_stage_names("test.child")
    make_testing_stage(tmp_path, parent, "parent-one")
    folder = tmp_path / "stages" / child
    folder.mkdir()
    (folder / "Containerfile").write_text(f"FROM {stage_ref(parent)}\nENV CHILD=1\n")
    (folder / "schema.json").write_text('{"type": "object"}')
    build_stage(tmp_path, child)
    (tmp_path / "stages" / parent / "stage").write_text(TESTING_STAGE.replace("VERSION", "parent-two"))
    assert f"{stage_ref(child)}  built" in build_stage(tmp_path, child).stdout
    script = tool_podman("run", "--rm", "--network=none", "--entrypoint", "cat", stage_ref(child),
                         "/usr/libexec/osbuild-oci/stage", capture_output=True, text=True)
    assert "parent-two" in script.stdout


def test_podman_refusing_a_container_is_one_line_not_a_traceback(build, tmp_path, stage_images, new_stage_names):
    name = new_stage_names("test.noentry")
    folder = tmp_path / "source" / "stages" / name
    folder.mkdir(parents=True)
    (tmp_path / "source" / "base").symlink_to(STAGE_BASE)
    (folder / "Containerfile").write_text("FROM localhost/osbuild-oci/stage-base:latest\nLABEL x=no-entrypoint\n")
    (folder / "schema.json").write_text('{"type": "object"}')
    build_stage(tmp_path / "source", name)
    result = build({"name": "noentry", "stages": [{"name": name}]}, tmp_path / "store")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: podman refused to run a container of ")
    assert "no command or entrypoint" in lines[-1]
    assert "Traceback" not in result.stderr
