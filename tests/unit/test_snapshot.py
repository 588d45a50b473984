"""The `snapshot` option of org.osbuild.debootstrap and org.osbuild.apt: the sources it writes, no download
(snapshot.debian.org is not reachable from the machines the suite runs on)."""

from __future__ import annotations

import pytest

from helpers import load_program

debootstrap = load_program("stages", "org.osbuild.debootstrap", "stage")
apt = load_program("stages", "org.osbuild.apt", "stage")
STAMP = "20240101T000000Z"


def test_debootstrap_without_snapshot_uses_the_mirror():
    assert debootstrap.mirror({"suite": "bookworm"}) == "http://deb.debian.org/debian"


def test_debootstrap_snapshot_is_the_mirror_at_that_time_and_the_trees_source():
    line = debootstrap.mirror({"suite": "bookworm", "components": ["main", "contrib"], "snapshot": STAMP})
    assert line == ("deb [check-valid-until=no] http://snapshot.debian.org/archive/debian/20240101T000000Z/ "
                    "bookworm main contrib")


def test_apt_snapshot_rewrites_the_trees_own_sources_for_the_run(tmp_path):
    (tmp_path / "etc" / "apt" / "sources.list.d").mkdir(parents=True)
    (tmp_path / "etc" / "apt" / "sources.list").write_text(
        "# comment\ndeb http://deb.debian.org/debian bookworm main\n")
    (tmp_path / "etc" / "apt" / "sources.list.d" / "security.list").write_text(
        "deb [arch=amd64 check-valid-until=yes] http://security.debian.org/debian-security bookworm-security main\n")
    assert apt.run_sources(str(tmp_path), {"snapshot": STAMP}) == [
        "deb [check-valid-until=no] http://snapshot.debian.org/archive/debian/20240101T000000Z/ bookworm main",
        "deb [arch=amd64 check-valid-until=no] http://snapshot.debian.org/archive/debian-security/20240101T000000Z/ "
        "bookworm-security main"]
    assert apt.run_sources(str(tmp_path), {}) is None, "without snapshot or sources: the tree's own, unchanged"


def test_apt_snapshot_applies_to_given_sources_and_refuses_deb822(tmp_path):
    given = ["deb http://deb.debian.org/debian trixie main"]
    assert apt.run_sources(str(tmp_path), {"sources": given, "snapshot": STAMP}) == [
        "deb [check-valid-until=no] http://snapshot.debian.org/archive/debian/20240101T000000Z/ trixie main"]
    (tmp_path / "etc" / "apt" / "sources.list.d").mkdir(parents=True)
    (tmp_path / "etc" / "apt" / "sources.list.d" / "debian.sources").write_text("Types: deb\n")
    with pytest.raises(apt.osbuild_stage.StageError, match="deb822"):
        apt.run_sources(str(tmp_path), {"snapshot": STAMP})
