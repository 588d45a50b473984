"""Bad input: one clear line naming the JSON path, exit 2, no container, store unchanged."""

from __future__ import annotations

import json

import pytest

from helpers import REPO, osbuild, remove_default_images, stage_podman, stage_ref, store_state, unique_name

GOOD_STAGE = {"name": "org.osbuild.noop", "options": {}}
UUID = "76a22bf4-f153-4541-b6c7-0332c0dfaeac"

CASES = [
    ("syntax", '{"name": "x",\n  "stages": [\n    {"name" "org.osbuild.noop"}]}', "line 3, column 13"),
    ("not-object", "[]", "(top level): expected object, got array"),
    ("no-name", {"stages": [GOOD_STAGE]}, "'name' is a required property"),
    ("stages-type", {"name": "x", "stages": "org.osbuild.noop"}, "stages: expected array, got string"),
    ("unknown-key", {"name": "x", "stages": [], "stagse": []}, "stagse: unknown property"),
    ("stage-no-name", {"name": "x", "stages": [GOOD_STAGE, {"options": {}}]}, "stages[1]: 'name' is a required"),
    ("stage-name-pattern", {"name": "x", "stages": [{"name": "Org Osbuild"}]}, "stages[0].name: 'Org Osbuild'"),
    ("unknown-stage", {"name": "x", "stages": [GOOD_STAGE, {"name": "org.osbuild.nope"}]},
     "stages[1].name: no stage image localhost/osbuild-oci/org.osbuild.nope:latest"),
    ("unknown-option", {"name": "x", "stages": [{"name": "org.osbuild.mkdir", "options": {"pahts": []}}]},
     "stages[0].options.pahts: unknown property; allowed here: paths"),
    ("option-type", {"name": "x", "stages": [{"name": "org.osbuild.mkdir", "options": {"paths": "/srv"}}]},
     "stages[0].options.paths: expected array, got string"),
    ("nested-option", {"name": "x", "stages": [{"name": "org.osbuild.mkdir",
                                                "options": {"paths": [{"path": "/a"}, {"path": 7}]}}]},
     "stages[0].options.paths[1].path: expected string, got integer"),
    ("options-type", {"name": "x", "stages": [{"name": "org.osbuild.noop", "options": []}]},
     "stages[0].options: expected object, got array"),
    ("assembler-no-name", {"name": "x", "stages": [GOOD_STAGE], "assembler": {"options": {}}},
     "assembler: 'name' is a required property"),
    ("assembler-is-stage", {"name": "x", "stages": [GOOD_STAGE], "assembler": {"name": "org.osbuild.noop"}},
     "assembler.name: org.osbuild.noop is a stage image; it cannot be used as an assembler"),
    ("missing-base-tree", {"name": "x", "base": "ab" * 32, "stages": [GOOD_STAGE]}, "base: no tree abab"),
    ("bad-digest", {"name": "x", "stages": [{"name": "org.osbuild.noop",
                                             "image": "127.0.0.1:5000/ns/noop@sha256:1234"}]},
     "stages[0].image: '127.0.0.1:5000/ns/noop@sha256:1234' is not of the form allowed here: an image reference"),
    ("base-not-a-reference", {"name": "x", "base": "UPPER CASE::ref", "stages": [GOOD_STAGE]},
     "base: 'UPPER CASE::ref' is not of the form allowed here: an image reference"),
    ("image-like-a-flag", {"name": "x", "stages": [{"name": "org.osbuild.noop", "image": "--all"}]},
     "stages[0].image: '--all' is not of the form allowed here: an image reference"),
    ("no-schema-label", {"name": "x", "stages": [{"name": "plain",
                                                  "image": "localhost/osbuild-oci/debian-minbase:bookworm"}]},
     "has no org.osbuild-oci.schema label"),
    ("arch-unknown", {"name": "x", "arch": "aarch64", "stages": [GOOD_STAGE]},
     "arch: 'aarch64' is not one of 'amd64', 'arm64', 'armhf', 'i386', 'ppc64el', 'riscv64', 's390x'"),
    ("arch-type", {"name": "x", "arch": 64, "stages": [GOOD_STAGE]}, "arch: expected string, got integer 64"),
    ("arch-twice", {"name": "x", "arch": "arm64", "stages": [
        {"name": "org.osbuild.debootstrap", "options": {"suite": "bookworm", "arch": "amd64"}}]},
     "stages[0].options.arch: arch 'amd64' differs from the pipeline's arch 'arm64'; write the architecture once, "
     'as the pipeline\'s top-level "arch"'),
    ("arch-assembler", {"name": "x", "arch": "i386", "stages": [GOOD_STAGE], "assembler": {
        "name": "org.osbuild-oci.disk", "options": {"filename": "d.raw", "root_fs_uuid": UUID}}},
     "assembler.options.arch: 'i386' is not one of 'amd64', 'arm64'"),
    ("arch-bios", {"name": "x", "arch": "arm64", "stages": [GOOD_STAGE], "assembler": {
        "name": "org.osbuild-oci.disk", "options": {"filename": "d.raw", "root_fs_uuid": UUID, "bios": True}}},
     "assembler.options.bios: must be false, not true: arm64 has no BIOS; leave bios out or set it to false"),
]


@pytest.fixture(scope="module")
def populated_store(tmp_path_factory, stage_images):
    """A store that already holds a tree, so 'unchanged' means something."""
    store = tmp_path_factory.mktemp("validation") / "store"
    proc = osbuild("build", REPO / "pipelines" / "noop.json", "--store", store, "-o", store.parent / "out")
    assert proc.returncode == 0, proc.stderr
    return store


@pytest.mark.parametrize("name,pipeline,expected", CASES, ids=[c[0] for c in CASES])
def test_malformed_pipeline_is_refused_before_anything_runs(populated_store, tmp_path, name, pipeline, expected):
    path = tmp_path / f"{name}.json"
    path.write_text(pipeline if isinstance(pipeline, str) else json.dumps(pipeline))
    before = store_state(populated_store)
    proc = osbuild("build", path, "--store", populated_store, "-o", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {path}: ")
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert store_state(populated_store) == before
    assert not (tmp_path / "out").exists()


def test_missing_pipeline_file(tmp_path):
    proc = osbuild("build", tmp_path / "nope.json", "--store", tmp_path / "s", "-o", tmp_path / "out")
    assert proc.returncode == 2
    assert "nope.json" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "out").exists()


def test_output_directory_must_be_empty(populated_store, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.img").write_text("x")
    before = store_state(populated_store)
    proc = osbuild("build", REPO / "pipelines" / "noop.json", "--store", populated_store, "-o", out)
    assert proc.returncode == 2
    assert f"output directory {out} is not empty" in proc.stderr
    assert store_state(populated_store) == before
    assert [p.name for p in out.iterdir()] == ["stale.img"]


@pytest.fixture(scope="module")
def invalid_schema_images(stage_images, tmp_path_factory):
    """Stage images whose schema label is there but is no JSON schema: {label value: image name}."""
    context = tmp_path_factory.mktemp("invalid-schema")
    (context / "Containerfile").write_text("FROM localhost/osbuild-oci/stage-base:latest\n")
    images = {}
    for value in ('{"type": 12}', "{not json"):
        name = unique_name("test.invalid-schema")
        assert stage_podman("build", "-q", "-t", stage_ref(name), "--label", f"org.osbuild-oci.schema={value}",
                            str(context)).returncode == 0
        images[value] = name
    yield images
    remove_default_images(*map(stage_ref, images.values()))


@pytest.mark.parametrize("label", ['{"type": 12}', "{not json"])
def test_invalid_schema_label_is_refused(populated_store, invalid_schema_images, tmp_path, label):
    path = tmp_path / "p.json"
    name = invalid_schema_images[label]
    path.write_text(json.dumps({"name": "x", "stages": [{"name": "org.osbuild.noop"}, {"name": name}]}))
    before = store_state(populated_store)
    proc = osbuild("build", path, "--store", populated_store, "-o", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: {path}: stages[1]: stage image {stage_ref(name)} has an invalid "
                               "schema label: ")
    assert store_state(populated_store) == before


def test_bad_input_does_not_create_a_new_store(stage_images, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"name": "x", "stages": [{"name": "org.osbuild.mkdir", "options": {"paths": "/a"}}]}))
    store = tmp_path / "new" / "store"
    proc = osbuild("build", path, "--store", store, "-o", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    assert "stages[0].options.paths: expected array, got string" in proc.stderr
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_a_user_who_never_built_the_stages_is_told_to(tmp_path):
    """A first build before `stages build`: the stage storage does not exist yet, which podman must not see."""
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = osbuild("build", "pipelines/debian-bookworm-tree.json", "--store", tmp_path / "store",
                   "-o", tmp_path / "out", env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "error: pipelines/debian-bookworm-tree.json: stages[0].name: no stage image "
        "localhost/osbuild-oci/org.osbuild.debootstrap:latest for 'org.osbuild.debootstrap'; run `osbuild-oci stages "
        "build` to build this repo's stages, or `osbuild-oci stages list` to see them"]
    assert not (tmp_path / "store").exists()
