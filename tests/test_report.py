"""What CI sees of a build: `--report` (an HTML page, rendered here by headless Chromium), `--junit`, and the
`--json` events that say how a build ended, also when a stage failed."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ElementTree

import pytest

from helpers import mkdir_stage, run_build

CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def pipeline(testing_stage: str, fail: bool = False) -> dict:
    return {"name": "reported", "stages": [
        mkdir_stage("report"),
        {"name": testing_stage, "options": {"note": "report", "fail": fail}},
    ], "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}}


@pytest.fixture(scope="module")
def reported(testing_stage, shared_store, tmp_path_factory):
    """One build (the tar assembler, so the output has an SBOM beside it) with both reports."""
    tmp = tmp_path_factory.mktemp("report")
    result = run_build(pipeline(testing_stage), shared_store, tmp / "out", "--report", str(tmp / "report.html"),
                       "--junit", str(tmp / "junit.xml"))
    assert result.returncode == 0, result.stderr
    return result, tmp


def test_the_html_report_renders_and_its_timeline_shows_every_stage(reported, tmp_path):
    result, tmp = reported
    profile = tmp_path / "profile"
    dom = subprocess.run([*CHROMIUM, f"--user-data-dir={profile}", "--dump-dom", f"file://{tmp / 'report.html'}"],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rows = [row for row in dom.stdout.split("<tr class=\"stage\">")[1:]]
    stages = [e["stage"] for e in result.of("stage-done")]
    assert len(rows) == len(stages) == 2
    for row, stage in zip(rows, stages):
        assert stage in row and "class=\"bar" in row
    assert "<p id=\"verdict\">built in" in dom.stdout
    digest = subprocess.run(["sha256sum", str(tmp / "out" / "tree.tar")], capture_output=True, text=True).stdout.split()[0]
    assert digest in dom.stdout, "the output's digest"
    assert "href=\"out/tree.tar.spdx.json\"" in dom.stdout, "a link to the SPDX file beside the output"
    shot = subprocess.run([*CHROMIUM, f"--user-data-dir={profile}", f"--screenshot={tmp_path / 'page.png'}",
                           "--window-size=1000,700", f"file://{tmp / 'report.html'}"], capture_output=True, timeout=120)
    assert shot.returncode == 0 and (tmp_path / "page.png").stat().st_size > 5000, "the page renders to pixels"


def test_junit_has_a_test_case_per_stage_and_the_assembler(reported):
    _, tmp = reported
    suite = ElementTree.parse(tmp / "junit.xml").getroot()
    names = [case.get("name") for case in suite.iter("testcase")]
    assert names[:2] == ["01 org.osbuild-oci.files", f"02 {names[1].split(' ', 1)[1]}"]
    assert names[2] == "assembler org.osbuild.tar"
    assert suite.get("tests") == "3" and suite.get("failures") == "0"


def test_a_failed_build_says_so_in_its_events_and_reports(testing_stage, shared_store, tmp_path):
    result = run_build(pipeline(testing_stage, fail=True), shared_store, tmp_path / "out",
                       "--junit", str(tmp_path / "junit.xml"))
    assert result.returncode == 1
    failed = result.of("stage-failed")
    assert [(e["stage"], e["index"]) for e in failed] == [(testing_stage, 1)]
    assert "failing as asked" in failed[0]["error"]
    assert failed[0]["kept"] == f"localhost/osbuild-oci/trees:failed-{failed[0]['id']}"
    ended = result.of("build-failed")
    assert len(ended) == 1 and ended[0]["status"] == 1 and ended[0]["kept"] == failed[0]["kept"]
    assert result.events[-1]["event"] == "build-failed", "the last event says how the build ended"
    case = [c for c in ElementTree.parse(tmp_path / "junit.xml").getroot().iter("testcase")][1]
    assert case.find("failure") is not None and "exit status 3" in case.find("failure").get("message")


def test_bad_input_ends_with_a_build_failed_event_of_status_2(shared_store, stage_images, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "stages": [{"name": "org.osbuild.hostname", "options": {"x": 1}}]}))
    result = run_build(path, shared_store, tmp_path / "out")
    assert result.returncode == 2
    assert [(e["event"], e["status"]) for e in result.events] == [("build-failed", 2)]
