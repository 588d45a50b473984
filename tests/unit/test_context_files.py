"""What a stage reads of a build context: exactly the files a path names, hashed as a copy would hold them, never
through a link, and the snapshot holding the bytes that were hashed."""

from __future__ import annotations

import os
import threading

import pytest

from osbuild_oci import safefiles
from osbuild_oci.ids import files_digest
from osbuild_oci.store.files import selection


def context_files(context, path):
    return selection(str(context), path, "the build context")


def context_digest(files):
    return files_digest(files, "context")


@pytest.fixture
def context(tmp_path):
    root = tmp_path / "context"
    (root / "app/etc/conf.d").mkdir(parents=True)
    (root / "app/etc/app.conf").write_text("port = 8080\n")
    (root / "app/etc/conf.d/extra.conf").write_text("debug = no\n")
    (root / "app/bin").mkdir()
    (root / "app/bin/run").write_text("#!/bin/sh\n")
    (root / "app/bin/run").chmod(0o755)
    (root / "unrelated.txt").write_text("not read\n")
    (tmp_path / "host-secret").write_text("the host's own file\n")
    return root


def digest(context, path="app/etc"):
    return context_digest(context_files(context, path))


def test_only_the_named_files_count(context):
    before = digest(context)
    (context / "unrelated.txt").write_text("changed\n")
    (context / "app/bin/run").write_text("#!/bin/sh\nexit 1\n")
    assert digest(context) == before, "a file outside the named folder changes nothing"
    (context / "app/etc/conf.d/extra.conf").write_text("debug = yes\n")
    assert digest(context) != before, "a changed file inside it changes the digest"


def test_names_folders_and_the_executable_bit_count_but_not_times_owners_or_other_mode_bits(context):
    before = digest(context)
    os.utime(context / "app/etc/app.conf", (0, 0))
    (context / "app/etc/app.conf").chmod(0o600)
    assert digest(context) == before, "times and mode bits other than +x are the checkout's, not the content"
    (context / "app/etc/app.conf").chmod(0o700)
    executable = digest(context)
    assert executable != before
    (context / "app/etc/empty").mkdir()
    assert digest(context) != executable, "an empty folder is copied, so it counts"
    (context / "app/etc/empty").rmdir()
    (context / "app/etc/app.conf").rename(context / "app/etc/renamed.conf")
    assert digest(context) != executable


def test_the_walk_is_depth_first_in_name_order(context):
    assert [path for path, _, _ in context_files(context, "app")] == [
        "app", "app/bin", "app/bin/run", "app/etc", "app/etc/app.conf", "app/etc/conf.d", "app/etc/conf.d/extra.conf"]
    assert [(path, kind) for path, kind, _ in context_files(context, "./app//bin/run")] == [("app/bin/run", "x")]


@pytest.mark.parametrize("where", ["app/etc/app.conf", "app/etc/conf.d", "app"])
def test_a_link_inside_or_on_the_way_is_refused(context, tmp_path, where):
    target = context / where
    target.rename(tmp_path / "moved")
    target.symlink_to(tmp_path / "moved" if where != "app/etc/app.conf" else tmp_path / "host-secret")
    with pytest.raises(safefiles.Refused, match="symbolic link"):
        context_files(context, "app/etc")


def test_a_fifo_is_refused_without_being_opened(context):
    os.mkfifo(context / "app/etc/pipe")
    done = threading.Event()

    def walk():
        with pytest.raises(safefiles.Refused, match="no regular file or directory"):
            context_files(context, "app/etc")
        done.set()

    threading.Thread(target=walk, daemon=True).start()
    assert done.wait(5), "opening the FIFO would block the reader for good"


def test_a_missing_path_is_file_not_found(context):
    with pytest.raises(FileNotFoundError):
        context_files(context, "app/nothing")


def test_the_copy_holds_what_was_hashed_with_only_the_executable_bit_kept(context, tmp_path):
    (context / "app/etc/app.conf").chmod(0o640)
    copied = selection(str(context), "app", "the build context", tmp_path / "snapshot")
    assert context_digest(copied) == digest(context, "app")
    assert context_digest(context_files(tmp_path / "snapshot", "app")) == digest(context, "app")
    assert (tmp_path / "snapshot/app/etc/app.conf").read_text() == "port = 8080\n"
    assert (tmp_path / "snapshot/app/etc/app.conf").stat().st_mode & 0o7777 == 0o644
    assert (tmp_path / "snapshot/app/bin/run").stat().st_mode & 0o7777 == 0o755
    assert not (tmp_path / "snapshot/unrelated.txt").exists()

