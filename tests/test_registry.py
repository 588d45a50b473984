"""Stages and cached trees travel through a real registry (Debian's docker-registry on loopback)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from helpers import (MINBASE, osbuild, podman, run_build, sbom_of, sha256, skopeo_inspect, stage_images_home,
                     start_registry, stop, store_state, tree_tags)

HTTP = "--no-tls-verify"


def pipeline(last: str = "one") -> dict:
    return {"name": "shared", "base": MINBASE, "stages": [
        {"name": "org.osbuild.noop", "options": {"registry": 1}},
        {"name": "org.osbuild-oci.files", "options": {"files": [{"path": "/etc/motd", "content": "hello\n"}]}},
        {"name": "org.osbuild-oci.files", "options": {"files": [{"path": "/srv/last", "content": last}]}},
    ], "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}}


def blobs(data: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_size for p in (data / "docker/registry/v2/blobs").rglob("data")}


def image_id(store: Path, ref: str) -> str:
    return podman(store, "image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def stage_image_ids() -> dict[str, str]:
    return {s["name"]: s["id"] for s in json.loads(osbuild("stages", "list", "--json").stdout)}


def pinned_references(stdout: str) -> dict[str, str]:
    return {line.split("@")[0].rsplit("/", 1)[1]: line.strip() for line in stdout.splitlines() if "@" in line}


@pytest.fixture(scope="module")
def published(registry, stage_images):
    """Stage images pushed once: {name: pinned reference}."""
    address, _ = registry
    proc = osbuild("stages", "push", f"{address}/osbuild", HTTP)
    assert proc.returncode == 0, proc.stderr
    pinned = pinned_references(proc.stdout)
    assert "org.osbuild.noop" in pinned and "org.osbuild.tar" in pinned
    return pinned


@pytest.fixture(scope="module")
def first_machine(registry, published, tmp_path_factory):
    """A build on 'machine one' that fills the registry cache."""
    address, _ = registry
    tmp = tmp_path_factory.mktemp("machine1")
    result = run_build(pipeline(), tmp / "store", tmp / "out", "--cache-to", f"{address}/osbuild/trees", HTTP)
    assert result.returncode == 0, result.stderr
    assert [e["id"] for e in result.of("tree-pushed")] == [e["id"] for e in result.of("stage-done")]
    return tmp / "store", result.tree


def test_second_machine_pulls_the_tree_and_the_output_and_runs_nothing(registry, first_machine, build, tmp_path):
    address, _ = registry
    store1, tree = first_machine
    result = build(pipeline(), tmp_path / "store2", tmp_path / "out2", "--stages-from", f"{address}/osbuild",
                   "--cache-from", f"{address}/osbuild/trees", HTTP)
    assert result.returncode == 0, result.stderr
    assert result.ran == []
    assert {e["source"] for e in result.of("stage-done")} == {f"{address}/osbuild/trees"}
    assert result.tree == tree
    assert [(e["cached"], e["source"]) for e in result.of("assembler-done")] == [(True, f"{address}/osbuild/trees")]
    assert sha256(tmp_path / "out2" / "tree.tar") == sha256(store1.parent / "out" / "tree.tar")
    assert store_state(tmp_path / "store2")["created"] == 0, "no stage, assembler or tree mount ran"
    ref = f"localhost/osbuild-oci/trees:{tree}"
    assert image_id(store1, ref) == image_id(tmp_path / "store2", ref)


def test_a_cached_tree_is_an_ordinary_image(registry, first_machine, tmp_path):
    address, _ = registry
    _, tree = first_machine
    ref = f"{address}/osbuild/trees:{tree}"
    manifest = skopeo_inspect(ref)
    base_layers = json.loads(podman(tmp_path / "s", "image", "inspect", MINBASE).stdout)[0]["RootFS"]["Layers"]
    assert len(manifest["Layers"]) == len(base_layers) + 3
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
    assert result.ran == ["org.osbuild-oci.files"]
    assert [e["source"] for e in result.of("stage-done")][:2] == [f"{address}/osbuild/trees"] * 2
    new = {d: size for d, size in blobs(data).items() if d not in before}
    sboms = {d for d in new if b'"SPDXRef-DOCUMENT"' in next((data / "docker/registry/v2/blobs").rglob(f"{d}/data"))
             .read_bytes()[:100]}
    # one tree layer, its image config and its manifest, nothing of the base or the earlier stages;
    # the new tree's SBOM (its document and the artifact's manifest; the empty config is there already);
    # and the new assembler output (its one layer, the tar, is the only big blob), config and manifest
    assert len(result.of("output-pushed")) == 1
    assert len(sboms) == 1 and len(new) == 8, new
    assert sum(sorted(size for d, size in new.items() if d not in sboms)[:-1]) < 64 * 1024


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


def test_a_tree_id_base_is_fetched_through_cache_from(registry, first_machine, build, tmp_path):
    address, _ = registry
    _, tree = first_machine
    child = {"name": "child", "base": tree,
             "stages": [{"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "/by-id"}]}}]}
    missing = build(child, tmp_path / "empty", None, HTTP)
    assert missing.returncode == 2 and f"base: no tree {tree}" in missing.stderr, missing.stderr
    result = build(child, tmp_path / "store", None, "--cache-from", f"{address}/osbuild/trees", HTTP)
    assert result.returncode == 0, result.stderr
    assert result.ran == ["org.osbuild.mkdir"]
    assert tree_tags(tmp_path / "store") == {f"localhost/osbuild-oci/trees:{tree}", result.image}
    assert podman(tmp_path / "store", "run", "--rm", "--network=none", result.image,
                  "sh", "-c", "cat /srv/last; test -d /by-id && echo by-id").stdout == "oneby-id\n"


def test_local_trees_win_over_the_cache_registry(registry, first_machine, build, tmp_path):
    """The store is checked before the registry: a local tree is used, nothing is pulled."""
    address, _ = registry
    _, tree = first_machine
    store = tmp_path / "store"
    local = build(pipeline(), store, None, HTTP)
    assert local.returncode == 0 and local.tree == tree, local.stderr
    before = store_state(store)
    again = build(pipeline(), store, None, "--cache-from", f"{address}/osbuild/trees", HTTP)
    assert again.returncode == 0, again.stderr
    assert [e["source"] for e in again.of("stage-done")] == ["store"] * 3
    assert store_state(store)["images"] == before["images"], "nothing was pulled"


def test_several_cache_registries_are_tried_in_order(registry, first_machine, build, tmp_path):
    address, _ = registry
    _, tree = first_machine
    dead, empty, full = "127.0.0.1:9/osbuild/trees", f"{address}/osbuild/nothing-here", f"{address}/osbuild/trees"
    result = build(pipeline(), tmp_path / "store", None, "--cache-from", dead, "--cache-from", empty,
                   "--cache-from", full, HTTP)
    assert result.returncode == 0, result.stderr
    assert result.ran == [] and result.tree == tree
    assert [e["source"] for e in result.of("stage-done")] == [full] * 3
    assert [e["registry"] for e in result.of("cache-unavailable")] == [dead]


def test_a_pulled_tree_whose_label_does_not_match_is_refused(registry, first_machine, build, tmp_path):
    address, _ = registry
    store1, _ = first_machine
    small = {"name": "mislabelled", "stages": [{"name": "org.osbuild.noop", "options": {"mislabelled": 1}}]}
    honest = build(small, tmp_path / "honest", None)
    assert honest.returncode == 0, honest.stderr
    # Another tree, published under the tag of this pipeline's tree.
    forged = f"{address}/osbuild/forged:{honest.tree}"
    podman(store1, "push", "--tls-verify=false", f"localhost/osbuild-oci/trees:{first_machine[1]}",
           f"docker://{forged}")
    result = build(small, tmp_path / "store", None, "--cache-from", f"{address}/osbuild/forged", HTTP)
    assert result.returncode == 1, result.stderr
    assert f"{forged} is not the tree it is tagged as" in result.stderr
    assert "Traceback" not in result.stderr
    assert tree_tags(tmp_path / "store") == set(), "the forged image must not become a tree of the store"


def test_pinned_stage_digest(registry, published, build, tmp_path, shared_store):
    noop = {"name": "pinned", "stages": [{"name": "org.osbuild.noop", "options": {"pinned": 1}}]}
    by_name = build(noop, shared_store)
    assert by_name.returncode == 0, by_name.stderr
    noop["stages"][0]["image"] = published["org.osbuild.noop"]
    good = build(noop, tmp_path / "store", None, HTTP)
    assert good.returncode == 0, good.stderr
    assert good.ran == ["org.osbuild.noop"]
    # The pulled image is the one built here (same config digest), so the tree id agrees with a local build.
    assert image_id(tmp_path / "store", published["org.osbuild.noop"]) == stage_image_ids()["org.osbuild.noop"]
    assert good.tree == by_name.tree

    wrong = published["org.osbuild.noop"][:-8] + "00000000"
    noop["stages"][0]["image"] = wrong
    result = build(noop, tmp_path / "store", None, HTTP)
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

    before = store_state(store)
    refused = build(small, store, None, "--stages-from", f"{dead}/osbuild", HTTP)
    assert refused.returncode == 1
    assert f"registry {dead}" in refused.stderr and "connection refused" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert store_state(store) == before


def test_bad_input_pulls_nothing_into_the_store(registry, first_machine, build, tmp_path):
    address, _ = registry
    _, tree = first_machine
    store = tmp_path / "store"
    assert build({"name": "seed", "stages": [{"name": "org.osbuild.noop", "options": {"seed": 1}}]},
                 store).returncode == 0
    before = store_state(store)
    bad = {"name": "bad", "base": f"{address}/osbuild/trees:{tree}",
           "stages": [{"name": "org.osbuild.mkdir", "options": {"paths": "/not-a-list"}}]}
    result = build(bad, store, None, HTTP)
    assert result.returncode == 2, result.stderr
    assert "stages[0].options.paths: expected array, got string" in result.stderr
    assert store_state(store) == before


@pytest.mark.parametrize("how", ["cache-to", "cache-from", "stages-from", "base"])
def test_plain_http_only_when_asked(registry, first_machine, build, tmp_path, how):
    address, _ = registry
    _, tree = first_machine
    small = {"name": "https", "stages": [{"name": "org.osbuild.noop", "options": {"https": 1}}]}
    args = {"cache-to": ["--cache-to", f"{address}/osbuild/trees"],
            "cache-from": ["--cache-from", f"{address}/osbuild/trees"],
            "stages-from": ["--stages-from", f"{address}/osbuild"]}.get(how, [])
    if how == "cache-from":
        small = pipeline()
    if how == "base":
        small["base"] = f"{address}/osbuild/trees:{tree}"
    result = build(small, tmp_path / "store", None, *args)
    if how == "cache-from":
        # An unusable cache is reported and skipped: every stage runs here, nothing comes over plain HTTP.
        assert result.returncode == 0, result.stderr
        assert len(result.ran) == 3
        assert "HTTP response to HTTPS client" in result.of("cache-unavailable")[0]["error"]
    else:
        assert result.returncode == 1, result.stderr
        assert "HTTP response to HTTPS client" in result.stderr
        assert "Traceback" not in result.stderr


def test_final_tree_is_tagged_and_pushed_under_the_users_names(registry, build, tmp_path, stage_images):
    address, _ = registry
    store = tmp_path / "store"
    small = {"name": "named", "base": MINBASE,
             "stages": [{"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "/named"}]}}]}
    result = build(small, store, None, "--tag", "localhost/mine/named", "--push", f"{address}/mine/named:v1", HTTP)
    assert result.returncode == 0, result.stderr
    local = image_id(store, result.image)
    assert image_id(store, "localhost/mine/named:latest") == local
    # The registry holds this very image (same config digest, same layers) ...
    manifest = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                          f"docker://{address}/mine/named:v1"], capture_output=True,
                                         text=True, check=True).stdout)
    assert manifest["config"]["digest"] == f"sha256:{local}"
    config = skopeo_inspect(f"{address}/mine/named:v1", "--config")
    assert config["rootfs"]["diff_ids"] == json.loads(podman(store, "image", "inspect", result.image).stdout)[0][
        "RootFS"]["Layers"]
    # Its SBOM is beside it, found by the image's digest (cosign-style tag), and is the store's.
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{address}/mine/named:v1"],
                         capture_output=True, check=True).stdout
    digest = hashlib.sha256(raw).hexdigest()
    artifact = json.loads(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                          f"docker://{address}/mine/named:sha256-{digest}.sbom"],
                                         capture_output=True, text=True, check=True).stdout)
    assert artifact["subject"]["digest"] == f"sha256:{digest}"
    assert [layer["mediaType"] for layer in artifact["layers"]] == ["application/spdx+json"]
    assert sbom_of(store, f"{address}/mine/named:v1", HTTP) == sbom_of(store, result.tree)
    # ... and it runs anywhere.
    elsewhere = tmp_path / "elsewhere"
    podman(elsewhere, "pull", "--tls-verify=false", f"{address}/mine/named:v1")
    assert podman(elsewhere, "run", "--rm", "--network=none", f"{address}/mine/named:v1", "sh", "-c",
                  "test -d /named && . /etc/os-release && echo $ID").stdout == "debian\n"


# -- a registry that wants credentials ----------------------------------------------

USER, PASSWORD = "alice", "s3cret"


@pytest.fixture(scope="module")
def private(tmp_path_factory, stage_images):
    """A registry with a password, the auth file `podman login` wrote for it, and the stages pushed there with it."""
    root = tmp_path_factory.mktemp("private")
    htpasswd = root / "htpasswd"
    htpasswd.write_text(subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True,
                                       text=True, check=True).stdout)
    (root / "reg").mkdir()
    proc, address = start_registry(root / "reg", htpasswd)
    try:
        authfile = root / "auth.json"
        login(address, authfile)
        denied = osbuild("stages", "push", f"{address}/osbuild", HTTP, env=no_credentials(root))
        assert denied.returncode == 1 and "authentication required" in denied.stderr, denied.stderr
        pushed = osbuild("stages", "push", f"{address}/osbuild", HTTP, env={"REGISTRY_AUTH_FILE": str(authfile)})
        assert pushed.returncode == 0, pushed.stderr
        assert set(pinned_references(pushed.stdout)) == set(stage_image_ids())
        yield address, authfile
    finally:
        stop(proc)


def no_credentials(folder: Path) -> dict:
    """An environment whose auth file holds no credentials."""
    (folder / "empty-auth.json").write_text('{"auths": {}}')
    return {"REGISTRY_AUTH_FILE": str(folder / "empty-auth.json")}


def login(address: str, authfile: Path) -> None:
    authfile.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["podman", "login", "--tls-verify=false", "--authfile", str(authfile), "-u", USER,
                           "--password-stdin", address], input=PASSWORD, text=True, capture_output=True)
    assert proc.returncode == 0, proc.stderr


def test_credentials_come_from_the_auth_file(private, tmp_path, build):
    address, authfile = private
    small = {"name": "auth", "stages": [{"name": "org.osbuild.noop", "options": {"auth": 1}}]}
    store = tmp_path / "store"
    denied = build(small, store, None, "--cache-to", f"{address}/private/trees", HTTP, env=no_credentials(tmp_path))
    assert denied.returncode == 1
    assert "authentication required" in denied.stderr and address in denied.stderr

    auth = {"REGISTRY_AUTH_FILE": str(authfile)}
    assert osbuild("key", "generate", tmp_path / "team").returncode == 0
    pushed = build(small, store, None, "--cache-to", f"{address}/private/trees", HTTP, "--sign-key",
                   tmp_path / "team.key", env=auth)
    assert pushed.returncode == 0, pushed.stderr
    assert len(pushed.of("tree-pushed")) == 1
    read_back = skopeo_inspect(f"{address}/private/trees:{pushed.tree}", "--authfile", str(authfile))
    assert read_back["Labels"]["org.osbuild-oci.tree-id"] == pushed.tree

    # Pulls use the same credentials: stages, cached trees and a base from the private registry.
    fresh = build(small, tmp_path / "fresh", None, "--stages-from", f"{address}/osbuild",
                  "--cache-from", f"{address}/private/trees", HTTP, env=auth)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.ran == [] and fresh.of("cache-unavailable") == [] and fresh.tree == pushed.tree
    # Signing and checking signatures reach the registry with the same credentials.
    trusted = build(small, tmp_path / "trusted", None, "--cache-from", f"{address}/private/trees", HTTP,
                    "--trust-key", tmp_path / "team.pub", env=auth)
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.ran == [] and trusted.of("cache-untrusted") == []
    child = {"name": "child", "base": f"{address}/private/trees:{pushed.tree}",
             "stages": [{"name": "org.osbuild.noop", "options": {"child": 1}}]}
    based = build(child, tmp_path / "based", None, "--stages-from", f"{address}/osbuild", HTTP, env=auth)
    assert based.returncode == 0, based.stderr
    assert based.ran == ["org.osbuild.noop"]


@pytest.mark.parametrize("how", ["stages-from", "cache-from", "base"])
def test_pulls_without_credentials_are_refused(private, tmp_path, build, how):
    address, _ = private
    small = {"name": "noauth", "stages": [{"name": "org.osbuild.noop", "options": {"noauth": 1}}]}
    args = []
    if how == "stages-from":
        args = ["--stages-from", f"{address}/osbuild"]
    elif how == "cache-from":
        args = ["--cache-from", f"{address}/osbuild/trees"]
    else:
        small["base"] = f"{address}/osbuild/org.osbuild.noop:latest"
    result = build(small, tmp_path / "store", None, *args, HTTP, env=no_credentials(tmp_path))
    if how == "cache-from":
        assert result.returncode == 0 and result.ran == ["org.osbuild.noop"], result.stderr
        assert "authentication required" in result.of("cache-unavailable")[0]["error"]
    else:
        assert result.returncode == 1, result.stderr
        assert "authentication required" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("location", ["$XDG_RUNTIME_DIR/containers/auth.json", "~/.config/containers/auth.json",
                                      "~/.docker/config.json"])
def test_default_auth_file_locations_for_root(private, tmp_path, build, location):
    """Without REGISTRY_AUTH_FILE, credentials are found where podman login (or docker login) keeps them."""
    address, _ = private
    home, runtime = tmp_path / "home", tmp_path / "runtime"
    home.mkdir()
    runtime.mkdir()
    login(address, Path(location.replace("$XDG_RUNTIME_DIR", str(runtime)).replace("~", str(home))))
    env = {"REGISTRY_AUTH_FILE": None, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime), **stage_images_home()}
    small = {"name": "default-auth", "stages": [{"name": "org.osbuild.noop", "options": {"where": location}}]}
    result = build(small, tmp_path / "store", None, "--cache-to", f"{address}/private/default", HTTP, env=env)
    assert result.returncode == 0, result.stderr
    assert len(result.of("tree-pushed")) == 1
