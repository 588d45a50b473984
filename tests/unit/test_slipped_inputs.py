"""Inputs that used to slip: an empty --source, a key sealed with no passphrase, trust keys left behind by sudo."""

from __future__ import annotations

import os

import pytest

from helpers import User, osbuild


@pytest.mark.parametrize("make", [False, True])
def test_stages_build_from_a_missing_or_empty_source_is_refused(tmp_path, make):
    source = tmp_path / "stages-of-mine"
    if make:
        (source / "stages").mkdir(parents=True)
    proc = osbuild("stages", "build", "--source", source)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: --source {source} {'has no stages/NAME/Containerfile or assemblers/NAME/Containerfile' if make else 'does not exist'}"
        "; give the directory that holds stages/ and assemblers/"]


def test_a_key_without_a_passphrase_is_made_with_a_warning_naming_the_way_out(tmp_path):
    plain = osbuild("key", "generate", tmp_path / "plain")
    assert plain.returncode == 0
    assert plain.stderr == (f"warning: {tmp_path}/plain.key is sealed with the empty passphrase: whoever can read the "
                            "file can sign with it; give --passphrase-file FILE to seal it with a passphrase\n")
    (tmp_path / "pass").write_text("secret\n")
    sealed = osbuild("key", "generate", tmp_path / "sealed", "--passphrase-file", tmp_path / "pass")
    assert sealed.returncode == 0 and sealed.stderr == ""


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="makes a user to sudo from")
def test_trust_keys_of_the_user_sudo_came_from_are_not_silently_dropped(tmp_path):
    user = User("osbuild-oci-sudoer")
    try:
        config = user.home / ".config" / "osbuild-oci" / "config.toml"
        config.parent.mkdir(parents=True)
        config.write_text('trust-keys = ["team.pub"]\n')
        env = {"SUDO_USER": user.name, "HOME": str(tmp_path), "XDG_CONFIG_HOME": None, "OSBUILD_OCI_CONFIG": None}
        proc = osbuild("build", tmp_path / "missing.json", env=env)
        assert proc.returncode == 2
        assert proc.stderr.splitlines()[0] == (
            f"warning: {config} of {user.name} names trust-keys, but under sudo this command reads "
            f"{tmp_path}/.config/osbuild-oci/config.toml, which does not exist, so no signature is checked; run it "
            f"as {user.name}, or pass OSBUILD_OCI_CONFIG={config} or --trust-key")
        assert "warning" not in osbuild("build", tmp_path / "missing.json", "--trust-key", tmp_path / "k.pub",
                                        env=env).stderr
    finally:
        user.remove()
