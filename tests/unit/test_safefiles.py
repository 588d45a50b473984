"""Reading inside a hostile tree: links, FIFOs, endless and absolute names are refused, never followed or waited on."""

from __future__ import annotations

import os
import threading

import pytest

from osbuild_oci import safefiles


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("Package: a\n")
    (tmp_path / "host-secret").write_text("the host's own file\n")
    return root


def test_a_regular_file_is_read_and_a_missing_one_is_none(tree):
    assert safefiles.read(str(tree), "var/lib/dpkg/status", 100) == b"Package: a\n"
    assert safefiles.read(str(tree), "/var/lib/dpkg/status", 100) == b"Package: a\n", "absolute means the tree's"
    assert safefiles.read(str(tree), "var/lib/dpkg/nothing", 100) is None
    assert safefiles.read(str(tree), "var/lib/dpkg/status/below", 100) is None
    assert safefiles.read(str(tree), "usr/share/doc/x/copyright", 100) is None


@pytest.mark.parametrize("where", ["var/lib/dpkg/status", "var/lib", "var"])
def test_a_link_anywhere_on_the_path_is_refused(tree, tmp_path, where):
    target = tree / where
    moved = tmp_path / "moved"
    os.rename(target, moved)
    os.symlink(moved if where != "var/lib/dpkg/status" else tmp_path / "host-secret", target)
    with pytest.raises(safefiles.Refused, match="symbolic link"):
        safefiles.read(str(tree), "var/lib/dpkg/status", 100)


def test_a_link_inside_the_tree_is_refused_too(tree):
    (tree / "etc").mkdir()
    os.symlink("../var/lib/dpkg/status", tree / "etc/status")
    with pytest.raises(safefiles.Refused, match="symbolic link"):
        safefiles.read(str(tree), "etc/status", 100)
    assert safefiles.link(str(tree), "etc/status") == "../var/lib/dpkg/status"
    assert safefiles.link(str(tree), "var/lib/dpkg/status") is None
    assert safefiles.link(str(tree), "nothing/here") is None


@pytest.mark.parametrize("path", ["../host-secret", "var/../../host-secret", "", "a\0b"])
def test_names_that_leave_the_tree_are_refused(tree, path):
    with pytest.raises(safefiles.Refused, match="no path inside a tree"):
        safefiles.read(str(tree), path, 100)


def test_a_fifo_is_refused_at_once(tree):
    os.mkfifo(tree / "var/lib/dpkg/fifo")
    result: list = []
    reader = threading.Thread(target=lambda: result.append(_refusal(tree, "var/lib/dpkg/fifo")), daemon=True)
    reader.start()
    reader.join(5)
    assert result and "not a regular file" in result[0], "a FIFO must not block the reader"


def test_a_directory_is_refused(tree):
    assert "not a regular file" in _refusal(tree, "var/lib")


def test_a_huge_sparse_file_is_refused_without_reading_it(tree):
    with open(tree / "var/lib/dpkg/status", "wb") as f:
        f.truncate(1 << 40)
    assert "holds 1099511627776 bytes, more than the 1048576" in _refusal(tree, "var/lib/dpkg/status", 1 << 20)


def test_the_cap_is_inclusive(tree):
    assert safefiles.read(str(tree), "var/lib/dpkg/status", 11) == b"Package: a\n"
    assert "more than the 10" in _refusal(tree, "var/lib/dpkg/status", 10)


def _refusal(tree, path: str, limit: int = 100) -> str:
    with pytest.raises(safefiles.Refused) as err:
        safefiles.read(str(tree), path, limit)
    return str(err.value)
