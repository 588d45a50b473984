"""The context snapshot a stage's container sees: exactly the files its id names, or the build stops."""

from __future__ import annotations

import pytest

from osbuild_oci.build.inputs import Resolver
from osbuild_oci.build.snapshot import _context
from osbuild_oci.errors import BuildError
from osbuild_oci.pipeline.model import Step


def planned(context, *sources):
    step = Step("org.osbuild-oci.copy", "stages[0]",
                {"items": [{"from": "context", "source": source, "destination": "/x"} for source in sources]})
    return list(Resolver(context, {}, lambda ref, where: None).resolve(step))


@pytest.fixture
def context(tmp_path):
    (tmp_path / "ctx/app/etc").mkdir(parents=True)
    (tmp_path / "ctx/app/etc/app.conf").write_text("port = 8080\n")
    (tmp_path / "ctx/app/bin").mkdir()
    (tmp_path / "ctx/app/bin/run").write_text("#!/bin/sh\n")
    (tmp_path / "ctx/other").write_text("not named\n")
    return tmp_path / "ctx"


def test_the_snapshot_holds_what_the_options_name_once(context, tmp_path):
    _context(context, planned(context, "app/etc/app.conf", "app", "app/etc"), tmp_path / "snapshot")
    assert sorted(str(p.relative_to(tmp_path / "snapshot")) for p in (tmp_path / "snapshot").rglob("*")) == [
        "app", "app/bin", "app/bin/run", "app/etc", "app/etc/app.conf"]


def test_a_context_changed_after_planning_stops_the_build(context, tmp_path):
    inputs = planned(context, "app/etc")
    (context / "app/etc/app.conf").write_text("port = 9090\n")
    with pytest.raises(BuildError, match=r"^stages\[0\]\.options\.items\[0\]: the build context's app/etc changed "
                                         "after the build was planned"):
        _context(context, inputs, tmp_path / "snapshot")
