"""Inputs, timed: hashing a 10,000-file context path against sha256sum over the same files, a fully cached build
that names that folder against one that names one file of the same context, the app example built cold against
rebuilt after one context file changed, and the bytes a source costs its first and second build against curl.

Run as root after scripts/setup-host, from the checkout:
    .venv/bin/python benchmarks/inputs.py [WORKDIR]   (default: a new directory under /var/tmp)
The app example's cold build fetches Debian packages through the user's package cache (warm after one run).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))
from helpers import FileServer  # noqa: E402

CLI = [str(REPO / ".venv" / "bin" / "osbuild-oci")]
EXAMPLE = REPO / "pipelines" / "debian-bookworm-app-qcow2.json"
FILES = 10_000


def run(*args: str, env: dict | None = None) -> float:
    """Seconds the CLI took; it must succeed."""
    start = time.monotonic()
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {proc.stderr[-2000:]}")
    return time.monotonic() - start


def best(times: list[float]) -> str:
    return f"{min(times):.2f} s (best of {len(times)}: {', '.join(f'{t:.2f}' for t in times)})"


def make_context(root: Path) -> Path:
    """FILES files of 1-4 KiB in 100 folders, as a checkout's tree might hold them, plus one config file."""
    context = root / "context"
    for index in range(FILES):
        folder = context / "tree" / f"d{index % 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index:05d}.txt").write_bytes(os.urandom(1024 + index % 3072))
    (context / "app.conf").write_text("port = 8080\n")
    return context


def hashing(context: Path) -> None:
    from osbuild_oci.build.inputs import context_digest, context_files
    ours = []
    for _ in range(3):
        start = time.monotonic()
        context_digest(context_files(context, "tree"))
        ours.append(time.monotonic() - start)
    shell = []
    for _ in range(3):
        start = time.monotonic()
        subprocess.run("find tree -type f -print0 | sort -z | xargs -0 sha256sum > /dev/null", shell=True,
                       cwd=context, check=True)
        shell.append(time.monotonic() - start)
    print(f"hash {FILES} files (warm page cache): osbuild-oci {best(ours)}; find | sort | xargs sha256sum "
          f"{best(shell)}")


def cached_builds(work: Path, context: Path) -> None:
    """A fully cached build naming the 10,000-file folder against one naming one file of the same context."""
    for name, source in (("folder", "tree"), ("one file", "app.conf")):
        pipeline = work / f"cached-{source}.json"
        pipeline.write_text(json.dumps({"name": f"cached-{source}", "stages": [{"name": "org.osbuild-oci.copy",
                            "options": {"items": [{"from": "context", "source": source, "destination": "/srv/"}]}}]}))
        store = work / f"store-{source}"
        cold = run("build", str(pipeline), "--store", str(store), "--context", str(context))
        cached = [run("build", str(pipeline), "--store", str(store), "--context", str(context)) for _ in range(3)]
        print(f"copy stage naming {name} of a {FILES}-file context: cold {cold:.2f} s, fully cached {best(cached)}")
        run("store", "delete", "--store", str(store))


def example(work: Path) -> None:
    """The app example cold in a new store (package cache warm), then rebuilt after its config changed."""
    context = work / "app-context"
    shutil.copytree(REPO / "pipelines" / "app-context", context)
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(context / "hello-service"),
                    str(context / "hello-service_1.0_all.deb")], check=True, capture_output=True)
    store = work / "store-app"
    build = ["build", str(EXAMPLE), "--store", str(store), "--context", str(context), "--json"]
    cold = run(*build, "-o", str(work / "out-cold"))
    (context / "etc" / "hello.conf").write_text('GREETING="Hello again"\n')
    again = run(*build, "-o", str(work / "out-again"))
    unchanged = run(*build, "-o", str(work / "out-unchanged"))
    print(f"app example (11 stages, qcow2): cold {cold:.1f} s; after one context file changed {again:.1f} s "
          f"({cold / again:.1f}x faster: the copy stage, the stage after it and the assembler); unchanged "
          f"{unchanged:.2f} s")
    run("store", "delete", "--store", str(store))


def fetch_once(work: Path) -> None:
    """A 50 MiB source read by a stage in two fresh stores (the stage runs both times) against curl twice."""
    root = work / "served"
    root.mkdir()
    data = os.urandom(50 << 20)
    (root / "blob").write_bytes(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    server = FileServer(root)
    pipeline = work / "source.json"
    pipeline.write_text(json.dumps({"name": "source", "sources": {digest: f"{server.url}/blob"}, "stages": [
        {"name": "org.osbuild-oci.copy", "options": {"items": [{"from": "source", "source": digest,
                                                                 "destination": "/srv/blob"}]}}]}))
    env = {"XDG_CACHE_HOME": str(work / "cache")}
    rows = []
    for index in (1, 2):
        before = server.served
        seconds = run("build", str(pipeline), "--store", str(work / f"store-source-{index}"), env=env)
        rows.append(f"build {index}: {server.served - before} bytes downloaded, {seconds:.2f} s")
        run("store", "delete", "--store", str(work / f"store-source-{index}"))
    before = server.served
    for _ in (1, 2):
        subprocess.run(["curl", "-sf", "-o", "/dev/null", f"{server.url}/blob"], check=True)
    rows.append(f"curl twice: {server.served - before} bytes")
    print("a 50 MiB source in two new stores: " + "; ".join(rows))
    server.close()


def main(work: Path) -> None:
    context = make_context(work)
    hashing(context)
    cached_builds(work, context)
    fetch_once(work)
    example(work)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="inputs-bench-", dir="/var/tmp"))
    target.mkdir(parents=True, exist_ok=True)
    try:
        main(target)
    finally:
        if len(sys.argv) <= 1:
            shutil.rmtree(target, ignore_errors=True)
