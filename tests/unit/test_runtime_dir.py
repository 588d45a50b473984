"""The store's podman socket lives in a directory only its user can reach."""

from __future__ import annotations

import os

import pytest

from osbuild_oci.engine.host import private_dir
from osbuild_oci.engine.service import Service
from osbuild_oci.errors import EngineError


def test_created_0700_and_a_loose_mode_is_tightened(tmp_path):
    made = private_dir(tmp_path / "parent" / "run")
    assert (made.stat().st_mode & 0o777, made.parent.stat().st_mode & 0o777) == (0o700, 0o700)
    made.chmod(0o755)
    private_dir(made)
    assert made.stat().st_mode & 0o777 == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory of another user needs root")
def test_a_directory_of_another_user_is_refused(tmp_path):
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o700)
    os.chown(planted, 65534, 65534)
    with pytest.raises(EngineError) as caught:
        private_dir(planted / "run")
    assert f"{planted} is not a directory of this user" in str(caught.value)


def test_a_symlink_in_its_place_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "run").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(EngineError):
        private_dir(tmp_path / "run" / "x")


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory of another user needs root")
def test_a_planted_scratch_directory_is_refused_naming_tmpdir(tmp_path, monkeypatch):
    """/var/tmp is everyone's: a directory someone else made under a store's scratch name is not used."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    planted = tmp_path / f"osbuild-oci-{os.geteuid()}"
    planted.mkdir(mode=0o700)
    os.chown(planted, 65534, 65534)
    with pytest.raises(EngineError) as caught:
        Service(tmp_path / "store").scratch_dir()
    assert str(caught.value) == (f"{planted} is not a directory of this user (uid 0); remove it or set TMPDIR "
                                 "to a directory of your own")
