"""Installed as a user installs a Python tool (a wheel, not a checkout), osbuild-oci builds its own stages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import REPO


@pytest.mark.slow
def test_a_wheel_installed_elsewhere_builds_its_stages_and_a_pipeline(tmp_path, stage_images):
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    installed = subprocess.run([venv / "bin/pip", "install", "-q", *wheels.glob("*.whl")], capture_output=True,
                               text=True)
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    tool = str(venv / "bin/osbuild-oci")

    stages = subprocess.run([tool, "stages", "build"], cwd=elsewhere, capture_output=True, text=True)
    assert stages.returncode == 0, stages.stderr
    assert "Traceback" not in stages.stderr
    lines = stages.stdout.splitlines()
    assert "localhost/osbuild-oci/org.osbuild.noop:latest  up to date" in lines, \
        "the installed sources are the checkout's, so the images the checkout built are up to date"
    listed = json.loads(subprocess.run([tool, "stages", "list", "--json"], cwd=elsewhere, capture_output=True,
                                       text=True, check=True).stdout)
    assert listed and all(s["id"] for s in listed)

    (elsewhere / "p.json").write_text((REPO / "pipelines" / "noop.json").read_text())
    build = subprocess.run([tool, "build", "p.json", "--store", "store", "-o", "out", "--json"], cwd=elsewhere,
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    done = [json.loads(line) for line in build.stdout.splitlines() if '"build-done"' in line]
    assert done and len(done[0]["tree"]) == 64
    subprocess.run([tool, "store", "delete", "--store", "store"], cwd=elsewhere, check=True)
