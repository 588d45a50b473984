"""The object store and the stage-id cache, proved with real containers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import CLI, REPO, osbuild, podman, tree_run

TESTING_STAGE = '''#!/usr/bin/python3
import os, sys, time
import osbuild_stage

def testing(tree, options):
    print("testing stage VERSION running", flush=True)
    time.sleep(options.get("sleep", 0))
    if options.get("fail"):
        print("failing as asked", file=sys.stderr)
        sys.exit(3)
    with open(os.path.join(tree, "version"), "w") as f:
        f.write("VERSION")

osbuild_stage.main(testing)
'''


def containers_created(store: Path) -> int:
    proc = podman(store, "events", "--stream=false", "--filter", "event=create", "--format", "{{.ID}}", check=False)
    return len(proc.stdout.split())


def tree_tags(store: Path) -> set[str]:
    proc = podman(store, "images", "--format", "{{.Repository}}:{{.Tag}}", check=False)
    return {line for line in proc.stdout.split() if "/trees:" in line}


def make_testing_stage(root: Path, version: str) -> None:
    """A source tree with one extra stage whose code the test can change and rebuild."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "base").exists():
        (root / "base").symlink_to(REPO / "osbuild_oci" / "sources" / "base")
    folder = root / "stages" / "org.osbuild.testing"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Containerfile").write_text(
        "FROM localhost/osbuild-oci/stage-base:latest\n"
        "COPY stage /usr/libexec/osbuild-oci/stage\n"
        'LABEL org.osbuild-oci.capabilities="CAP_DAC_OVERRIDE"\n'
        'ENTRYPOINT ["/usr/libexec/osbuild-oci/stage"]\n')
    (folder / "schema.json").write_text(json.dumps({
        "type": "object", "additionalProperties": False,
        "properties": {"sleep": {"type": "number"}, "fail": {"type": "boolean"}, "note": {"type": "string"}}}))
    (folder / "stage").write_text(TESTING_STAGE.replace("VERSION", version))
    (folder / "stage").chmod(0o755)
    proc = osbuild("stages", "build", "--source", root, "--only", "org.osbuild.testing")
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def testing_source(tmp_path_factory, stage_images) -> Path:
    root = tmp_path_factory.mktemp("source")
    make_testing_stage(root, "one")
    return root


MINBASE = "localhost/osbuild-oci/debian-minbase:bookworm"


def mkdir_stage(content: str = "hello") -> dict:
    return {"name": "org.osbuild.mkdir",
            "options": {"paths": [{"path": "/srv/data"}], "files": [{"path": "/srv/data/greeting", "content": content}]}}


def test_noop_pipeline_runs_the_stage_only_the_first_time(build, tmp_path):
    store = tmp_path / "store"
    first = build(REPO / "pipelines" / "noop.json", store)
    assert first.returncode == 0, first.stderr
    assert first.ran == ["org.osbuild.noop"]
    created = containers_created(store)
    assert created >= 1

    second = build(REPO / "pipelines" / "noop.json", store)
    assert second.returncode == 0, second.stderr
    assert second.ran == []
    assert [e["cached"] for e in second.of("stage-done")] == [True]
    assert second.tree == first.tree
    assert containers_created(store) == created, "a cached build must not create any container"


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
    assert second.ran == ["org.osbuild.mkdir"]
    assert second.of("stage-done")[0]["id"] == first.of("stage-done")[0]["id"]
    assert second.tree != first.tree
    assert tree_run(shared_store, second.image, "cat", "/srv/data/greeting") == "b"


def test_new_stage_image_invalidates_exactly_its_trees(build, tmp_path, testing_source):
    store = tmp_path / "store"
    pipeline = {"name": "code", "base": MINBASE, "stages": [{"name": "org.osbuild.noop", "options": {"code": 1}},
                                           {"name": "org.osbuild.testing", "options": {}}]}
    make_testing_stage(testing_source, "one")
    first = build(pipeline, store)
    assert first.returncode == 0, first.stderr
    assert tree_run(store, first.image, "cat", "/version") == "one"

    unchanged = osbuild("stages", "build", "--source", testing_source, "--only", "org.osbuild.testing")
    assert "up to date" in unchanged.stdout
    assert build(pipeline, store).ran == []

    make_testing_stage(testing_source, "two")
    second = build(pipeline, store)
    assert second.returncode == 0, second.stderr
    assert second.ran == ["org.osbuild.testing"]
    assert tree_run(store, second.image, "cat", "/version") == "two"
    make_testing_stage(testing_source, "one")


def test_failed_stage_stores_nothing_and_earlier_stages_stay_cached(build, tmp_path, testing_source):
    store = tmp_path / "store"
    stages = [{"name": "org.osbuild.noop", "options": {"fail": 1}}, mkdir_stage(),
              {"name": "org.osbuild.testing", "options": {"fail": True}}]
    failed = build({"name": "fails", "stages": stages}, store)
    assert failed.returncode == 1
    assert "org.osbuild.testing (stages[2]) failed with exit status 3" in failed.stderr
    assert "failing as asked" in failed.stderr
    assert "Traceback" not in failed.stderr
    failed_id = failed.of("stage-start")[-1]["id"]
    assert not any(failed_id in tag for tag in tree_tags(store))
    assert podman(store, "ps", "-a", "-q").stdout.strip() == "", "no container may be left behind"

    stages[2]["options"] = {}
    fixed = build({"name": "fails", "stages": stages}, store)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.ran == ["org.osbuild.testing"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_stage_stores_nothing(tmp_path, testing_source, sig):
    store = tmp_path / "store"
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"name": "slow", "stages": [
        {"name": "org.osbuild.noop", "options": {"slow": 1}},
        {"name": "org.osbuild.testing", "options": {"sleep": 60}}]}))
    proc = subprocess.Popen([*CLI, "build", str(pipeline), "--store", str(store), "-o", str(tmp_path / "o"), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    deadline = time.monotonic() + 60
    seen = []
    for line in proc.stdout:
        seen.append(json.loads(line))
        if seen[-1]["event"] == "stage-start" and seen[-1]["stage"] == "org.osbuild.testing":
            break
        assert time.monotonic() < deadline
    time.sleep(2)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) != 0
    slow_id = seen[-1]["id"]
    tags = tree_tags(store)
    assert not any(slow_id in tag for tag in tags)
    assert any(seen[-2]["id"] in tag for tag in tags), "the finished first stage stays cached"
    assert podman(store, "ps", "-a", "-q").stdout.strip() == ""


def test_stage_output_streams_and_tree_is_a_plain_image(build, tmp_path, testing_source):
    store = tmp_path / "store"
    result = build({"name": "plain", "stages": [{"name": "org.osbuild.testing", "options": {"note": "x"}}]}, store)
    assert result.returncode == 0
    assert "testing stage one running" in result.stderr
    listed = json.loads(osbuild("store", "list", "--store", store, "--json").stdout)
    assert [t["tree"] for t in listed] == [result.tree]
    assert listed[0]["stage"] == "org.osbuild.testing"


def test_image_built_from_another_stage_image_follows_its_changes(tmp_path, stage_images):
    make_testing_stage(tmp_path, "parent-one")
    child = tmp_path / "stages" / "org.osbuild.testing-child"
    child.mkdir()
    (child / "Containerfile").write_text("FROM localhost/osbuild-oci/org.osbuild.testing:latest\n"
                                         "ENV CHILD=1\n")
    (child / "schema.json").write_text('{"type": "object"}')
    first = osbuild("stages", "build", "--source", tmp_path, "--only", "org.osbuild.testing-child")
    assert first.returncode == 0, first.stderr
    (tmp_path / "stages" / "org.osbuild.testing" / "stage").write_text(
        TESTING_STAGE.replace("VERSION", "parent-two"))
    second = osbuild("stages", "build", "--source", tmp_path, "--only", "org.osbuild.testing-child")
    assert second.returncode == 0, second.stderr
    assert "org.osbuild.testing-child:latest  built" in second.stdout
    script = subprocess.run(["podman", "run", "--rm", "--network=none", "--entrypoint", "cat",
                             "localhost/osbuild-oci/org.osbuild.testing-child:latest",
                             "/usr/libexec/osbuild-oci/stage"], capture_output=True, text=True)
    assert "parent-two" in script.stdout
    make_testing_stage(tmp_path, "one")


def test_podman_refusing_a_container_is_one_line_not_a_traceback(build, tmp_path, stage_images):
    source = tmp_path / "source"
    make_testing_stage(source, "one")
    folder = source / "stages" / "org.osbuild.testing-noentry"
    folder.mkdir()
    (folder / "Containerfile").write_text("FROM localhost/osbuild-oci/stage-base:latest\nLABEL x=no-entrypoint\n")
    (folder / "schema.json").write_text('{"type": "object"}')
    built = osbuild("stages", "build", "--source", source, "--only", "org.osbuild.testing-noentry")
    assert built.returncode == 0, built.stderr
    result = build({"name": "noentry", "stages": [{"name": "org.osbuild.testing-noentry"}]}, tmp_path / "store")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: podman refused to run a container of ")
    assert "no command or entrypoint" in lines[-1]
    assert "Traceback" not in result.stderr
