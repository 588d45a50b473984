"""`build --secret NAME=FILE`: a key file only the assembler that names it reads, and that nothing keeps.

The assembler here is a test image of its own that writes a digest of the secret it was given, so the test
sees the secret arrive without the secret itself reaching any output.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from helpers import build_stage, mkdir_stage, osbuild, remove_default_images, run_build, stage_ref, unique_name, \
    write_stage

ASSEMBLER = '''#!/usr/bin/python3
import hashlib, os
import osbuild_stage

def assemble(tree, options, output):
    with open(osbuild_stage.secret(options["key"]), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with open(os.path.join(output, options["filename"]), "w") as f:
        f.write(digest)

osbuild_stage.main(assemble)
'''
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["filename", "key"],
          "properties": {"filename": {"type": "string"},
                         "key": {"type": "object", "additionalProperties": False, "required": ["secret"],
                                 "properties": {"secret": {"type": "string"}}}}}
SECRET = b"correct horse battery staple\n"


@pytest.fixture(scope="module")
def assembler(tmp_path_factory, stage_images) -> str:
    name = unique_name("test.secret-assembler")
    root = tmp_path_factory.mktemp("secret-source")
    write_stage(root, name, ASSEMBLER, SCHEMA, kind="assemblers")
    build_stage(root, name)
    yield name
    remove_default_images(stage_ref(name))


def pipeline(assembler: str, stage_options: dict | None = None) -> dict:
    stages = [mkdir_stage("secret test")]
    if stage_options is not None:
        stages.append({"name": "org.osbuild-oci.files", "options": stage_options})
    return {"name": "secret", "stages": stages,
            "assembler": {"name": assembler, "options": {"filename": "digest", "key": {"secret": "disk-key"}}}}


def test_the_assembler_reads_the_secret_and_nothing_keeps_it(assembler, shared_store, tmp_path):
    key = tmp_path / "key"
    key.write_bytes(SECRET)
    key.chmod(0o600)
    lock = tmp_path / "p.lock"
    first = run_build(pipeline(assembler), shared_store, tmp_path / "out", "--secret", f"disk-key={key}",
                      "--lock", str(lock))
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "out" / "digest").read_text() == hashlib.sha256(SECRET).hexdigest()
    secret = SECRET.strip().decode()
    for name, text in (("stdout", first.stdout), ("stderr", first.stderr), ("lock file", lock.read_text()),
                       ("SBOM", (tmp_path / "out" / "digest.spdx.json").read_text())):
        assert secret not in text, f"the secret is in the {name}"
    found = subprocess.run(["grep", "-rlF", secret, str(shared_store)], capture_output=True, text=True)
    assert found.stdout == "", f"the secret is in the store: {found.stdout}"
    # Made with a secret, the output is not kept: the next build runs the assembler again.
    again = run_build(pipeline(assembler), shared_store, tmp_path / "again", "--secret", f"disk-key={key}")
    assert again.returncode == 0, again.stderr
    assert [(e["cached"], e["source"]) for e in again.of("assembler-done")] == [(False, "built")]


def test_a_secret_the_options_name_must_be_given(assembler, shared_store, tmp_path):
    proc = run_build(pipeline(assembler), shared_store, tmp_path / "out")
    assert proc.returncode == 2
    assert "assembler.options.key: the options name secret 'disk-key'; give its file with --secret disk-key=FILE" \
        in proc.stderr
    assert proc.of("stage-start") == []


def test_a_stage_is_given_no_secret(assembler, shared_store, tmp_path):
    key = tmp_path / "key"
    key.write_bytes(SECRET)
    options = {"files": [{"path": "/srv/x", "content": "x"}], "key": {"secret": "disk-key"}}
    proc = run_build(pipeline(assembler, options), shared_store, tmp_path / "out", "--secret", f"disk-key={key}")
    assert proc.returncode == 2
    assert "stages[1].options.key: secret 'disk-key': secrets are given to assemblers only" in proc.stderr


@pytest.mark.parametrize("given, said", [("disk-key", "give NAME=FILE"), ("../x=/etc/hostname", "give NAME=FILE"),
                                         ("disk-key=/nonexistent", "is not a file you can read")])
def test_a_bad_secret_argument_is_refused_before_anything_runs(given, said, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"name": "x", "stages": []}))
    proc = osbuild("build", path, "--store", tmp_path / "store", "--secret", given)
    assert proc.returncode == 2
    assert said in proc.stderr and "Traceback" not in proc.stderr
    assert not Path(tmp_path / "store").exists()
