"""Registry credentials come from exactly the files, in the order, that containers-auth.json(5) gives."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from osbuild_oci.registry import references as registry
from osbuild_oci.errors import RegistryError


def _auth(user: str) -> dict:
    return {"auth": base64.b64encode(f"{user}:pw-{user}".encode()).decode()}


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    for var in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def test_primary_file_without_a_runtime_dir_is_where_podman_login_writes(home):
    assert registry.auth_files()[0] == Path(f"/run/containers/{os.getuid()}/auth.json")
    assert registry.auth_files()[1:] == [home / ".config/containers/auth.json", home / ".docker/config.json",
                                         home / ".dockercfg"]


def test_order_override_runtime_config_docker(home, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "cfg"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(home / "explicit.json"))
    assert registry.auth_files() == [home / "explicit.json", home / "run/containers/auth.json",
                                     home / "cfg/containers/auth.json", home / ".docker/config.json",
                                     home / ".dockercfg"]
    _write(home / ".docker/config.json", {"auths": {"reg.example:5000": _auth("docker")}})
    assert registry.credentials("reg.example:5000/ns/app:1")["username"] == "docker"
    _write(home / "cfg/containers/auth.json", {"auths": {"reg.example:5000": _auth("config")}})
    assert registry.credentials("reg.example:5000/ns/app:1")["username"] == "config"
    _write(home / "run/containers/auth.json", {"auths": {"reg.example:5000": _auth("runtime")}})
    assert registry.credentials("reg.example:5000/ns/app:1") == {"username": "runtime", "password": "pw-runtime"}
    _write(home / "explicit.json", {"auths": {"reg.example:5000": _auth("explicit")}})
    assert registry.credentials("reg.example:5000/ns/app:1")["username"] == "explicit"


def test_the_most_specific_namespace_wins(home, monkeypatch):
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(home / "a.json"))
    _write(home / "a.json", {"auths": {"https://reg.example": _auth("registry"), "reg.example/team": _auth("team"),
                                       "reg.example/team/app": _auth("app")}})
    assert registry.credentials("reg.example/team/app@sha256:" + "0" * 64)["username"] == "app"
    assert registry.credentials("reg.example/team/other:1")["username"] == "team"
    assert registry.credentials("reg.example/teamx/app")["username"] == "registry"
    assert registry.credentials("other.example/team/app") is None
    assert registry.credentials("localbox/app") is None, "a short name names no registry"


def test_legacy_dockercfg_is_read(home):
    _write(home / ".dockercfg", {"reg.example": _auth("legacy")})
    assert registry.credentials("reg.example/app")["username"] == "legacy"


def test_cred_helpers_and_creds_store_run_the_helper_program(home, monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-testing"
    helper.write_text('#!/bin/sh\nread -r host\n'
                      '[ "$1" = get ] && printf \'{"ServerURL":"%s","Username":"helper-%s","Secret":"s"}\' '
                      '"$host" "$host"\n')
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(home / "a.json"))
    _write(home / "a.json", {"auths": {"reg.example": _auth("plain"), "other.example": _auth("other")},
                             "credHelpers": {"reg.example": "testing"}})
    assert registry.credentials("reg.example/app") == {"username": "helper-reg.example", "password": "s"}
    assert registry.credentials("other.example/app")["username"] == "other"
    _write(home / "a.json", {"credsStore": "testing"})
    assert registry.credentials("third.example/app")["username"] == "helper-third.example"


@pytest.mark.parametrize("reason,missing", [
    ("reading manifest 1 in 127.0.0.1:5000/ns/trees: manifest unknown: manifest unknown", True),
    ("initializing source docker://127.0.0.1:5000/nope:1: reading manifest 1 in 127.0.0.1:5000/nope: "
     "name unknown: repository name not known to registry", True),
    ("pinging container registry 127.0.0.1:5000: connect: connection refused", False),
    ("unauthorized: authentication required", False),
    ("http: server gave HTTP response to HTTPS client (a 404 page was not found)", False),
])
def test_a_missing_image_is_told_by_the_registry_error_code(reason, missing):
    assert RegistryError("127.0.0.1:5000/ns/trees:1", "pull", reason).missing is missing
