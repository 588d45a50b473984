"""Nothing is lost: killed builds, a killed podman service, two builds at once, a full disk, odd store paths.

Each test kills or starves a real build and then checks what a user would:
the next build succeeds, reuses exactly the stages that finished, and no
container or mount is left in the store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from helpers import (MINBASE, REPO, LineReader, events_of, osbuild, osbuild_popen, podman, run_build,
                     skopeo_inspect, tree_tags)
from osbuild_oci.engine.service import Service

pytestmark = pytest.mark.slow


def script(text: str) -> dict:
    return {"name": "org.osbuild.script", "options": {"script": text}}


def no_leftovers(store: Path) -> None:
    assert podman(store, "ps", "--all", "--quiet").stdout.split() == [], "no container may be left"
    assert not Service(store).scratch.exists(), "the store's scratch is removed when a command ends"
    prefix = str(store.resolve()) + "/"
    with open("/proc/self/mounts", "rb") as mounts:
        left = [line.split()[1] for line in mounts if line.split()[1].decode(errors="replace").startswith(prefix)]
    assert left == [], f"mounts left under the store: {left}"


def kill_when(pipeline: Path, store: Path, output: Path, seen, *extra: str, after: float = 0.0) -> list[dict]:
    """Start a build, kill -9 it `after` seconds past the first line `seen(stream, line)` accepts."""
    proc = osbuild_popen("build", pipeline, "--store", store, "-o", output, "--json", *extra)
    reader = LineReader(proc)
    try:
        reader.wait_for(seen, timeout=600)
        time.sleep(after)
        assert proc.poll() is None, "the build ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return events_of("".join(line for name, _, line in reader.seen if name == "stdout"))


def event(kind: str, **fields):
    def match(stream: str, line: str) -> bool:
        if stream != "stdout" or not line.startswith("{"):
            return False
        doc = json.loads(line)
        return doc["event"] == kind and all(doc.get(k) == v for k, v in fields.items())
    return match


def printed(start: str):
    def match(stream: str, line: str) -> bool:
        return stream == "stderr" and line.startswith(start)
    return match


def test_kill_9_at_five_points_loses_nothing(tmp_path, stage_images, registry, monkeypatch):
    address, _ = registry
    # podman's scratch goes under TMPDIR: a directory of this test's, so what other processes of the machine
    # leave in /var/tmp meanwhile cannot be taken for what the killed builds left.
    scratch_parent = tmp_path / "tmpdir"
    scratch_parent.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch_parent))
    store, cache = tmp_path / "store", f"{address}/faults/trees"
    tree = json.loads((REPO / "pipelines" / "debian-bookworm-tree.json").read_text())
    tree["assembler"] = {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}
    pipeline = tmp_path / "p.json"
    names = [s["name"] for s in tree["stages"]]

    def save(doc: dict) -> Path:
        pipeline.write_text(json.dumps(doc))
        return pipeline

    def rebuild(expect_ran: list[str], *extra: str) -> dict:
        result = run_build(pipeline, store, tmp_path / f"out-{time.monotonic_ns()}", *extra)
        assert result.returncode == 0, result.stderr
        assert result.ran == expect_ran
        no_leftovers(store)
        return result


    # 1. during debootstrap (mmdebstrap is configuring what it unpacked); the stage's scratch directory is
    # left in the store's scratch, where the next build removes it. Each kill waits for a line the stage
    # prints in the midst of its work, not for a time, which a faster machine would outrun.
    save(tree)
    kill_when(pipeline, store, tmp_path / "o1", printed("I: installing essential packages"))
    assert tree_tags(store) == set()
    assert [p.name[:5] for p in Service(store).scratch.iterdir()] == ["meta-"]
    rebuild(names)

    # 2. during apt: only apt and what follows it run again
    tree["stages"][1]["options"]["packages"].append("less")
    save(tree)
    kill_when(pipeline, store, tmp_path / "o2", printed("Unpacking "))
    rebuild(names[1:])

    # 3. during a commit: the stage's container has exited and its 300 MB layer is being written
    tree["stages"].insert(2, script("head -c 300M /dev/urandom > /var/tmp/big && echo WRITTEN-BIG"))
    save(tree)
    kill_when(pipeline, store, tmp_path / "o3", printed("WRITTEN-BIG"), after=0.3)
    rebuild(["org.osbuild.script", *names[2:]])

    # 4. during the assembler (with options whose output is not cached yet): every stage stays cached,
    # the assembler runs again, and no half-written output was kept. gzip keeps the assembler busy for
    # well over the 2 s wait (about 700 MB, 300 MB of it random); a plain tar was done in under 2 s.
    tree["assembler"]["options"] = {"filename": "tree-4.tar.gz", "compression": "gzip"}
    save(tree)
    kill_when(pipeline, store, tmp_path / "o4", event("assembler-start"), after=2)
    assert [e["cached"] for e in rebuild([]).of("assembler-done")] == [False]

    # 5. during a push to the cache registry
    kill_when(pipeline, store, tmp_path / "o5", event("assembler-done"), "--cache-to", cache, "--tls-verify=false",
              after=0.3)
    final = rebuild([], "--cache-to", cache, "--tls-verify=false")
    assert skopeo_inspect(f"{cache}:{final.tree}")["Labels"]["org.osbuild-oci.tree-id"] == final.tree
    assert set(os.listdir(scratch_parent)) <= {f"osbuild-oci-{os.geteuid()}"}, \
        "podman's scratch is the store's own directory, not the whole of TMPDIR"


def test_a_killed_podman_service_fails_the_build_in_one_line_and_the_next_build_works(tmp_path, stage_images):
    store = tmp_path / "store"
    pipeline = tmp_path / "p.json"
    pipeline.write_text(json.dumps({"name": "svc", "base": MINBASE, "stages": [script("sleep 20; echo x > /x")]}))
    proc = osbuild_popen("build", pipeline, "--store", store, "-o", tmp_path / "o", "--json")
    reader = LineReader(proc)
    reader.wait_for(event("stage-start"), timeout=120)
    # The oldest match: a process the service has just forked, before it execs, has the service's command line too.
    service = subprocess.run(["pgrep", "--oldest", "-f", "--", f"--root {store.resolve()}/storage .*system service"],
                             capture_output=True, text=True).stdout.split()
    assert len(service) == 1, service
    os.kill(int(service[0]), signal.SIGKILL)
    seen = reader.drain(timeout=120)
    errors = [line for name, _, line in seen if name == "stderr" and line.startswith("error:")]
    assert proc.returncode == 1
    assert len(errors) == 1 and "the podman service of store" in errors[0], errors
    assert not any("Traceback" in line for _, _, line in seen)

    again = run_build(pipeline, store, tmp_path / "o2")
    assert again.returncode == 0, again.stderr
    assert again.ran == ["org.osbuild.script"]
    no_leftovers(store)


def test_two_builds_on_one_store_both_succeed_and_share_their_prefix(tmp_path, stage_images):
    store = tmp_path / "store"
    shared = [script("sleep 4; echo shared > /shared")]
    results: dict[str, subprocess.CompletedProcess] = {}

    def run(name: str) -> None:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"name": name, "base": MINBASE,
                                    "stages": [*shared, script(f"echo {name} > /{name}")]}))
        results[name] = osbuild("build", path, "--store", store, "-o", tmp_path / f"o-{name}", "--json")

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    for name, proc in results.items():
        assert proc.returncode == 0, proc.stderr
    ran = [e for proc in results.values() for e in events_of(proc.stdout)
           if e["event"] == "stage-done" and not e["cached"]]
    assert [e["index"] for e in ran].count(0) == 1, "the shared stage runs once"
    assert len(ran) == 3
    waited = [n for n, proc in results.items() if "waiting for store" in proc.stderr]
    assert len(waited) == 1, "the second build says it waits"
    assert took < 120
    no_leftovers(store)


@pytest.fixture
def small_fs(tmp_path):
    """A 128 MiB ext4 filesystem on a loop device, mounted at tmp_path/small."""
    image, mount = tmp_path / "small.img", tmp_path / "small"
    subprocess.run(["truncate", "-s", "128M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True)
    mount.mkdir()
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a loop device needs root")
@pytest.mark.parametrize("megabytes,where", [(200, "stage"), (70, "commit")])
def test_a_full_disk_is_one_clear_error_and_the_store_still_works(tmp_path, stage_images, small_fs, megabytes,
                                                                  where):
    store = small_fs / "store"
    pipeline = {"name": "full", "base": MINBASE,
                "stages": [script(f"head -c {megabytes}M /dev/urandom > /big")]}
    full = run_build(pipeline, store, tmp_path / "o1")
    assert full.returncode == 1, full.stderr
    failed_id = full.of("stage-start")[-1]["id"]
    errors = [line for line in full.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no space left on device" in full.stderr.lower(), full.stderr
    assert "Traceback" not in full.stderr
    assert not any(failed_id in tag for tag in tree_tags(store)), "nothing is stored under the failed stage's id"
    no_leftovers(store)

    pipeline["stages"] = [script("head -c 5M /dev/zero > /small")]
    fits = run_build(pipeline, store, tmp_path / "o2")
    assert fits.returncode == 0, fits.stderr
    assert fits.ran == ["org.osbuild.script"]


def test_a_store_path_that_is_not_ascii_is_left_unmounted(tmp_path, stage_images):
    store = tmp_path / "störe with space"
    result = run_build(REPO / "pipelines" / "noop.json", store, tmp_path / "o")
    assert result.returncode == 0, result.stderr
    no_leftovers(store)
    subprocess.run(["rm", "-rf", str(store)], check=True)
    assert not store.exists()
