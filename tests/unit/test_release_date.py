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


def test_the_orchestrator_takes_only_a_plain_well_formed_report(tmp_path):
    """What a stage left in /run/osbuild/meta is read as hostile: a link, a FIFO or an endless file is ignored."""
    import os
    import threading

    from osbuild_oci.build.runner import _reported
    (tmp_path / "host").write_text("2025-11-25T22:30:00Z")
    cases = {"plain": lambda meta: (meta / "release-date").write_text("2025-11-25T22:30:00Z\n"),
             "garbled": lambda meta: (meta / "release-date").write_bytes(b"\xff2025"),
             "link": lambda meta: os.symlink(tmp_path / "host", meta / "release-date"),
             "fifo": lambda meta: os.mkfifo(meta / "release-date"),
             "sparse": lambda meta: os.truncate(os.open(meta / "release-date", os.O_CREAT | os.O_WRONLY), 1 << 40)}
    seen = {}
    for name, plant in cases.items():
        meta = tmp_path / name
        meta.mkdir()
        plant(meta)
        reader = threading.Thread(target=lambda: seen.setdefault(name, _reported(str(meta))), daemon=True)
        reader.start()
        reader.join(5)
    assert seen == {"plain": {"org.osbuild-oci.release-date": "2025-11-25T22:30:00Z"}, "garbled": {}, "link": {},
                    "fifo": {}, "sparse": {}}
