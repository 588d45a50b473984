"""Rootless is the normal case: an ordinary user builds, caches and shares through a registry.

The disks an ordinary user builds, and their boots, are in tests/test_disks.py and tests/test_iso.py.

The suite runs as root (as CI does), so this module makes its own
unprivileged user with `scripts/setup-host --user`, gives it a copy of the
checkout, and runs the README's steps as that user through runuser, without a
systemd session (no XDG_RUNTIME_DIR), as a user started with su would be.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from helpers import (LineReader, MINBASE, REPO, podman, remove_default_images, run_build, run_dir, stage_ref,
                     tree_entry, tree_run)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="makes its own unprivileged user: run the suite as root")]

# The pipelines as the user reads them: from its own copy of the checkout (the suite's may be a root's 0700 home).
TREE_PIPELINE = Path("pipelines") / "debian-bookworm-tree.json"


@pytest.fixture(scope="session")
def rootless_tree(rootless) -> Iterator[dict]:
    """The Debian tree pipeline built by the user in a fresh store, once."""
    store = rootless.home / "tree-store"
    rootless.remove(store)
    first = rootless.build(TREE_PIPELINE, store)
    assert first["proc"].returncode == 0, first["proc"].stderr[-3000:]
    yield {"store": store, **first}
    rootless.run("osbuild-oci", "store", "delete", "--store", store, check=False)
    rootless.remove(store)


def listing(podman, image: str, tarball: Path) -> set[tuple[str, str, str]]:
    """(path, mode string, owner) of every entry of a tree image, as `tar -tv` of its export shows them.

    The export goes to a file the exporting user may write (a user's podman cannot reopen root's pipes).
    """
    container = podman("create", image, "true").stdout.strip()
    podman("export", "-o", str(tarball), container)
    podman("rm", container)
    proc = subprocess.run(["tar", "--numeric-owner", "-tvf", str(tarball)], capture_output=True, check=True)
    tarball.unlink()
    out = set()
    for line in proc.stdout.decode(errors="replace").splitlines():
        fields = line.split(None, 5)
        path = fields[5].split(" -> ")[0].split(" link to ")[0]
        out.add((path.lstrip("./"), fields[0], fields[1]))
    return out


def test_tree_pipeline_as_an_ordinary_user_keeps_owners_modes_and_devices(rootless, rootless_tree, shared_store,
                                                                          stage_images, tmp_path):
    store, tree = rootless_tree["store"], rootless_tree["tree"]
    assert rootless_tree["ran"] == [s["name"] for s in json.loads((REPO / TREE_PIPELINE).read_text())["stages"]]

    again = rootless.build(TREE_PIPELINE, store)
    assert again["proc"].returncode == 0 and again["ran"] == [] and again["tree"] == tree

    image = f"localhost/osbuild-oci/trees:{tree}"
    shown = rootless.podman(store, "run", "--rm", "--network=none", image, "stat", "-c", "%n %u:%g %a",
                            "/home/debian", "/usr/bin/passwd", "/etc/shadow").stdout.split("\n")
    assert shown[:3] == ["/home/debian 1000:1000 755", "/usr/bin/passwd 0:0 4755", "/etc/shadow 0:42 640"]

    as_user = listing(lambda *a: rootless.podman(store, *a), image, rootless.home / "tree-export.tar")
    root_build = run_build(REPO / TREE_PIPELINE, shared_store, tmp_path / "out")
    assert root_build.returncode == 0, root_build.stderr
    # What the pipeline asks for, in root's tree; the user's is the same outside /dev (below).
    assert "Status: install ok installed" in tree_run(shared_store, root_build.image, "dpkg", "-s", "openssh-server")
    assert tree_run(shared_store, root_build.image, "systemctl", "is-enabled", "ssh") == "enabled\n"
    assert tree_entry(shared_store, root_build.image, "/etc/hostname")[1] == b"debian-oci\n"
    assert tree_run(shared_store, root_build.image, "cat", "/etc/fstab").startswith(
        "UUID=76a22bf4-f153-4541-b6c7-0332c0dfaeac\t/")
    as_root = listing(lambda *a: podman(shared_store, *a), root_build.image, tmp_path / "tree-export.tar")

    # A user namespace cannot make device nodes: the rootless tree's /dev stays empty (README: a booted
    # system mounts devtmpfs there, a container gets podman's /dev). Everything else is the same.
    def outside_dev(entries: set) -> set:
        return {entry for entry in entries if not entry[0].startswith("dev/")}
    assert {entry[0] for entry in as_user - outside_dev(as_user)} == {"dev/"}
    assert {"dev/null", "dev/console"} <= {entry[0] for entry in as_root - outside_dev(as_root)}
    assert len(as_user) > 5000
    only_user, only_root = outside_dev(as_user) - as_root, outside_dev(as_root) - as_user
    assert not only_user and not only_root, f"only rootless: {sorted(only_user)[:20]}; only root: {sorted(only_root)[:20]}"


def test_rootless_store_is_about_the_size_of_its_tree(rootless, rootless_tree):
    store, tree = rootless_tree["store"], rootless_tree["tree"]
    size = int(rootless.podman(store, "image", "inspect", "--format", "{{.Size}}",
                               f"localhost/osbuild-oci/trees:{tree}").stdout)
    used = int(rootless.run("du", "-sb", store).stdout.split()[0])
    assert used <= 1.1 * size, f"store {used} bytes for a tree of {size}"


def test_rootless_registry_round_trip_runs_no_stage(rootless, rootless_tree, registry):
    address, _ = registry
    pushed = rootless.run("osbuild-oci", "stages", "push", f"{address}/rootless", "--tls-verify=false")
    assert f"{address}/rootless/org.osbuild.apt@sha256:" in pushed.stdout
    cache = f"{address}/rootless/trees"
    shared = rootless.build(TREE_PIPELINE, rootless_tree["store"], "--cache-to", cache, "--tls-verify=false")
    assert shared["proc"].returncode == 0, shared["proc"].stderr
    fresh = rootless.home / "fresh-store"
    rootless.remove(fresh)
    pulled = rootless.build(TREE_PIPELINE, fresh, "--stages-from", f"{address}/rootless", "--cache-from", cache,
                            "--tls-verify=false")
    assert pulled["proc"].returncode == 0, pulled["proc"].stderr
    assert pulled["ran"] == [] and pulled["tree"] == rootless_tree["tree"]
    user = rootless.podman(fresh, "run", "--rm", "--network=none", f"localhost/osbuild-oci/trees:{pulled['tree']}",
                           "getent", "passwd", "debian").stdout
    assert user.startswith("debian:x:1000:1000:")
    state = run_dir(rootless.podman_args(fresh))
    assert state.is_dir()
    rootless.run("osbuild-oci", "store", "delete", "--store", fresh)
    assert not state.exists(), "store delete leaves no run state"


class Listener:
    """A TCP listener on an address of this host that records whether anyone connected."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((address, 0))
        self.sock.listen()
        self.sock.settimeout(0.5)
        self.address, self.port = address, self.sock.getsockname()[1]
        self.connected = False
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                self.connected = True
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        self._stop = True
        self.thread.join()
        self.sock.close()


def host_address() -> str:
    """This host's own (global, IPv4) address, where its services listen for the network."""
    found = json.loads(subprocess.run(["ip", "-4", "-j", "addr", "show", "scope", "global"], capture_output=True,
                                      text=True, check=True).stdout)
    return next(info["local"] for link in found for info in link.get("addr_info", []))


PROBE = '''#!/usr/bin/python3
import json, os, socket, osbuild_stage

def probe(tree, options):
    results = {}
    for name, (host, port) in options["targets"].items():
        s = socket.socket()
        s.settimeout(5)
        try:
            s.connect((host, port))
            results[name] = "connected"
        except OSError as err:
            results[name] = f"refused: {err}"
    with open(os.path.join(tree, "probe.json"), "w") as f:
        json.dump(results, f)

osbuild_stage.main(probe)
'''


def write_probe_stage(root: Path, name: str) -> None:
    folder = root / "stages" / name
    folder.mkdir(parents=True)
    (folder / "stage").write_text(PROBE)
    (folder / "stage").chmod(0o755)
    (folder / "schema.json").write_text(json.dumps({"type": "object", "required": ["targets"],
                                                    "properties": {"targets": {"type": "object"}}}))
    (folder / "Containerfile").write_text("FROM localhost/osbuild-oci/stage-base:latest\n"
                                          "COPY stage /usr/libexec/osbuild-oci/stage\n"
                                          'LABEL org.osbuild-oci.network="true"\n'
                                          'LABEL org.osbuild-oci.capabilities="CAP_DAC_OVERRIDE"\n'
                                          'ENTRYPOINT ["/usr/libexec/osbuild-oci/stage"]\n')


def test_what_a_killed_build_or_a_deleted_store_leaves_is_cleaned_up_by_the_next_command(rootless):
    """kill -9 of osbuild-oci while a stage runs leaves its podman service, the stage's container and its
    scratch (podman's, where rootless podman without a session also keeps the container's runtime state).
    The next build on the store stops the container, runs, and leaves none of it, nor a half-written
    output copy; a store removed by hand loses its runtime directory and pause process when the next
    service starts."""
    store, other, pipeline = rootless.home / "kill-store", rootless.home / "kill-store-2", rootless.home / "kill.json"
    for path in (store, other):
        rootless.remove(path)
    uid = pwd.getpwnam(rootless.name).pw_uid
    scratch, runtime = Path("/var/tmp") / f"osbuild-oci-{uid}", Path(f"/tmp/osbuild-oci-{uid}")

    def sleepers() -> list[str]:
        return subprocess.run(["pgrep", "-u", rootless.name, "-fx", "sleep 613"], capture_output=True,
                              text=True).stdout.split()

    def write(script: str) -> None:
        pipeline.write_text(json.dumps({"name": "kill", "base": MINBASE,
                                        "stages": [{"name": "org.osbuild.script", "options": {"script": script}}]}))
        shutil.chown(pipeline, rootless.name)

    def runtime_of(path: Path) -> list[Path]:
        return [record.parent for record in runtime.glob("*/store") if record.read_text() == str(path)]

    write("sleep 613")
    proc = subprocess.Popen(rootless.argv("osbuild-oci", "build", pipeline, "--store", store, "--json"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=rootless.src,
                            start_new_session=True)
    try:
        LineReader(proc).wait_for(lambda stream, line: '"stage-start"' in line, timeout=300)
        deadline = time.monotonic() + 120
        while not sleepers():
            assert proc.poll() is None and time.monotonic() < deadline, "the stage's container did not start"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
    assert sleepers(), "the stage's container outlives the killed command"
    assert list(scratch.iterdir()) != [], "the killed command's scratch is left"
    half = store / "outputs" / f".{'0' * 64}"
    half.mkdir(parents=True)
    (half / "disk.qcow2").write_bytes(b"QFI\xfb half")
    subprocess.run(["chown", "-R", rootless.name, str(store / "outputs")], check=True)

    write("echo after > /after")
    try:
        after = rootless.build(pipeline, store)
        assert after["proc"].returncode == 0, after["proc"].stderr
        assert after["ran"] == ["org.osbuild.script"]
        assert sleepers() == [], "the next command stopped the killed command's container"
        assert rootless.podman(store, "ps", "--all", "--quiet").stdout.split() == []
        assert list(scratch.iterdir()) == [], "and removed its scratch"
        assert not half.exists(), "and the output copy a kill left half written"
    finally:
        subprocess.run(["pkill", "-u", rootless.name, "-fx", "sleep 613"], check=False)

    # The user's own podman call above left the pause process of the store's runtime directory.
    pause = int((runtime_of(store)[0] / "tmp" / "pause.pid").read_text())
    assert Path(f"/proc/{pause}/cmdline").read_bytes().split(b"\0")[0] in (b"podman", b"catatonit")
    rootless.remove(store)
    write("echo other > /other")
    assert rootless.build(pipeline, other)["ran"] == ["org.osbuild.script"]
    assert runtime_of(store) == [], "the runtime directory of a store removed by hand goes with the next service"
    try:
        running = Path(f"/proc/{pause}/cmdline").read_bytes() != b""  # a zombie's is empty
    except FileNotFoundError:
        running = False
    assert not running, "and so does its pause process"
    rootless.run("osbuild-oci", "store", "delete", "--store", other)
    rootless.remove(pipeline)


@pytest.mark.parametrize("who", ["root", "rootless"])
def test_a_stage_granted_the_network_reaches_the_mirror_but_not_this_host(who, request, tmp_path, stage_images):
    """Its own namespace: the Debian mirror answers (the positive control), while this host's loopback, its own
    address and link-local addresses (a cloud's metadata service) refuse it.  Without the grant, nothing runs.
    A user without slirp4netns is refused unless --allow-host-network, which reaches loopback (the control)."""
    name = f"test.netprobe-{who}"
    loopback, own = Listener("127.0.0.1"), Listener("0.0.0.0")
    targets = {"mirror": ["deb.debian.org", 80], "loopback": ["127.0.0.1", loopback.port],
               "own address": [host_address(), own.port], "link-local": ["169.254.169.254", 80]}
    pipeline = {"name": "probe", "base": MINBASE, "stages": [{"name": name, "options": {"targets": targets}}]}
    user = request.getfixturevalue("rootless") if who == "rootless" else None
    try:
        if who == "root":
            source = tmp_path / "source"
            write_probe_stage(source, name)
            built = subprocess.run([f"{REPO}/.venv/bin/osbuild-oci", "stages", "build", "--source", str(source),
                                    "--only", name], capture_output=True, text=True)
            assert built.returncode == 0, built.stderr
            refused = run_build(pipeline, tmp_path / "store", tmp_path / "refused")
            assert refused.returncode == 2 and f"pass --allow-network {name}" in refused.stderr
            assert refused.of("stage-start") == []
            result = run_build(pipeline, tmp_path / "store", tmp_path / "out", "--allow-network", name)
            assert result.returncode == 0, result.stderr
            found = json.loads(tree_run(tmp_path / "store", result.image, "cat", "/probe.json"))
            remove_default_images(stage_ref(name))
        else:
            source = user.home / "probe-source"
            user.remove(source)
            write_probe_stage(tmp_path / "probe", name)
            shutil.copytree(tmp_path / "probe", source)
            subprocess.run(["chown", "-R", user.name, str(source)], check=True)
            user.run("osbuild-oci", "stages", "build", "--source", source, "--only", name)
            path = user.home / "probe.json"
            path.write_text(json.dumps(pipeline))
            store = user.home / "probe-store"
            user.remove(store)
            result = user.build(path, store, "--allow-network", name)
            assert result["proc"].returncode == 0, result["proc"].stderr
            assert "share this host's network namespace" not in result["proc"].stderr
            found = json.loads(user.podman(store, "run", "--rm", "--network=none",
                                           f"localhost/osbuild-oci/trees:{result['tree']}", "cat", "/probe.json").stdout)
            user.run("osbuild-oci", "store", "delete", "--store", store)
        time.sleep(0.5)
        assert found["mirror"] == "connected", found
        assert all(found[target].startswith("refused") for target in ("loopback", "own address")), found
        assert "Connection refused" in found["link-local"], f"refused at once, not timed out: {found}"
        assert not loopback.connected and not own.connected
        if user is not None:
            shared = without_slirp4netns(user, path, name)
            assert shared["loopback"] == "connected", f"--allow-host-network shares this host's: {shared}"
    finally:
        loopback.close()
        own.close()
        if user is not None:
            user.run("sh", "-c", f"podman $(osbuild-oci stages podman-args) rmi --force --ignore {stage_ref(name)}")
            for made in ("probe-source", "probe.json"):
                user.remove(user.home / made)


def without_slirp4netns(user, pipeline: Path, name: str) -> dict:
    """Where the user has no slirp4netns (PATH without it), a stage granted the network is refused before
    anything runs, naming both ways out; --allow-host-network runs it in this host's namespace, said aloud.
    What the probe found there."""
    bin_dir = user.home / "bin-without-slirp4netns"
    user.remove(bin_dir)
    bin_dir.mkdir()
    for folder in (Path("/usr/bin"), Path("/usr/sbin")):
        for program in folder.iterdir():
            if program.name != "slirp4netns" and not (bin_dir / program.name).exists():
                (bin_dir / program.name).symlink_to(program)
    store = user.home / "probe-host-store"
    user.remove(store)
    path = f"PATH={user.src}/.venv/bin:{bin_dir}"
    grant = ("--allow-network", name)
    try:
        refused = user.run("env", path, "osbuild-oci", "build", pipeline, "--store", store, "--json", *grant,
                           check=False)
        assert refused.returncode == 2, refused.stderr
        assert f"error: {pipeline}: stages[0].name: {name} needs the network, and no network namespace of its own " \
               "can be made here: install slirp4netns" in refused.stderr and "--allow-host-network" in refused.stderr
        assert '"stage-start"' not in refused.stdout
        shared = user.run("env", path, "osbuild-oci", "build", pipeline, "--store", store, "--json", *grant,
                          "--allow-host-network", check=False)
        assert shared.returncode == 0, shared.stderr
        assert "note: --allow-host-network: stages with network share this host's network namespace" in shared.stderr
        tree = next(json.loads(line)["tree"] for line in shared.stdout.splitlines() if '"build-done"' in line)
        return json.loads(user.podman(store, "run", "--rm", "--network=none", f"localhost/osbuild-oci/trees:{tree}",
                                      "cat", "/probe.json").stdout)
    finally:
        user.run("osbuild-oci", "store", "delete", "--store", store, check=False)
        user.remove(bin_dir)


def test_inputs_as_an_ordinary_user_a_context_a_local_deb_and_an_image(rootless):
    """The build context and a local .deb reach the tree rootless, and an image's files are copied out of it in
    podman's user namespace, where its mount is."""
    work, store = rootless.home / "inputs", rootless.home / "inputs-store"
    rootless.remove(work)
    rootless.remove(store)
    package = work / "context" / "hello-inputs"
    (package / "DEBIAN").mkdir(parents=True)
    (package / "DEBIAN/control").write_text("Package: hello-inputs\nVersion: 1.0\nArchitecture: all\nDepends: hello\n"
                                            "Maintainer: Test <test@example.org>\nDescription: a test package\n")
    (package / "usr/bin").mkdir(parents=True)
    (package / "usr/bin/hello-inputs").write_text("#!/bin/sh\nexec hello -g 'hi from inputs'\n")
    (package / "usr/bin/hello-inputs").chmod(0o755)
    (work / "context/app.conf").write_text("port = 8080\n")
    (work / "image/usr/local/bin").mkdir(parents=True)
    (work / "image/usr/local/bin/tool").write_text("#!/bin/sh\necho tool 1.0\n")
    (work / "image/usr/local/bin/tool").chmod(0o755)
    pipeline = {"name": "rootless-inputs", "base": MINBASE, "stages": [
        {"name": "org.osbuild.apt", "options": {"debs": [{"from": "context", "source": "hello-inputs.deb"}]}},
        {"name": "org.osbuild-oci.copy", "options": {"items": [
            {"from": "context", "source": "app.conf", "destination": "/etc/app/"},
            {"from": "image", "image": "localhost/inputs-test-tool:latest", "source": "/usr/local/bin/tool",
             "destination": "/usr/bin/"}]}}]}
    (work / "p.json").write_text(json.dumps(pipeline))
    subprocess.run(["chown", "-R", f"{rootless.name}:{rootless.name}", str(work)], check=True)
    rootless.run("dpkg-deb", "--root-owner-group", "--build", package, work / "context/hello-inputs.deb")
    rootless.run("tar", "-C", work / "image", "-cf", work / "image.tar", ".")
    rootless.run("podman", "import", "-q", work / "image.tar", "localhost/inputs-test-tool:latest")
    try:
        built = rootless.build(work / "p.json", store, "--context", work / "context")
        assert built["proc"].returncode == 0, built["proc"].stderr[-3000:]
        assert built["ran"] == ["org.osbuild.apt", "org.osbuild-oci.copy"]
        shown = rootless.podman(store, "run", "--rm", "--network=none", f"localhost/osbuild-oci/trees:{built['tree']}",
                                "sh", "-c", "hello-inputs; cat /etc/app/app.conf; tool; stat -c '%U %a' /usr/bin/tool")
        assert shown.stdout.splitlines() == ["hi from inputs", "port = 8080", "tool 1.0", "root 755"]
        document = json.loads(rootless.run("osbuild-oci", "sbom", built["tree"], "--store", store).stdout)
        origin = next(p for p in document["packages"] if p["name"] == "hello-inputs")
        assert origin["comment"].startswith("installed from a local .deb file, sha256:")
    finally:
        rootless.run("podman", "rmi", "--force", "localhost/inputs-test-tool:latest", check=False)
        rootless.run("sh", "-c", 'podman $(osbuild-oci stages podman-args) rmi --force --ignore "$1"', "sh",
                     "localhost/inputs-test-tool:latest")
        rootless.remove(store)
        rootless.remove(work)
