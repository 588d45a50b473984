"""What a build prints: every event reaches both audiences, and user text is never read as markup."""

from __future__ import annotations

import inspect
import json

from osbuild_oci.build.monitor import JsonMonitor, Monitor, ProgressMonitor
from osbuild_oci.build.report import Recorder


def test_both_monitors_report_every_event():
    events = {name for name, member in vars(Monitor).items() if getattr(member, "__isabstractmethod__", False)}
    assert len(events) == 13
    for monitor in (JsonMonitor, ProgressMonitor, Recorder):
        assert not getattr(monitor, "__abstractmethods__", None), monitor
        for name in events:
            assert inspect.signature(getattr(monitor, name)).parameters.keys() == \
                inspect.signature(getattr(Monitor, name)).parameters.keys()


def test_progress_prints_names_and_errors_literally(capsys):
    monitor = ProgressMonitor()
    monitor.pipeline_start(name="evil [/x] [bold]name", stages=1)
    monitor.cache_unavailable(registry="reg[/]", error="refused [red]x[/red]")
    err = capsys.readouterr().err
    assert "Building evil [/x] [bold]name (1 stages)" in err
    assert "cache reg[/] unavailable, building without it: refused [red]x[/red]" in err


def test_json_events_are_one_object_a_line(capsys):
    monitor = JsonMonitor()
    monitor.stage_done(stage="s", index=0, total=2, id="a" * 64, cached=False, source="built", seconds=0.1,
                       phases={"container": 0.05, "clamp": 0.01, "sbom": 0.02, "commit": 0.01})
    monitor.build_done(tree=None, image=None, seconds=1.0)
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["stage-done", "build-done"]
    assert json.loads(lines[0]) == {"event": "stage-done", "stage": "s", "index": 0, "total": 2, "id": "a" * 64,
                                    "cached": False, "source": "built", "seconds": 0.1,
                                    "phases": {"container": 0.05, "clamp": 0.01, "sbom": 0.02, "commit": 0.01}}


def test_an_untrusted_cache_is_one_line_on_stderr_for_both_audiences(capsys):
    JsonMonitor().cache_untrusted(image="reg/trees:[b]id", reason="it has no signature")
    out, err = capsys.readouterr()
    assert json.loads(out) == {"event": "cache-untrusted", "image": "reg/trees:[b]id", "reason": "it has no signature"}
    assert err == "cache reg/trees:[b]id not trusted, building the stage here: it has no signature\n"
    ProgressMonitor().cache_untrusted(image="reg/trees:id", reason="it has no signature")
    assert capsys.readouterr() == ("", "cache reg/trees:id not trusted, building the stage here: it has no signature\n")
