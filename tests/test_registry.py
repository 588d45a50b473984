"""Stages and cached trees travel through a real registry (Debian's docker-registry on loopback)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, osbuild, podman, start_registry
from test_cache import MINBASE, tree_tags

HTTP = "--no-tls-verify"


def pipeline(last: str = "one") -> dict:
    return {"name": "shared", "base": MINBASE, "stages": [
        {"name": "org.osbuild.noop", "options": {"registry": 1}},
        {"name": "org.osbuild.mkdir", "options": {"files": [{"path": "/etc/motd", "content": "hello\n"}]}},
        {"name": "org.osbuild.mkdir", "options": {"files": [{"path": "/srv/last", "content": last}]}},
    ], "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}}


def blobs(data: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_size for p in (data / "docker/registry/v2/blobs").rglob("data")}


def skopeo_inspect(ref: str) -> dict:
    proc = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def published(registry, stage_images):
    """Stage images pushed once: {name: pinned reference}."""
    address, _ = registry
    proc = osbuild("stages", "push", f"{address}/osbuild", HTTP)
    assert proc.returncode == 0, proc.stderr
    pinned = {line.split("@")[0].rsplit("/", 1)[1]: line.strip() for line in proc.stdout.splitlines() if "@" in line}
    assert "org.osbuild.noop" in pinned and "org.osbuild.tar" in pinned
    return pinned


@pytest.fixture(scope="module")
def first_machine(registry, published, tmp_path_factory):
    """A build on 'machine one' that fills the registry cache."""
    address, _ = registry
    tmp = tmp_path_factory.mktemp("machine1")
    path = tmp / "p.json"
    path.write_text(json.dumps(pipeline()))
    proc = osbuild("build", path, "--store", tmp / "store", "-o", tmp / "out", "--json",
                   "--cache-to", f"{address}/osbuild/trees", HTTP)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    done = [e for e in events if e["event"] == "build-done"][0]
    pushed = [e for e in events if e["event"] == "tree-pushed"]
    assert [e["id"] for e in pushed] == [e["id"] for e in events if e["event"] == "stage-done"]
    return tmp / "store", done["tree"]


def test_second_machine_pulls_the_tree_and_runs_no_stage(registry, first_machine, build, tmp_path):
    address, _ = registry
    store1, tree = first_machine
    result = build(pipeline(), tmp_path / "store2", None, "--stages-from", f"{address}/osbuild",
                   "--cache-from", f"{address}/osbuild/trees", HTTP)
    assert result.returncode == 0, result.stderr
    assert result.ran == []
    assert {e["source"] for e in result.of("stage-done")} == {f"{address}/osbuild/trees"}
    assert result.tree == tree
    assert len(result.of("assembler-done")) == 1
    ids = [podman(s, "image", "inspect", "--format", "{{.Id}}", f"localhost/osbuild-oci/trees:{tree}").stdout
           for s in (store1, tmp_path / "store2")]
    assert ids[0] == ids[1]


def test_a_cached_tree_is_an_ordinary_image(registry, first_machine, tmp_path):
    address, _ = registry
    _, tree = first_machine
    ref = f"{address}/osbuild/trees:{tree}"
    manifest = skopeo_inspect(ref)
    base_layers = len(podman(tmp_path / "s", "image", "inspect", MINBASE).stdout and
                      json.loads(podman(tmp_path / "s", "image", "inspect", MINBASE).stdout)[0]["RootFS"]["Layers"])
    assert len(manifest["Layers"]) == base_layers + 3
    store = tmp_path / "plain"
    podman(store, "pull", "--tls-verify=false", ref)
    assert podman(store, "run", "--rm", "--network=none", ref, "cat", "/etc/motd").stdout == "hello\n"
    assert "Debian" in podman(store, "run", "--rm", "--network=none", ref, "cat", "/etc/os-release").stdout


def test_changed_last_stage_pulls_the_prefix_and_uploads_one_layer(registry, first_machine, build, tmp_path):
    address, data = registry
    before = blobs(data)
    result = build(pipeline("two"), tmp_path / "store3", None, "--cache-from", f"{address}/osbuild/trees",
                   "--cache-to", f"{address}/osbuild/trees", HTTP)
    assert result.returncode == 0, result.stderr
    assert result.ran == ["org.osbuild.mkdir"]
    assert [e["source"] for e in result.of("stage-done")][:2] == [f"{address}/osbuild/trees"] * 2
    new = {d: size for d, size in blobs(data).items() if d not in before}
    # one layer, its image config and its manifest; nothing of the base or the earlier stages
    assert len(new) == 3, new
    assert sum(new.values()) < 64 * 1024


def test_base_can_be_a_published_tree(registry, first_machine, build, tmp_path):
    address, _ = registry
    _, tree = first_machine
    child = {"name": "child", "base": f"{address}/osbuild/trees:{tree}",
             "stages": [{"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "/child"}]}}]}
    result = build(child, tmp_path / "store", None, HTTP)
    assert result.returncode == 0, result.stderr
    assert result.ran == ["org.osbuild.mkdir"]
    assert podman(tmp_path / "store", "run", "--rm", "--network=none", result.image,
                  "sh", "-c", "cat /etc/motd; test -d /child && echo child").stdout == "hello\nchild\n"


def test_pinned_stage_digest(registry, published, build, tmp_path):
    good = {"name": "pinned", "stages": [{"name": "org.osbuild.noop", "image": published["org.osbuild.noop"]}]}
    assert build(good, tmp_path / "store", None, HTTP).returncode == 0
    wrong = published["org.osbuild.noop"][:-8] + "00000000"
    bad = {"name": "pinned", "stages": [{"name": "org.osbuild.noop", "image": wrong}]}
    result = build(bad, tmp_path / "store", None, HTTP)
    assert result.returncode == 2
    assert "stages[0].image" in result.stderr and "no image there has that digest" in result.stderr


def test_registry_down(build, tmp_path, stage_images):
    dead = "127.0.0.1:9"
    store = tmp_path / "store"
    small = {"name": "down", "stages": [{"name": "org.osbuild.noop", "options": {"down": 1}}]}
    fallback = build(small, store, None, "--cache-from", f"{dead}/osbuild/trees", HTTP)
    assert fallback.returncode == 0, fallback.stderr
    assert fallback.ran == ["org.osbuild.noop"]
    assert fallback.of("cache-unavailable")[0]["registry"] == f"{dead}/osbuild/trees"

    before = tree_tags(store)
    refused = build(small, store, None, "--stages-from", f"{dead}/osbuild", HTTP)
    assert refused.returncode == 1
    assert f"registry {dead}" in refused.stderr and "connection refused" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert tree_tags(store) == before


def test_plain_http_only_when_asked(registry, first_machine, build, tmp_path):
    address, _ = registry
    result = build(pipeline(), tmp_path / "store", None, "--cache-to", f"{address}/osbuild/trees")
    assert result.returncode == 1
    assert "HTTP response to HTTPS client" in result.stderr


def test_credentials_come_from_the_auth_file(tmp_path, build, stage_images):
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(subprocess.run(["htpasswd", "-Bbn", "alice", "s3cret"], capture_output=True,
                                       text=True, check=True).stdout)
    (tmp_path / "reg").mkdir()
    proc, address = start_registry(tmp_path / "reg", htpasswd)
    try:
        small = {"name": "auth", "stages": [{"name": "org.osbuild.noop", "options": {"auth": 1}}]}
        store = tmp_path / "store"
        denied = build(small, store, None, "--cache-to", f"{address}/private/trees", HTTP,
                       env={"REGISTRY_AUTH_FILE": str(tmp_path / "none.json")})
        assert denied.returncode == 1
        assert "authentication required" in denied.stderr and address in denied.stderr

        authfile = tmp_path / "auth.json"
        login = subprocess.run(["podman", "login", "--tls-verify=false", "--authfile", str(authfile),
                                "-u", "alice", "--password-stdin", address], input="s3cret", text=True,
                               capture_output=True)
        assert login.returncode == 0, login.stderr
        pushed = build(small, store, None, "--cache-to", f"{address}/private/trees", HTTP,
                       env={"REGISTRY_AUTH_FILE": str(authfile)})
        assert pushed.returncode == 0, pushed.stderr
        assert len(pushed.of("tree-pushed")) == 1
    finally:
        proc.terminate()
        proc.wait()


def test_final_tree_is_tagged_and_pushed_under_the_users_names(registry, build, tmp_path, stage_images):
    address, _ = registry
    store = tmp_path / "store"
    small = {"name": "named", "base": MINBASE,
             "stages": [{"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "/named"}]}}]}
    result = build(small, store, None, "--tag", "localhost/mine/named", "--push", f"{address}/mine/named:v1", HTTP)
    assert result.returncode == 0, result.stderr
    local = podman(store, "image", "inspect", "--format", "{{.Id}}", "localhost/mine/named:latest").stdout
    assert local == podman(store, "image", "inspect", "--format", "{{.Id}}", result.image).stdout
    assert len(skopeo_inspect(f"{address}/mine/named:v1")["Layers"]) == len(
        json.loads(podman(store, "image", "inspect", result.image).stdout)[0]["RootFS"]["Layers"])
