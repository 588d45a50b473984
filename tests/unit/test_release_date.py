"""What a Debian stage reports as its tree's Release date: the newest Date of the Release files apt fetched."""

from __future__ import annotations

from helpers import load_program

stage = load_program("stages", "org.osbuild.apt", "stage").osbuild_stage


def test_the_newest_release_date_is_reported_in_utc(tmp_path, monkeypatch):
    lists = tmp_path / "tree" / "var" / "lib" / "apt" / "lists"
    lists.mkdir(parents=True)
    (lists / "deb.debian.org_debian_dists_bookworm_InRelease").write_text(
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\nDate: Sat, 08 Nov 2025 10:11:12 UTC\n")
    (lists / "security_dists_bookworm-security_Release").write_text("Date: Tue, 25 Nov 2025 23:30:00 +0100\n")
    (lists / "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages").write_text("Date: not this\n")
    meta = tmp_path / "meta"
    meta.mkdir()
    monkeypatch.setattr(stage, "META", str(meta))
    stage.record_release_date(str(tmp_path / "tree"))
    assert (meta / "release-date").read_text() == "2025-11-25T22:30:00Z"


def test_no_lists_report_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(stage, "META", str(tmp_path))
    stage.record_release_date(str(tmp_path / "empty-tree"))
    assert list(tmp_path.iterdir()) == []
