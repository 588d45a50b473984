"""What the tests share: the CLI as a user runs it, plain podman on a store, test stage images, disk tools.

Everything here drives the real programs; nothing reaches into osbuild_oci's
internals, so a test fails when the behaviour a user sees breaks.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from osbuild_oci.engine import localstorage

REPO = Path(__file__).resolve().parent.parent
FLAGSHIP = REPO / "pipelines" / "debian-bookworm-qcow2.json"
CLI = [sys.executable, "-m", "osbuild_oci"]
MINBASE = "localhost/osbuild-oci/debian-minbase:bookworm"
TREES = "localhost/osbuild-oci/trees:"
STAGE_BASE = REPO / "osbuild_oci" / "stages" / "sources" / "base"

# Every store a command named since the last leftover check (conftest checks them after each test), and
# (user, home, store) of every store a rootless user's command named.
touched_stores: set[Path] = set()
touched_rootless: set[tuple[str, str, str]] = set()


def stage_images_home() -> dict[str, str]:
    """The environment that keeps a command on this run's stage images when a test moves HOME: they live under
    $XDG_DATA_HOME, else ~/.local/share, and a test's own HOME holds none."""
    return {"XDG_DATA_HOME": os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")}


def _note_store(args: list[str], env: dict | None) -> None:
    if "--store" in args:
        touched_stores.add(Path(args[args.index("--store") + 1]).resolve())
    if env and env.get("OSBUILD_OCI_STORE"):
        touched_stores.add(Path(env["OSBUILD_OCI_STORE"]).resolve())


def environ(env: dict | None) -> dict:
    """This process's environment with ENV's changes; a value of None removes the variable."""
    return {key: value for key, value in {**os.environ, **(env or {})}.items() if value is not None}


def osbuild(*args: str, env: dict | None = None, prefix: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Run the CLI (behind prefix, e.g. prlimit, when given); never raises on a non-zero exit, tests assert on it."""
    argv = list(map(str, args))
    _note_store(argv, env)
    return subprocess.run([*prefix, *CLI, *argv], capture_output=True, text=True, cwd=REPO, env=environ(env))


def osbuild_popen(*args: str, env: dict | None = None) -> subprocess.Popen:
    """The CLI in the background, stdout and stderr as text pipes.

    Its SIGINT is the default one, as at a terminal: a suite started as a shell's background job
    inherits SIGINT ignored, and Ctrl-C would then do nothing to the build.
    """
    argv = list(map(str, args))
    _note_store(argv, env)
    return subprocess.Popen([*CLI, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env=environ(env), preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    events: list[dict] = field(default_factory=list)

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == kind]

    @property
    def ran(self) -> list[str]:
        """Names of the stages whose container really ran (not cached)."""
        return [e["stage"] for e in self.of("stage-done") if not e["cached"]]

    @property
    def tree(self) -> str:
        return self.of("build-done")[0]["tree"]

    @property
    def image(self) -> str:
        return self.of("build-done")[0]["image"]


def events_of(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def sha256(path: Path) -> str:
    """A file's digest, read in chunks (outputs are disk images of hundreds of MB)."""
    with open(path, "rb") as data:
        return hashlib.file_digest(data, "sha256").hexdigest()


def run_build(pipeline: dict | Path, store: Path, output: Path, *extra: str, env: dict | None = None,
              prefix: Sequence[str] = ()) -> Result:
    """`osbuild-oci build --json`; a dict pipeline is written beside the output directory first."""
    if isinstance(pipeline, dict):
        path = output.parent / f"{output.name}.json"
        path.write_text(json.dumps(pipeline))
    else:
        path = Path(pipeline)
    proc = osbuild("build", path, "--store", store, "-o", output, "--json", *extra, env=env, prefix=prefix)
    return Result(proc.returncode, proc.stdout, proc.stderr, events_of(proc.stdout))


@functools.cache
def podman_args(store: Path) -> tuple[str, ...]:
    """The flags `osbuild-oci store podman-args` gives, as the README tells users to reach a store."""
    proc = subprocess.run([*CLI, "store", "podman-args", "--store", str(store)], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return tuple(shlex.split(proc.stdout))


@functools.cache
def stage_podman_args() -> tuple[str, ...]:
    """The flags `osbuild-oci stages podman-args` gives: podman on the storage where the stage images are."""
    proc = subprocess.run([*CLI, "stages", "podman-args"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return tuple(shlex.split(proc.stdout))


def stage_podman(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Plain podman changing the stage images' storage (`podman $(osbuild-oci stages podman-args) ARGS`), under
    its lock: while other workers build, a write there otherwise risks podman 4.3's lock-order deadlock."""
    with localstorage.changing():
        return subprocess.run(["podman", *stage_podman_args(), *args], capture_output=True, **kwargs)


# The store the tests' own containers run in, one per worker: conftest's tools_store puts it in the run's
# temporary directory, whose mounts and files the run removes with the rest.
TOOLS_STORE: list[Path] = []


@functools.cache
def _tools_flags(store: Path) -> tuple[str, ...]:
    """`osbuild-oci store podman-args` for the tools' store, asked once a worker rather than at every tool run."""
    return tuple(shlex.split(subprocess.run([*CLI, "store", "podman-args", "--store", str(store)],
                                            capture_output=True, text=True, check=True).stdout))


def tool_podman(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Plain podman running a stage image as a tool (a disk's partition table, a file of the image) in a store
    of the tests' own: it only reads the stage images' storage, so it waits for no build."""
    with localstorage.in_use():
        return subprocess.run(["podman", *_tools_flags(TOOLS_STORE[0]), *args], **kwargs)


def run_dir(args: Sequence[str]) -> Path:
    """Where a store's podman run state, service log and events live, from its podman args: above --runroot."""
    return Path(args[list(args).index("--runroot") + 1]).parent


def podman(store: Path, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    """Plain podman pointed at a store's storage.  It reads the stage images too (the store's additional image
    store), so it holds them in use as osbuild-oci does: a listing beside another worker's `rmi` there
    otherwise fails ("image not known")."""
    with localstorage.in_use():
        proc = subprocess.run(["podman", *podman_args(Path(store).resolve()), *args], capture_output=True,
                              text=True, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {proc.stderr}")
    return proc


def tree_run(store: Path, image: str, *cmd: str) -> str:
    """Run a command in a tree image (no network) and return its stdout."""
    return podman(store, "run", "--rm", "--network=none", image, *cmd).stdout


def _storage_records(store: Path, kind: str) -> list[dict]:
    """containers-storage's own list of a store's images or layers (storage/DRIVER-KIND/KIND.json)."""
    files = list((Path(store) / "storage").glob(f"*-{kind}/{kind}.json"))
    assert len(files) == 1, f"no containers-storage {kind} list in {store}"
    return json.loads(files[0].read_text())


def store_state(store: Path) -> dict:
    """What a build may change in a store: its images (ids and names) and layers, its containers, and how
    many containers were ever created in it.

    Images and layers come from containers-storage's records of this store alone: `podman images` on
    a store also lists every stage image it sees and takes seconds.  The store must already hold a
    tree, so "unchanged" can never be two empty answers.
    """
    state = {
        "images": sorted((i["id"], tuple(sorted(i.get("names") or []))) for i in _storage_records(store, "images")),
        "layers": sorted(layer["id"] for layer in _storage_records(store, "layers")),
        "containers": podman(store, "ps", "--all", "--quiet").stdout.split(),
        "created": len(podman(store, "events", "--stream=false", "--filter", "event=create",
                              "--format", "{{.ID}}").stdout.split()),
    }
    assert any(name.startswith(TREES) for _, names in state["images"] for name in names), \
        f"store {store} holds no tree: nothing to compare against"
    return state


def tree_tags(store: Path) -> set[str]:
    """The store's trees, as `localhost/osbuild-oci/trees:<id>` names."""
    names = podman(store, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    return {name for name in names if name.startswith(TREES)}


def tree_entry(store: Path, image: str, path: str) -> tuple[tarfile.TarInfo, bytes | None] | None:
    """A path as the tree's layers hold it, or None; `podman run` (and `podman cp`) would show podman's
    own /dev, /etc/hostname and /etc/hosts instead.  The whole export is read, so a cut-off stream fails."""
    container = podman(store, "create", image, "true").stdout.strip()
    wanted = path.lstrip("/")
    found = None
    try:
        with localstorage.in_use(), subprocess.Popen(["podman", *podman_args(Path(store).resolve()), "export",
                                                      container], stdout=subprocess.PIPE,
                                                     stderr=subprocess.PIPE) as proc:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for info in tar:
                    if info.name.lstrip("./") == wanted:
                        data = tar.extractfile(info) if info.isfile() else None
                        found = info, data.read() if data else None
            errors = proc.stderr.read().decode(errors="replace")
        assert proc.returncode == 0, f"podman export {image} failed: {errors}"
    finally:
        podman(store, "rm", container)
    return found


def mkdir_stage(content: str = "hello") -> dict:
    return {"name": "org.osbuild-oci.files", "options": {"files": [{"path": "/srv/data/greeting", "content": content}]}}


# -- stage images made by tests ------------------------------------------------

TESTING_STAGE = '''#!/usr/bin/python3
import os, sys, time
import osbuild_stage

def testing(tree, options):
    print("testing stage VERSION running", flush=True)
    time.sleep(options.get("sleep", 0))
    if options.get("fail"):
        print("failing as asked", file=sys.stderr)
        sys.exit(3)
    with open(os.path.join(tree, "version"), "w") as f:
        f.write("VERSION")

osbuild_stage.main(testing)
'''

TESTING_SCHEMA = {"type": "object", "additionalProperties": False,
                  "properties": {"sleep": {"type": "number"}, "fail": {"type": "boolean"}, "note": {"type": "string"}}}


def unique_name(prefix: str = "test.stage") -> str:
    """A stage name no other test (and no org.osbuild.* image) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def stage_ref(name: str) -> str:
    return f"localhost/osbuild-oci/{name}:latest"


def write_stage(root: Path, name: str, program: str, schema: dict | None = None, labels: dict | None = None,
                kind: str = "stages", parent: str = "localhost/osbuild-oci/stage-base:latest") -> Path:
    """A source folder ROOT/KIND/NAME beside a link to this repo's base; returns the folder."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "base").exists():
        (root / "base").symlink_to(STAGE_BASE)
    folder = root / kind / name
    folder.mkdir(parents=True, exist_ok=True)
    label_lines = "".join(f"LABEL {key}={json.dumps(value)}\n" for key, value in (labels or {}).items())
    (folder / "Containerfile").write_text(
        f"FROM {parent}\nCOPY stage /usr/libexec/osbuild-oci/stage\n{label_lines}"
        'ENTRYPOINT ["/usr/libexec/osbuild-oci/stage"]\n')
    (folder / "schema.json").write_text(json.dumps(schema or {"type": "object"}))
    (folder / "stage").write_text(program)
    (folder / "stage").chmod(0o755)
    return folder


def build_stage(root: Path, name: str) -> subprocess.CompletedProcess:
    """`osbuild-oci stages build --source ROOT --only NAME`, asserted to succeed."""
    proc = osbuild("stages", "build", "--source", root, "--only", name)
    assert proc.returncode == 0, proc.stderr
    return proc


def make_testing_stage(root: Path, name: str, version: str) -> None:
    """The testing stage under NAME, printing and writing VERSION; rebuilt when VERSION changes."""
    write_stage(root, name, TESTING_STAGE.replace("VERSION", version), TESTING_SCHEMA,
                {"org.osbuild-oci.capabilities": "CAP_DAC_OVERRIDE"})
    build_stage(root, name)


def remove_default_images(*refs: str) -> None:
    """Remove images a test built in the stage images' storage."""
    stage_podman("rmi", "--force", "--ignore", *refs, text=True)


class User:
    """A throwaway unprivileged user on the real host, removed with everything it ran afterwards.

    Like a user started with su or runuser here, it has no systemd session: no XDG_RUNTIME_DIR,
    so its podman keeps its runtime files in /tmp/podman-run-UID.
    """

    def __init__(self, name: str):
        subprocess.run(["useradd", "--system", "--create-home", "--shell", "/bin/sh", name], check=True)
        self.name = name
        self.uid = int(subprocess.run(["id", "-u", name], capture_output=True, text=True, check=True).stdout)
        self.home = Path(os.path.expanduser(f"~{name}"))

    def run(self, *cmd: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        """CMD as the user, in the environment of a fresh login (not the test's podman settings)."""
        env = [f"HOME={self.home}", f"USER={self.name}", "PATH=/usr/local/bin:/usr/bin:/bin"]
        return subprocess.run(["runuser", "-u", self.name, "--", "env", "-i", *env, *cmd],
                              input=stdin, capture_output=True, cwd="/", timeout=120)

    def remove(self) -> None:
        pause = Path(f"/tmp/podman-run-{self.uid}/libpod/tmp/pause.pid")
        if pause.exists():
            os.kill(int(pause.read_text()), 15)
            time.sleep(0.2)
        remove_user(self.name, self.uid)


def remove_user(name: str, uid: int) -> None:
    """Remove a throwaway user, its home, and what its podman and osbuild-oci kept outside it: users without
    a session keep their runtime files under /tmp (podman's, the run root c/storage picks without a
    storage.conf, osbuild-oci's) and osbuild-oci its scratch under /var/tmp."""
    subprocess.run(["pkill", "-u", name], check=False)
    subprocess.run(["userdel", "--remove", name], capture_output=True)
    for leftover in (f"/tmp/podman-run-{uid}", f"/tmp/containers-user-{uid}", f"/tmp/osbuild-oci-{uid}",
                     f"/var/tmp/osbuild-oci-{uid}"):
        remove_mounted(Path(leftover))


def remove_mounted(path: Path) -> None:
    """Remove what a user's podman made, whatever it left mounted below it or owned by subordinate ids; a file
    too (rmtree leaves a file, without a word)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    subprocess.run(["sh", "-c", f'grep -o " {path}/[^ ]*" /proc/self/mounts | xargs -r -n1 umount -l'], check=False)
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class Rootless:
    """An unprivileged user with a checkout of its own (the suite's is prepared by scripts/setup-host)."""

    name: str
    home: Path

    @property
    def src(self) -> Path:
        return self.home / "src"

    def argv(self, *cmd: str) -> list[str]:
        """CMD as the user runs it: through runuser, with a login's environment and the checkout's .venv."""
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name, "LANG": "C.UTF-8",
               "PATH": f"{self.src}/.venv/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
        return ["runuser", "-u", self.name, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *map(str, cmd)]

    def run(self, *cmd: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
        words = list(map(str, cmd))
        if "--store" in words and words[:1] == ["osbuild-oci"]:
            touched_rootless.add((self.name, str(self.home), words[words.index("--store") + 1]))
        proc = subprocess.run(self.argv(*cmd), capture_output=True, text=True, cwd=self.src, timeout=timeout)
        if check:
            assert proc.returncode == 0, f"{' '.join(map(str, cmd))} as {self.name}: {proc.stderr[-3000:]!r}"
        return proc

    def build(self, pipeline: Path | str, store: Path, *extra: str, output: Path | None = None) -> dict:
        """`osbuild-oci build --json` as the user; the events and the process."""
        args = ["osbuild-oci", "build", pipeline, "--store", store, "--json", *extra]
        if output is not None:
            args += ["-o", output]
        proc = self.run(*args, check=False)
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        return {"proc": proc, "events": events,
                "ran": [e["stage"] for e in events if e["event"] == "stage-done" and not e["cached"]],
                "tree": next((e["tree"] for e in events if e["event"] == "build-done"), None)}

    def remove(self, path: Path) -> None:
        """Remove what the user made, files of its subordinate ids included."""
        remove_mounted(path)

    def podman_args(self, store: Path) -> list[str]:
        """The flags `osbuild-oci store podman-args` gives the user for a store."""
        return shlex.split(self.run("osbuild-oci", "store", "podman-args", "--store", store).stdout)

    def podman(self, store: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("podman", *self.podman_args(store), *args, check=check)


    def give_checkout(self) -> None:
        """A copy of this checkout's files (tracked or new, not ignored) in the user's home, the user's own: the
        suite may run from a clone the user cannot read (a root's home is 0700)."""
        files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                               capture_output=True, check=True).stdout.split(b"\0")
        shutil.rmtree(self.src, ignore_errors=True)
        for name in filter(None, files):
            source, target = REPO / name.decode(), self.src / name.decode()
            if source.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        subprocess.run(["chown", "-R", f"{self.name}:{self.name}", str(self.src)], check=True)


# -- processes whose output is read while they run ------------------------------

class LineReader:
    """Lines of a running process's stdout and stderr, with the time each arrived, readable with a timeout."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[tuple[str, float, str]] = []
        for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            threading.Thread(target=self._pump, args=(name, stream), daemon=True).start()

    def _pump(self, name: str, stream) -> None:
        for line in stream:
            self.lines.put((name, time.monotonic(), line))
        self.lines.put((name, time.monotonic(), None))

    def wait_for(self, predicate, timeout: float) -> tuple[str, float, str]:
        """The first (stream, time, line) matching predicate(stream, line); fails after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"nothing matching within {timeout} s; seen: {self.seen[-20:]}"
            try:
                name, at, line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                continue
            self.seen.append((name, at, line))
            if predicate(name, line):
                return name, at, line

    def drain(self, timeout: float) -> list[tuple[str, float, str]]:
        """Wait for the process to exit and collect the rest of its lines."""
        self.proc.wait(timeout=timeout)
        ended = 0
        while ended < 2:
            name, at, line = self.lines.get(timeout=timeout)
            if line is None:
                ended += 1
            else:
                self.seen.append((name, at, line))
        return self.seen


class Terminal:
    """A tmux session on a tmux server of its own: a real terminal that a test types into and reads."""

    def __init__(self, script: str, width: int = 200, height: int = 50):
        self.tmux = ["tmux", "-L", unique_name("osbuild-oci-test")]
        subprocess.run([*self.tmux, "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), script],
                       check=True)

    def __enter__(self) -> "Terminal":
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run([*self.tmux, "kill-server"], capture_output=True)

    def screen(self) -> str:
        return subprocess.run([*self.tmux, "capture-pane", "-p", "-t", "t"], capture_output=True, text=True).stdout

    def wait_for(self, text: str, timeout: float) -> str:
        """The screen once it shows text; fails with the screen after timeout seconds."""
        deadline = time.monotonic() + timeout
        while text not in (screen := self.screen()):
            assert time.monotonic() < deadline, f"no {text!r} on the terminal after {timeout} s:\n{screen}"
            time.sleep(0.3)
        return screen

    def type(self, line: str) -> None:
        """Type a line and press Enter."""
        subprocess.run([*self.tmux, "send-keys", "-t", "t", "-l", line], check=True)
        subprocess.run([*self.tmux, "send-keys", "-t", "t", "Enter"], check=True)


# -- registries -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(root: Path, htpasswd: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Debian's docker-registry on a random loopback port, storing into root."""
    port = free_port()
    auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n" if htpasswd else ""
    config = root / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\n"
                      f"  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=open(root / "registry.log", "w"))
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((root / "registry.log").read_text())
            time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait()


def skopeo_inspect(ref: str, *extra: str) -> dict:
    proc = subprocess.run(["skopeo", "inspect", "--tls-verify=false", *extra, f"docker://{ref}"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# -- disks, inspected with the tools of the raw assembler image -------------------

DISK_TOOLS = "localhost/osbuild-oci/org.osbuild-oci.disk:latest"
SECTOR = 512
GPT = {"bios": "21686148-6E49-704E-6564-65654E656564", "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
       "root": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"}


def disk_tool(image: Path, *cmd: str) -> str:
    """Run a disk tool from the assembler image on IMAGE (mounted read-only at /d/NAME)."""
    proc = tool_podman("run", "--rm", "--network=none", "-v", f"{image.parent}:/d:ro", "--entrypoint", cmd[0],
                       DISK_TOOLS, *[c.replace("IMG", f"/d/{image.name}") for c in cmd[1:]], capture_output=True,
                       text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stderr}"
    return proc.stdout


def partitions(image: Path) -> dict:
    return json.loads(disk_tool(image, "sfdisk", "--json", "IMG"))["partitiontable"]


def root_fs(image: Path, start_sector: int) -> dict:
    out = disk_tool(image, "blkid", "-p", "-O", str(start_sector * SECTOR), "-o", "export", "IMG")
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def root_file(image: Path, start_sector: int, path: str) -> str:
    return disk_tool(image, "debugfs", "-R", f"cat {path}", f"IMG?offset={start_sector * SECTOR}")


def esp_listing(image: Path, start_sector: int) -> str:
    return disk_tool(image, "mdir", "-b", "-i", f"IMG@@{start_sector * SECTOR}", "::/EFI/BOOT")


def boot_img() -> bytes:
    """GRUB's boot.img, as the assembler image has it."""
    return tool_podman("run", "--rm", "--network=none", "--entrypoint", "cat", DISK_TOOLS,
                       "/usr/lib/grub/i386-pc/boot.img", capture_output=True, check=True).stdout


def check_gpt_disk(image: Path, uuid_: str, size: int) -> dict:
    """The layout every bootable GPT disk of ours has; returns the root partition."""
    table = partitions(image)
    assert table["label"] == "gpt"
    parts = table["partitions"]
    assert [(p["start"], p["size"], p["type"], p["name"]) for p in parts[:2]] == [
        (2048, 2048, GPT["bios"], "bios"), (4096, 204800, GPT["esp"], "esp")]
    root = parts[2]
    assert (root["start"], root["type"]) == (208896, GPT["root"])
    assert (root["start"] + root["size"]) * SECTOR == size - 1024 * 1024, "the last MiB is left to the backup GPT"
    assert root_fs(image, root["start"])["UUID"] == uuid_
    assert "BOOTX64.EFI" in esp_listing(image, 4096)
    with open(image, "rb") as f:
        mbr = f.read(SECTOR)
    assert mbr[:0x5C] == boot_img()[:0x5C], "GRUB's boot code is in the MBR"
    assert int.from_bytes(mbr[0x5C:0x64], "little") == 2048, "the boot code points at core.img"
    return root


# -- booting the output ---------------------------------------------------------------

BOOT_TIMEOUT = 240


def boot_to_login(image: Path, firmware: str, tmp: Path, cli: list[str] | tuple[str, ...] = tuple(CLI),
                  hostname: str = "debian-oci", then: str | None = None, disk_arch: str | None = None,
                  boot_args: Sequence[str] = (), answers: Sequence[tuple[bytes, str]] = (),
                  expect: bytes | None = None, while_up: Callable[[], None] | None = None) -> str:
    """`osbuild-oci boot IMAGE --FIRMWARE [--arch DISK_ARCH] [BOOT_ARGS]` until the serial console (its stdout)
    shows the login prompt; the console text.  cli: how to run osbuild-oci (e.g. through runuser, for rootless
    boots).  answers: (pattern, line) to type when the pattern shows, in order, before the login (a LUKS
    passphrase).  expect: a pattern to wait for instead of the login prompt (a boot that must be refused).
    then: a shell command to run after logging in as the README's user (debian/debian); the console text then
    ends with its output, between ==> and <== lines.  while_up: called after that, while the guest still runs
    (e.g. to ssh in).  On a busy machine the kernel's late messages can land between the host name and "login:"."""
    log = tmp / f"serial-{firmware}.log"
    with open(log, "wb") as console:
        # A group of its own: killing it ends osbuild-oci, qemu and runuser alike.
        vm = subprocess.Popen([*cli, "boot", str(image), f"--{firmware}", *(["--arch", disk_arch] if disk_arch else []),
                               *boot_args], stdin=subprocess.PIPE, stdout=console,
                              stderr=subprocess.PIPE, start_new_session=True, cwd=REPO)
    deadline = time.monotonic() + BOOT_TIMEOUT

    def wait_for(pattern: bytes, what: str) -> None:
        while not re.search(pattern, log.read_bytes()):
            assert vm.poll() is None, f"osbuild-oci boot exited: {vm.stderr.read().decode(errors='replace')}"
            assert time.monotonic() < deadline, f"no {what} on the serial console after {BOOT_TIMEOUT} s:\n" + \
                log.read_text(errors="replace")[-3000:]
            time.sleep(1)

    def type_line(line: str) -> None:
        vm.stdin.write(line.encode() + b"\n")
        vm.stdin.flush()

    try:
        for prompt, line in answers:
            wait_for(prompt, f"{prompt!r} prompt")
            type_line(line)
        if expect is not None:
            wait_for(expect, f"{expect!r}")
            return log.read_text(errors="replace")
        wait_for(re.escape(hostname.encode()) + rb" (?:\[[^\n]*\n)*login:", "login prompt")
        if then is not None:
            type_line("debian")
            wait_for(rb"Password:", "password prompt")
            type_line("debian")
            wait_for(rb"debian@" + re.escape(hostname.encode()) + rb":~\$", "shell prompt")
            type_line(f"echo '==''>'; {then}; echo '<''=='")
            wait_for(rb"[\r\n]==>\r?\n(?:.*\n)*?<==", f"output of {then!r}")
        if while_up is not None:
            while_up()
    finally:
        # SIGTERM first, so osbuild-oci boot removes its copy of the disk as it does for a user.
        os.killpg(vm.pid, signal.SIGTERM)
        try:
            vm.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(vm.pid, signal.SIGKILL)
            vm.wait()
    return log.read_text(errors="replace")


def qcow2_file_stat(qcow2: Path, tmp: Path, path: str) -> tuple[int, int, int]:
    """(mode, uid, gid) of a path in the root filesystem of a disk image, as debugfs reads it."""
    raw = tmp / "stat.raw"
    if not raw.exists():
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(qcow2), str(raw)], check=True)
    root = [p for p in partitions(raw)["partitions"] if p.get("name") == "root" or p["type"] in (GPT["root"], "83")]
    out = disk_tool(raw, "debugfs", "-R", f"stat {path}", f"IMG?offset={root[-1]['start'] * SECTOR}")
    fields = dict(re.findall(r"(Mode|User|Group):\s+(\S+)", out))
    kind = {"directory": 0o40000, "regular": 0o100000}[re.search(r"Type: (\w+)", out)[1]]
    return kind | int(fields["Mode"], 8), int(fields["User"]), int(fields["Group"])


def sbom_of(store: Path, ref: str, *extra: str) -> dict:
    """`osbuild-oci sbom REF` as a user runs it, checked with the real spdx-tools validator."""
    proc = osbuild("sbom", ref, "--store", store, *extra)
    assert proc.returncode == 0, proc.stderr
    assert spdx_problems(proc.stdout) == []
    return json.loads(proc.stdout)


def spdx_problems(text: str) -> list[str]:
    """What spdx-tools' full SPDX 2.3 validation says about a JSON document."""
    from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    document = JsonLikeDictParser().parse(json.loads(text))
    return [message.validation_message for message in validate_full_spdx_document(document, "SPDX-2.3")]


def sbom_packages(document: dict) -> set[str]:
    """NAME=VERSION:ARCH of every Debian package an SBOM lists (as `dpkg-query -W -f` prints them)."""
    return {f"{p['name']}={p['versionInfo']}:{p['externalRefs'][0]['referenceLocator'].rsplit('=', 1)[1]}"
            for p in document["packages"] if p.get("externalRefs")}


def depends_closure(document: dict, name: str) -> set[str]:
    """Names of the packages NAME depends on, directly or not, by the SBOM's DEPENDS_ON relationships."""
    names = {p["SPDXID"]: p["name"] for p in document["packages"]}
    edges: dict[str, list[str]] = {}
    for rel in document["relationships"]:
        if rel["relationshipType"] == "DEPENDS_ON":
            edges.setdefault(names[rel["spdxElementId"]], []).append(names[rel["relatedSpdxElement"]])
    seen, todo = set(), [name]
    while todo:
        for dep in edges.get(todo.pop(), []):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def load_program(kind: str, name: str, program: str):
    """A stage or assembler program of this repo as a module, for unit tests of its functions.

    The programs run their work only as programs, so importing one defines its functions and
    nothing else; osbuild_stage comes from the base image's folder.
    """
    # A __pycache__ in the sources would be no harm to their digests, but it is litter in the repo.
    sys.dont_write_bytecode = True
    sources = REPO / "osbuild_oci" / "stages" / "sources"
    if str(sources / "base") not in sys.path:
        sys.path.insert(0, str(sources / "base"))
    loader = importlib.machinery.SourceFileLoader(f"program_{name.replace('.', '_').replace('-', '_')}",
                                                  str(sources / kind / name / program))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


# -- files served over HTTP --------------------------------------------------------------

class FileServer:
    """A folder served over HTTP on 127.0.0.1 from a thread: the paths it was asked for (a proxy is asked for
    whole URLs) and the bytes it served."""

    def __init__(self, root: Path):
        import http.server
        import urllib.parse
        self.requests: list[str] = []
        self.served = 0
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                server.requests.append(self.path)
                self.path = urllib.parse.urlsplit(self.path).path
                super().do_GET()

            def copyfile(self, source, outputfile):
                data = source.read()
                outputfile.write(data)
                server.served += len(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
