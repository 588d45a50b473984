"""A user's own software in the image: a build context, checksummed sources, files from another image, local .debs
and a signed third-party apt repository, each read by digest, with real containers.

The Debian scenarios start from the flagship pipeline's debootstrap stage, so in the session's shared store
they are a cache hit; the .debs and the signed repository are made once per module with dpkg-deb,
apt-ftparchive and gpg.  Sources come from a loopback HTTP server in a thread; the repository is served from
a container on podman's bridge, because a stage's network is kept off every address of this host.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import (FLAGSHIP, REPO, FileServer, boot_to_login, osbuild, podman, remove_default_images, run_build,
                     sbom_of, tool_podman, store_state, tree_entry, unique_name)

DEBOOTSTRAP = json.loads(FLAGSHIP.read_text())["stages"][0]
EXAMPLE = REPO / "pipelines" / "debian-bookworm-app-qcow2.json"
PACKAGE_CACHE = Path.home() / ".cache" / "osbuild-oci" / "packages"
TOOL = b"#!/bin/sh\necho tool 1.0\n"


def make_deb(root: Path, name: str, version: str, files: dict[str, str], depends: str = "") -> Path:
    """A .deb built with dpkg-deb from a folder made here."""
    folder = root / f"{name}-src"
    (folder / "DEBIAN").mkdir(parents=True)
    (folder / "DEBIAN/control").write_text(f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
                                           f"Maintainer: Test <test@example.org>\n"
                                           f"{f'Depends: {depends}' + chr(10) if depends else ''}"
                                           f"Description: {name}, made by osbuild-oci's tests\n")
    for path, text in files.items():
        (folder / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (folder / path.lstrip("/")).write_text(text)
        (folder / path.lstrip("/")).chmod(0o755)
    deb = root / f"{name}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(folder), str(deb)], check=True,
                   capture_output=True)
    return deb


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The context, the source cache, a source server and a local .deb: everything but the repository."""
    root = tmp_path_factory.mktemp("inputs")
    context = root / "context"
    (context / "app/etc/conf.d").mkdir(parents=True)
    (context / "app/etc/app.conf").write_text("port = 8080\n")
    (context / "app/etc/conf.d/extra.conf").write_text("debug = no\n")
    (context / "README").write_text("not read by any stage\n")
    make_deb(context, "hello-inputs", "1.0", {"/usr/bin/hello-inputs": "#!/bin/sh\nexec hello -g 'hi from inputs'\n"},
             depends="hello")
    served = root / "served"
    served.mkdir()
    (served / "tool").write_bytes(TOOL)
    (served / "wrong").write_bytes(b"not the tool\n")
    server = FileServer(served)
    yield {"root": root, "context": context, "server": server, "env": {"XDG_CACHE_HOME": str(root / "cache")}}
    server.close()


def files_pipeline(*items: dict, name: str = "inputs", after: bool = True, **top) -> dict:
    stages = [{"name": "org.osbuild-oci.copy", "options": {"items": list(items)}}]
    if after:
        stages.append({"name": "org.osbuild-oci.files", "options": {"files": [{"path": "/etc/after", "content": "x"}]}})
    return {"name": name, "stages": stages, **top}


def test_a_changed_context_file_reruns_exactly_the_stages_that_read_it(build, world, tmp_path):
    store, context = tmp_path / "store", world["context"]
    pipeline = files_pipeline({"from": "context", "source": "app/etc/", "destination": "/etc/app/", "owner": "12",
                               "mode": "0640"})
    first = build(pipeline, store, None, "--context", context)
    assert first.returncode == 0, first.stderr
    assert first.ran == ["org.osbuild-oci.copy", "org.osbuild-oci.files"]
    info, data = tree_entry(store, first.image, "/etc/app/conf.d/extra.conf")
    assert (data, info.mode & 0o7777, info.uid) == (b"debug = no\n", 0o640, 12)
    assert tree_entry(store, first.image, "/etc/app/README") is None

    (context / "README").write_text("changed, still read by nobody\n")
    unrelated = build(pipeline, store, None, "--context", context)
    assert unrelated.returncode == 0, unrelated.stderr
    assert unrelated.ran == [] and unrelated.tree == first.tree, "a file no stage reads changes no id"

    (context / "app/etc/conf.d/extra.conf").write_text("debug = yes\n")
    shown = json.loads(osbuild("inspect", tmp_path / "out-0.json", "--store", store, "--context", context,
                               "--json").stdout)
    assert [[(i["from"], i["source"], i["changed"]) for i in row["inputs"]] for row in shown["stages"]] == [
        [("context", "app/etc", True)], []]
    changed = build(pipeline, store, None, "--context", context)
    assert changed.returncode == 0, changed.stderr
    assert changed.ran == ["org.osbuild-oci.copy", "org.osbuild-oci.files"], "the stage that read it and those after"
    assert tree_entry(store, changed.image, "/etc/app/conf.d/extra.conf")[1] == b"debug = yes\n"
    again = json.loads(osbuild("inspect", tmp_path / "out-0.json", "--store", store, "--context", context,
                               "--json").stdout)
    assert again["stages"][0]["inputs"][0]["changed"] is False
    (context / "app/etc/conf.d/extra.conf").write_text("debug = no\n")


REFUSED = [
    ("../outside", "stages[0].options.items[0].source: '../outside' is no path inside the build context"),
    ("/etc/passwd", "stages[0].options.items[0].source: '/etc/passwd' is absolute; a context path is relative"),
    ("app/escape", "stages[0].options.items[0].source: the build context's app/escape is a symbolic link"),
    ("app/", "stages[0].options.items[0].source: the build context's app/escape is a symbolic link"),
]


def test_a_path_that_leaves_the_context_is_refused_before_anything_runs(build, tmp_path):
    context, store = tmp_path / "context", tmp_path / "store"
    (context / "app").mkdir(parents=True)
    (context / "app/file").write_text("in\n")
    made = build(files_pipeline({"from": "context", "source": "app/", "destination": "/x/"}, after=False), store,
                 None, "--context", context)
    assert made.returncode == 0, made.stderr
    before = store_state(store)
    (context / "app/escape").symlink_to("/etc")
    for source, message in REFUSED:
        refused = build(files_pipeline({"from": "context", "source": source, "destination": "/x/"}, after=False),
                        store, None, "--context", context)
        assert refused.returncode == 2, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], refused.stderr
        assert refused.of("stage-start") == []
    assert store_state(store) == before


def test_a_source_is_fetched_once_checked_and_read_by_digest(build, world, tmp_path):
    server, env = world["server"], world["env"]
    digest = "sha256:" + hashlib.sha256(TOOL).hexdigest()
    store = tmp_path / "store"
    pipeline = files_pipeline({"from": "source", "source": digest, "destination": "/usr/bin/tool"}, name="source",
                              after=False, sources={digest: [f"{server.url}/missing", f"{server.url}/tool"]})
    first = build(pipeline, store, None, env=env)
    assert first.returncode == 0, first.stderr
    info, data = tree_entry(store, first.image, "/usr/bin/tool")
    assert (data, info.mode & 0o7777) == (TOOL, 0o644), "a source is no executable: the copy's mode says what it is"
    downloaded = server.served
    assert downloaded == len(TOOL)

    pipeline["stages"][0]["options"]["items"][0]["mode"] = "0755"
    second = build(pipeline, store, None, env=env)
    assert second.returncode == 0, second.stderr
    assert second.ran == ["org.osbuild-oci.copy"]
    assert server.served == downloaded, "the second build downloads 0 bytes"

    wrong = "sha256:" + "0" * 64
    mismatch = build(files_pipeline({"from": "source", "source": wrong, "destination": "/x"}, name="wrong",
                                    after=False, sources={wrong: f"{server.url}/wrong"}), store, None, env=env)
    assert mismatch.returncode == 1
    assert f"error: source {wrong}: {server.url}/wrong gave sha256:" in mismatch.stderr
    assert mismatch.of("stage-start") == [], "the sources are fetched before any stage runs"
    assert not (Path(env["XDG_CACHE_HOME"]) / "osbuild-oci/sources/sha256" / wrong[7:]).exists(), "nothing is kept"

    undeclared = build(files_pipeline({"from": "source", "source": wrong, "destination": "/x"}, after=False),
                       store, None, env=env)
    assert undeclared.returncode == 2
    assert f"stages[0].options.items[0].source: {wrong} is not among the pipeline's sources" in undeclared.stderr


@pytest.fixture(scope="module")
def tool_image(world):
    """An image in the user's own podman storage holding a tool, made by podman import (the CI job's image);
    a build copies it into the stage storage, so it goes from both."""
    ref = f"localhost/{unique_name('inputs-tool')}:latest"

    def make(text: bytes) -> None:
        root = world["root"] / "image"
        (root / "usr/local/bin").mkdir(parents=True, exist_ok=True)
        (root / "usr/local/bin/tool").write_bytes(text)
        (root / "usr/local/bin/tool").chmod(0o755)
        tar = world["root"] / "image.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(tar), "."], check=True)
        subprocess.run(["podman", "import", "-q", str(tar), ref], check=True, capture_output=True)

    make(TOOL)
    yield ref, make
    subprocess.run(["podman", "rmi", "--force", "--ignore", ref], check=True, capture_output=True)
    remove_default_images(ref)


def test_files_from_an_image_are_read_by_its_digest_and_pinned_by_the_lock(build, world, tool_image, tmp_path):
    ref, make = tool_image
    store, lock = tmp_path / "store", tmp_path / "p.lock"
    digest = "sha256:" + hashlib.sha256(TOOL).hexdigest()
    pipeline = files_pipeline({"from": "image", "image": ref, "source": "/usr/local/bin/tool",
                               "destination": "/usr/bin/"}, {"from": "source", "source": digest,
                                                             "destination": "/opt/tool"},
                              name="image", after=False, sources={digest: f"{world['server'].url}/tool"})
    first = build(pipeline, store, None, "--lock", lock, env=world["env"])
    assert first.returncode == 0, first.stderr
    info, data = tree_entry(store, first.image, "/usr/bin/tool")
    assert (data, info.mode & 0o7777) == (TOOL, 0o755)
    pinned = json.loads(lock.read_text())
    image_id = podman(store, "image", "inspect", ref, "--format", "{{.Id}}").stdout.strip()
    assert pinned["input_images"][ref]["id"] == image_id
    assert pinned["sources"] == {digest: {"urls": [f"{world['server'].url}/tool"]}}

    make(b"#!/bin/sh\necho tool 2.0\n")
    locked = build(pipeline, store, None, "--lock", lock, "--locked", env=world["env"])
    assert locked.returncode == 0, locked.stderr
    assert locked.ran == [] and locked.tree == first.tree, "--locked reads the image the lock pins"
    moved = build(pipeline, store, None, env=world["env"])
    assert moved.returncode == 0, moved.stderr
    assert moved.ran == ["org.osbuild-oci.copy"], "a new image under the tag is a new digest: the stage reruns"
    assert tree_entry(store, moved.image, "/usr/bin/tool")[1] == b"#!/bin/sh\necho tool 2.0\n"
    make(TOOL)

    missing = build(files_pipeline({"from": "image", "image": ref, "source": "/usr/local/bin/nothing",
                                    "destination": "/x"}, name="missing", after=False), store)
    assert missing.returncode == 2
    assert f"stages[0].options.items[0].source: the image has no /usr/local/bin/nothing (image {ref})" in \
        missing.stderr
    assert missing.of("stage-start") == []


@pytest.fixture(scope="module")
def repository(world):
    """A signed flat apt repository (apt-ftparchive, gpg) served by a container on podman's bridge; (URL, the key
    that signs it, another key)."""
    root = world["root"] / "repository"
    gnupg, pool = root / "gnupg", root / "pool"
    gnupg.mkdir(parents=True, mode=0o700)
    pool.mkdir()
    make_deb(pool, "vendor-tool", "2.1", {"/usr/bin/vendor-tool": "#!/bin/sh\necho vendor tool 2.1\n"})
    gpg = ["gpg", "--batch", "--quiet", "--homedir", str(gnupg), "--passphrase", ""]
    for who in ("repo", "other"):
        subprocess.run([*gpg, "--quick-gen-key", f"{who} <{who}@example.org>", "rsa2048", "sign", "never"], check=True)
        (world["context"] / f"{who}.asc").write_bytes(subprocess.run(
            [*gpg, "--armor", "--export", f"{who}@example.org"], check=True, capture_output=True).stdout)
    for index, command in (("Packages", "packages"), ("Release", "release")):
        (pool / index).write_bytes(subprocess.run(["apt-ftparchive", command, "."], cwd=pool, check=True,
                                                  capture_output=True).stdout)
    subprocess.run([*gpg, "--local-user", "repo@example.org", "--clearsign", "-o", "InRelease", "Release"],
                   cwd=pool, check=True)
    # gpg started an agent for the home directory; it would outlive the run.
    subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "gpg-agent"], check=True)
    container = tool_podman("run", "-d", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                            "-v", f"{pool}:/srv:ro", "localhost/osbuild-oci/stage-base:latest",
                            "python3", "-m", "http.server", "8080", "-d", "/srv",
                            check=True, capture_output=True, text=True).stdout.strip()
    address = tool_podman("inspect", container, "--format", "{{.NetworkSettings.IPAddress}}",
                          check=True, capture_output=True, text=True).stdout.strip()
    yield f"http://{address}:8080/"
    tool_podman("rm", "--force", "--time", "0", container, capture_output=True)


def apt_pipeline(repository: str, key: str, keep: bool) -> dict:
    return {"name": "local-debs", "stages": [DEBOOTSTRAP, {"name": "org.osbuild.apt", "options": {
        "debs": [{"from": "context", "source": "hello-inputs_1.0_all.deb"}], "packages": ["vendor-tool"],
        "sources": ["deb http://deb.debian.org/debian bookworm main",
                    {"line": f"deb {repository} ./", "signed-by": {"from": "context", "source": key},
                     "keep_source": keep, "name": "vendor"}]}}]}


def test_local_debs_and_a_signed_third_party_repository_install_with_their_origin(build, world, repository,
                                                                                   shared_store):
    env = {**world["env"]}
    extra = ["--context", world["context"], "--package-cache", PACKAGE_CACHE]
    result = build(apt_pipeline(repository, "repo.asc", True), shared_store, None, *extra, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.ran[-1:] == ["org.osbuild.apt"]
    shown = podman(shared_store, "run", "--rm", "-i", "--network=none", result.image, "sh", "-c",
                   "hello-inputs; vendor-tool; cat /etc/apt/sources.list.d/vendor.list; "
                   "cmp /etc/apt/keyrings/vendor.asc -", input=(world["context"] / "repo.asc").read_text()).stdout
    assert shown.splitlines() == ["hi from inputs", "vendor tool 2.1",
                                  f"deb [signed-by=/etc/apt/keyrings/vendor.asc] {repository} ./"]
    document = sbom_of(shared_store, result.tree)
    packages = {p["name"]: p for p in document["packages"]}
    deb = hashlib.sha256((world["context"] / "hello-inputs_1.0_all.deb").read_bytes()).hexdigest()
    assert packages["hello-inputs"]["checksums"] == [{"algorithm": "SHA256", "checksumValue": deb}]
    assert packages["hello-inputs"]["comment"] == f"installed from a local .deb file, sha256:{deb}"
    assert packages["hello"]["supplier"] == "Organization: Debian", "its dependency, from the archive"
    assert packages["vendor-tool"]["externalRefs"][0]["referenceLocator"] == \
        f"pkg:deb/debian/vendor-tool@2.1?arch=all&repository_url={repository}"
    assert packages["vendor-tool"]["comment"] == f"installed from the apt repository {repository}"

    wrong = build(apt_pipeline(repository, "other.asc", False), shared_store, None, *extra, env=env)
    assert wrong.returncode == 1
    assert "The following signatures couldn't be verified because the public key is not available: NO_PUBKEY" \
        in wrong.stderr
    assert f"E: The repository '{repository.rstrip('/')} ./ InRelease' is not signed." in wrong.stderr


def test_the_app_example_shares_the_flagships_trees_and_boots_to_its_service(flagship, shared_store, tmp_path):
    """The README's walkthrough: the .deb made with dpkg-deb from the example's context, the pipeline built on the
    flagship's trees, the service greeting with the context's configuration on the console."""
    context = tmp_path / "app-context"
    shutil.copytree(REPO / "pipelines" / "app-context", context)
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(context / "hello-service"),
                    str(context / "hello-service_1.0_all.deb")], check=True, capture_output=True)
    result = run_build(EXAMPLE, shared_store, tmp_path / "out", "--context", context, "--package-cache",
                       PACKAGE_CACHE)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.ran == ["org.osbuild.apt", "org.osbuild-oci.copy", "org.osbuild.systemd"], \
        "the flagship's eight trees are the example's first eight"
    disk = tmp_path / "out" / json.loads(EXAMPLE.read_text())["assembler"]["options"]["filename"]
    console = boot_to_login(disk, "bios", tmp_path)
    assert "Hello from the app-context of osbuild-oci" in console
