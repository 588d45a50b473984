"""The cache keys: a stage id and a stage image's source digest change exactly when their inputs do."""

from __future__ import annotations

import hashlib
import shutil

from osbuild_oci.ids import source_digest, stage_id

IMAGE = "a" * 64


def test_stage_id_is_canonical_over_option_order():
    assert stage_id(None, IMAGE, {"a": 1, "b": [1, 2]}, 0, "amd64") == stage_id(None, IMAGE, {"b": [1, 2], "a": 1}, 0, "amd64")


def test_stage_id_changes_with_each_input():
    first = stage_id("p" * 64, IMAGE, {"a": 1}, 0, "amd64")
    # The documented formula, written out: every machine must compute the same id for the same inputs.
    canonical = '{"arch":"amd64","image":"%s","options":{"a":1},"parent":"%s","source_epoch":0}' % (IMAGE, "p" * 64)
    assert first == hashlib.sha256(canonical.encode()).hexdigest()
    assert stage_id("q" * 64, IMAGE, {"a": 1}, 0, "amd64") != first
    assert stage_id("p" * 64, "b" * 64, {"a": 1}, 0, "amd64") != first
    assert stage_id("p" * 64, IMAGE, {"a": 2}, 0, "amd64") != first
    assert stage_id(None, IMAGE, {"a": 1}, 0, "amd64") != first
    assert stage_id("p" * 64, IMAGE, {"a": 1}, 1, "amd64") != first, "trees of different epochs never share an id"
    assert stage_id("p" * 64, IMAGE, {"a": 1}, 0, "arm64") != first, \
        "an arm64 and an amd64 tree never share an id, even for a stage without an arch option"


def test_source_digest_follows_bytes_modes_and_paths(tmp_path):
    folder = tmp_path / "stage"
    folder.mkdir()
    (folder / "stage").write_text("#!/bin/sh\n")
    (folder / "stage").chmod(0o644)
    (folder / "schema.json").write_text("{}")
    plain = source_digest(folder, "base")
    assert source_digest(folder, "base") == plain
    assert source_digest(folder, "other base") != plain

    (folder / "stage").chmod(0o755)
    executable = source_digest(folder, "base")
    assert executable != plain, "fixing a missing +x must rebuild the image"

    (folder / "sub").mkdir()
    shutil.move(folder / "schema.json", folder / "sub" / "schema.json")
    assert source_digest(folder, "base") != executable, "moving a file into a subfolder must rebuild the image"

    moved = source_digest(folder, "base")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "stage.cpython-311.pyc").write_bytes(b"\0")
    assert source_digest(folder, "base") == moved, "byte-code pip or a test left behind is no source"

    (folder / "sub" / "schema.json").write_text('{"type": "object"}')
    assert source_digest(folder, "base") != moved


def test_inputs_enter_the_id_only_of_a_stage_that_reads_some():
    plain = stage_id("p" * 64, IMAGE, {"a": 1}, 0, "amd64")
    assert stage_id("p" * 64, IMAGE, {"a": 1}, 0, "amd64", {}) == plain, "no inputs: the id it always had"
    read = stage_id("p" * 64, IMAGE, {"a": 1}, 0, "amd64", {"context:app": "sha256:" + "1" * 64})
    canonical = ('{"arch":"amd64","image":"%s","inputs":{"context:app":"sha256:%s"},"options":{"a":1},"parent":"%s",'
                 '"source_epoch":0}' % (IMAGE, "1" * 64, "p" * 64))
    assert read == hashlib.sha256(canonical.encode()).hexdigest()
    assert stage_id("p" * 64, IMAGE, {"a": 1}, 0, "amd64", {"context:app": "sha256:" + "2" * 64}) != read
