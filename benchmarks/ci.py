#!/usr/bin/env python3
"""Where CI runs, in one run: the osbuild-oci image's size; pipelines/debian-bookworm-tree.json cold and fully
cached in the image's unprivileged container against the same build on the host and against a plain
mmdebstrap of the same packages; and pod B (fresh volumes, every tree in the registry) against pod A (cold),
both played by an unprivileged user's podman kube play from `osbuild-oci kube job`.

Every cold row starts with a fresh store and an empty package cache (the container's and the pods' volumes
are new); the host has its stage images at hand, the container and the pods pull them from a registry on
127.0.0.1 (pushed once, before the rows), as a CI job does.  "cached" is the same command again on the
same store or volume.  The pods are played as docs/ci.md says podman 4.3 must (hostNetwork, privileged in
place of procMount, in the user's own namespace).

Run as root after scripts/setup-host, with an unprivileged user that scripts/setup-host --user prepared
(the test suite's is fine), the image built (`osbuild-oci image build`) and the machine otherwise quiet:
    .venv/bin/python benchmarks/ci.py [--user NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from helpers import start_registry, stop  # noqa: E402
from test_ci_containers import IMAGE, pod_of  # noqa: E402

CLI = [sys.executable, "-m", "osbuild_oci"]
PIPELINE = REPO / "pipelines" / "debian-bookworm-tree.json"
MIRROR = "http://deb.debian.org/debian"


def timed(cmd: list, user: str | None = None) -> tuple[float, subprocess.CompletedProcess]:
    if user:
        home = pwd.getpwnam(user).pw_dir
        cmd = ["runuser", "-u", user, "--", "env", "-i", f"HOME={home}", f"USER={user}", "PATH=/usr/bin:/bin", *cmd]
    t0 = time.monotonic()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          cwd=pwd.getpwnam(user).pw_dir if user else REPO)
    took = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-3000:]}")
    return took, proc


def ran(stdout: str) -> int:
    """How many stages really ran, from --json events."""
    events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return sum(1 for e in events if e.get("event") == "stage-done" and not e["cached"])


class Rows(dict):
    """The results; each printed as it is measured, so a run that fails later still tells what it measured."""

    def __setitem__(self, row: str, values: dict) -> None:
        super().__setitem__(row, values)
        print(f"{row:34} " + "  ".join(f"{k} {v}" for k, v in values.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--user", default=os.environ.get("OSBUILD_OCI_TEST_USER", "osbuild-oci-test"))
    user = parser.parse_args().user
    rows = Rows()
    size = subprocess.run(["podman", "image", "inspect", "--format", "{{.Size}}", IMAGE], capture_output=True,
                          text=True, check=True).stdout
    rows["image size"] = {"MB": round(int(size) / 1e6)}
    work = Path(tempfile.mkdtemp(prefix="osbuild-oci-bench-ci-", dir="/var/tmp"))
    work.chmod(0o755)
    shutil.copy(PIPELINE, work / "tree.json")
    (work / "tree.json").chmod(0o644)
    (work / "registry").mkdir()
    registry, address = start_registry(work / "registry")
    volume = f"osbuild-oci-bench-{uuid.uuid4().hex[:8]}"
    played: list[Path] = []
    try:
        timed([*CLI, "stages", "push", f"{address}/osbuild", "--no-tls-verify"])
        # The user's podman needs the image in its own storage: root's, saved and loaded.
        saved = subprocess.Popen(["podman", "save", IMAGE], stdout=subprocess.PIPE)
        subprocess.run(["runuser", "-u", user, "--", "podman", "load", "--quiet"], stdin=saved.stdout, check=True,
                       capture_output=True, cwd="/")
        saved.wait()

        took, _ = timed(["mmdebstrap", "--variant=minbase", "--include=systemd-sysv,openssh-server", "--quiet",
                         "bookworm", work / "shell.tar", MIRROR])
        rows["plain mmdebstrap"] = {"s": round(took, 1)}

        host = [*CLI, "build", work / "tree.json", "--store", work / "host-store", "--package-cache",
                work / "host-packages", "--json"]
        for row in ("host cold", "host cached"):
            took, proc = timed(host)
            rows[row] = {"s": round(took, 1), "stages run": ran(proc.stdout)}

        container = ["podman", "run", "--rm", "--network", "host", "--security-opt", "unmask=ALL",
                     "-v", f"{volume}:/var/lib/osbuild-oci", "-v", f"{work}:/work:ro", IMAGE,
                     "build", "/work/tree.json", "--stages-from", f"{address}/osbuild", "--no-tls-verify", "--json"]
        for row in ("container cold", "container cached"):
            took, proc = timed(container)
            rows[row] = {"s": round(took, 1), "stages run": ran(proc.stdout)}

        made = subprocess.run([*CLI, "kube", "job", work / "tree.json", "--image", IMAGE, "--registry",
                               f"{address}/osbuild", "--no-tls-verify"], capture_output=True, text=True, check=True)
        for row in ("pod A (cold)", "pod B (fresh, from the registry)"):
            name = f"bench-{uuid.uuid4().hex[:8]}"
            spec = work / f"{name}.yaml"
            spec.write_text(pod_of(made.stdout, name, {}))
            spec.chmod(0o644)
            played.append(spec)
            t0 = time.monotonic()
            timed(["podman", "kube", "play", spec], user)
            _, waited = timed(["podman", "wait", f"{name}-build"], user)
            took = time.monotonic() - t0
            _, logs = timed(["podman", "logs", f"{name}-build"], user)
            assert waited.stdout.strip() == "0", logs.stderr[-3000:]
            rows[row] = {"s": round(took, 1), "stages run": ran(logs.stdout)}
    finally:
        for spec in played:
            subprocess.run(["runuser", "-u", user, "--", "podman", "kube", "down", str(spec)], capture_output=True,
                           cwd="/")
        subprocess.run(["sh", "-c", f"cd / && runuser -u {user} -- podman volume ls -q | grep -E -- '-bench-|"
                                    f"^osbuild-oci-pipelines-' | xargs -r runuser -u {user} -- podman volume rm -f"],
                       capture_output=True)
        subprocess.run(["podman", "volume", "rm", "--force", volume], capture_output=True)
        subprocess.run(["runuser", "-u", user, "--", "podman", "rmi", "--force", IMAGE], capture_output=True, cwd="/")
        if (work / "host-store").exists():
            subprocess.run([*CLI, "store", "delete", "--store", work / "host-store"], capture_output=True)
        stop(registry)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
