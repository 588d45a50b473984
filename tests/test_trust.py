"""Trust in what comes from a registry: signed trees and stage images, --trust-key, the lock file.

Everything runs against the real registry on 127.0.0.1 with keys made by
`osbuild-oci key generate`; the stages are cheap ones on the minbase base.
"""

from __future__ import annotations

import json
import stat
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from helpers import (MINBASE, make_testing_stage, osbuild, podman, remove_default_images, run_build, skopeo_inspect,
                     stage_podman, stage_ref, tree_run, unique_name)

HTTP = "--no-tls-verify"


def pipeline(last: str) -> dict:
    return {"name": "trusted", "base": MINBASE, "stages": [
        {"name": "org.osbuild.noop", "options": {"trust": last}},
        {"name": "org.osbuild-oci.files", "options": {"files": [{"path": "/srv/last", "content": last}]}},
    ], "assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}}


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    """Two key pairs as users make them: `team` without a passphrase, `other` with one (its file: `other.pass`)."""
    tmp = tmp_path_factory.mktemp("keys")
    (tmp / "other.pass").write_text("correct horse\n")
    assert osbuild("key", "generate", tmp / "team").returncode == 0
    proc = osbuild("key", "generate", tmp / "other", "--passphrase-file", tmp / "other.pass")
    assert proc.returncode == 0, proc.stderr
    return {name: tmp / name for name in ("team", "other")} | {"pass": tmp / "other.pass"}


def key(keys: dict[str, Path], name: str, part: str) -> str:
    return str(keys[name].with_name(f"{name}.{part}"))


def repository(registry) -> str:
    return f"{registry[0]}/t{uuid.uuid4().hex[:8]}"


def ids(store: Path) -> set[str]:
    return set(podman(store, "images", "--all", "--no-trunc", "--format", "{{.ID}}").stdout.split())


def test_key_generate_writes_a_private_key_only_its_owner_reads(keys):
    private, public = Path(key(keys, "other", "key")), Path(key(keys, "other", "pub"))
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text().startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----\n")
    again = osbuild("key", "generate", keys["other"])
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.slow
def test_a_wrong_passphrase_is_refused_before_anything_runs(keys, registry, tmp_path, stage_images):
    (tmp_path / "wrong").write_text("wrong horse\n")
    result = run_build(pipeline("x"), tmp_path / "store", tmp_path / "out", "--cache-to", f"{registry[0]}/w/trees",
                       HTTP, "--sign-key", key(keys, "other", "key"), "--sign-passphrase-file", tmp_path / "wrong")
    assert result.returncode == 2
    assert "wrong passphrase" in result.stderr and [e["event"] for e in result.events] == ["build-failed"]


@pytest.mark.slow
def test_poisoned_cache_is_a_miss_with_trust_key_and_a_hit_without(keys, registry, build, tmp_path):
    """Whoever can push to the cache plants a tree under the last stage's id, with a marker file."""
    repo = f"{repository(registry)}/trees"
    honest = build(pipeline("poison"), tmp_path / "honest", None, "--cache-to", repo, HTTP,
                   "--sign-key", key(keys, "team", "key"))
    assert honest.returncode == 0, honest.stderr
    last = honest.tree
    attacker = tmp_path / "attacker"
    podman(attacker, "run", "--name", "plant", "--network=none", MINBASE, "sh", "-c",
           "echo poison > /srv/last && echo pwned > /marker")
    podman(attacker, "commit", "--change", f"LABEL org.osbuild-oci.tree-id={last}", "plant", f"{repo}:{last}")
    podman(attacker, "rm", "plant")
    podman(attacker, "push", "--tls-verify=false", f"{repo}:{last}")
    planted = podman(attacker, "image", "inspect", "--format", "{{.Id}}", f"{repo}:{last}").stdout.strip()

    trusting = build(pipeline("poison"), tmp_path / "trusting", tmp_path / "out-trusting", "--cache-from", repo, HTTP,
                     "--trust-key", key(keys, "team", "pub"))
    assert trusting.returncode == 0, trusting.stderr
    assert trusting.of("cache-untrusted") == [{"event": "cache-untrusted", "image": f"{repo}:{last}",
                                               "reason": "it has no signature"}]
    assert f"cache {repo}:{last} not trusted" in trusting.stderr
    assert trusting.ran == ["org.osbuild-oci.files"]
    assert trusting.tree == last
    assert tree_run(tmp_path / "trusting", trusting.image, "sh", "-c", "test -e /marker && echo planted || echo clean") == "clean\n"
    with tarfile.open(tmp_path / "out-trusting" / "tree.tar") as tar:
        assert not [n for n in tar.getnames() if n.lstrip("./") == "marker"]
    assert planted not in ids(tmp_path / "trusting")

    # Without --trust-key the label is all that is checked: the planted tree is taken (README says so).
    blind = build(pipeline("poison"), tmp_path / "blind", None, "--cache-from", repo, HTTP)
    assert blind.returncode == 0, blind.stderr
    assert blind.ran == []
    assert tree_run(tmp_path / "blind", blind.image, "cat", "/marker") == "pwned\n"


@pytest.mark.slow
def test_signed_trees_round_trip_between_stores(keys, registry, build, tmp_path):
    repo = f"{repository(registry)}/trees"
    first = build(pipeline("round trip"), tmp_path / "a", None, "--cache-to", repo, HTTP,
                  "--sign-key", key(keys, "other", "key"), "--sign-passphrase-file", keys["pass"])
    assert first.returncode == 0, first.stderr
    digest = skopeo_inspect(f"{repo}:{first.tree}")["Digest"]
    signature = skopeo_inspect(f"{repo}:{digest.replace(':', '-')}.sig", "--raw")
    assert [layer["mediaType"] for layer in signature["layers"]] == ["application/vnd.dev.cosign.simplesigning.v1+json"]

    # The right key, set once in the config file as a CI job would: no stage runs.
    config = tmp_path / "config.toml"
    config.write_text(f'trust-keys = ["{key(keys, "other", "pub")}"]\n')
    trusted = build(pipeline("round trip"), tmp_path / "b", None, "--cache-from", repo, HTTP,
                    env={"OSBUILD_OCI_CONFIG": str(config)})
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.ran == [] and trusted.of("cache-untrusted") == []
    assert trusted.tree == first.tree

    # Another key: every tree is refused, every stage runs here.
    other = build(pipeline("round trip"), tmp_path / "c", None, "--cache-from", repo, HTTP,
                  "--trust-key", key(keys, "team", "pub"), env={"OSBUILD_OCI_CONFIG": str(config)})
    assert other.returncode == 0, other.stderr
    assert other.ran == ["org.osbuild.noop", "org.osbuild-oci.files"]
    assert {e["reason"] for e in other.of("cache-untrusted")} == {"signed by none of the trusted keys"}
    untrusted = [e["image"] for e in other.of("cache-untrusted")]
    assert len(untrusted) == 3 and sum(":output-" in image for image in untrusted) == 1, \
        "both trees and the assembler's cached output are refused"

    # A signed tree copied under another tree's tag keeps a valid signature for its digest, but not for that name.
    older, newest = [e["id"] for e in first.of("stage-done")]
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", f"docker://{repo}:{older}",
                    f"docker://{repo}:{newest}"], check=True, capture_output=True)
    renamed = build(pipeline("round trip"), tmp_path / "d", None, "--cache-from", repo, HTTP,
                    env={"OSBUILD_OCI_CONFIG": str(config)})
    assert renamed.returncode == 0, renamed.stderr
    assert [e["reason"] for e in renamed.of("cache-untrusted")] == [f"it is signed as {repo}:{older}, not as {repo}:{newest}"]
    assert renamed.ran == ["org.osbuild-oci.files"] and renamed.tree == newest


@pytest.fixture
def own_stage(tmp_path, stage_images):
    """A testing stage of its own source tree: (source root, name); its images are removed afterwards."""
    name = unique_name("test.trust")
    root = tmp_path / "source"
    make_testing_stage(root, name, "one")
    yield root, name
    remove_default_images(stage_ref(name))


@pytest.mark.slow
def test_a_stage_image_retagged_after_signing_is_refused(keys, registry, own_stage, tmp_path):
    root, name = own_stage
    namespace = repository(registry)
    proc = osbuild("stages", "push", namespace, HTTP, "--source", root, "--sign-key", key(keys, "other", "key"),
                   "--sign-passphrase-file", keys["pass"])
    assert proc.returncode == 0, proc.stderr
    stages = {"name": "signed stage", "base": MINBASE, "stages": [{"name": name, "options": {}}]}
    store = tmp_path / "store"
    trusting = ("--stages-from", namespace, HTTP, "--trust-key", key(keys, "other", "pub"))
    good = run_build(stages, store, tmp_path / "out1", *trusting)
    assert good.returncode == 0, good.stderr
    assert tree_run(store, good.image, "cat", "/version") == "one"

    wrong = run_build(stages, tmp_path / "store2", tmp_path / "out2", "--stages-from", namespace, HTTP,
                      "--trust-key", key(keys, "team", "pub"))
    assert wrong.returncode == 1
    assert f"{namespace}/{name}:latest" in wrong.stderr and "signed by none of the trusted keys" in wrong.stderr

    # The attacker moves :latest to another image; the store still holds the signed one.
    make_testing_stage(root, name, "evil")
    stage_podman("push", "--tls-verify=false", stage_ref(name), f"docker://{namespace}/{name}:latest", check=True)
    blind = run_build(stages, store, tmp_path / "out3", "--stages-from", namespace, HTTP)
    assert blind.returncode == 0, blind.stderr  # without --trust-key, whatever :latest names now runs
    assert tree_run(store, blind.image, "cat", "/version") == "evil"
    # With it, the copy of :latest now in the store is checked against the registry's signatures again.
    moved = run_build(stages, store, tmp_path / "out4", *trusting)
    assert moved.returncode == 1
    assert f"error: cannot trust {namespace}/{name}:latest" in moved.stderr
    assert "it has no signature" in moved.stderr and moved.ran == []


@pytest.mark.slow
def test_locked_builds_keep_their_stage_images(registry, own_stage, tmp_path):
    root, name = own_stage
    namespace = repository(registry)
    assert osbuild("stages", "push", namespace, HTTP, "--source", root).returncode == 0
    stages = {"name": "locked", "base": MINBASE, "stages": [{"name": name, "options": {}}]}
    lock = tmp_path / "pipeline.lock"
    first = run_build(stages, tmp_path / "a", tmp_path / "out1", "--stages-from", namespace, HTTP, "--lock", lock)
    assert first.returncode == 0, first.stderr
    doc = json.loads(lock.read_text())
    assert lock.read_text() == json.dumps(doc, indent=2, sort_keys=True) + "\n"
    assert doc["images"][name]["pull"].startswith(f"{namespace}/{name}@sha256:")
    assert doc["base"]["image"] == MINBASE

    make_testing_stage(root, name, "two")
    assert osbuild("stages", "push", namespace, HTTP, "--source", root).returncode == 0
    before = lock.read_bytes()
    unlocked = run_build(stages, tmp_path / "b", tmp_path / "out2", "--stages-from", namespace, HTTP)
    assert unlocked.returncode == 0 and unlocked.tree != first.tree
    # The store now holds the new :latest; the lock still chooses the old image, pulled by its digest.
    locked = run_build(stages, tmp_path / "b", tmp_path / "out3", "--stages-from", namespace, HTTP,
                       "--lock", lock, "--locked")
    assert locked.returncode == 0, locked.stderr
    assert locked.tree == first.tree
    assert tree_run(tmp_path / "b", locked.image, "cat", "/version") == "one"
    assert lock.read_bytes() == before

    more = {**stages, "stages": [*stages["stages"], {"name": "org.osbuild.noop", "options": {}}]}
    refused = run_build(more, tmp_path / "d", tmp_path / "out4", "--stages-from", namespace, HTTP,
                        "--lock", lock, "--locked")
    assert refused.returncode == 2 and [(e["event"], e["status"]) for e in refused.events] == [("build-failed", 2)]
    assert f"stages[1].name: the lock file {lock} has no image for 'org.osbuild.noop'" in refused.stderr
    assert not (tmp_path / "d").exists()
