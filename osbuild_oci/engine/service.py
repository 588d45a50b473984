"""The podman service of one store: started when a command needs it, stopped when it ends.

Each store has its own containers-storage (`STORE/storage`); stage images live
in the user's ordinary storage, which every store sees read-only as an
additional image store, so a new store needs no copies of them.  The service
listens on a socket in a private runtime directory (0700, the user's own:
a socket someone else could plant there would see every stage's stdin).  A
service orphaned by a killed osbuild-oci is found by its socket path in its
command line and stopped; a socket left by a killed service is removed before a
new one starts.  When
the command ends, the mounts containers-storage keeps under the store are
undone, so the store is a plain directory again.

The runtime directory (podman's run state, the service's log, the store's
events) names its store in a file, so that a store deleted by hand does not
leave it behind for good: on /run, a tmpfs, it would hold memory until the next
boot.  Starting a service removes the runtime directories of stores that are
gone; `store delete` removes its own.

podman's scratch (its TMPDIR: a commit's, pull's, push's or import's blobs
before they are stored, and the stages' report directories) is a directory of
the store's own under /var/tmp, not /var/tmp itself, removed when the service
stops: what a command killed mid-commit leaves there goes when the next
command on the store ends, where in /var/tmp nobody would know it for ours.
Not sooner: rootless podman without a session keeps its OCI runtime's state of
running containers under TMPDIR too, and the next command must first remove
the containers the killed one left.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from ..errors import EngineError
from .host import private_dir, runtime_dir, scratch_root, unmount_below
from .localstorage import StageStorage

# Only a service whose osbuild-oci was killed ever idles this long (a running stage's
# attach counts as activity); the next command on the store stops it anyway.
ORPHAN_TIMEOUT = 3600


# What rootless podman's pause process runs as: itself, or catatonit where that is installed.
PAUSE_PROGRAMS = (b"podman", b"catatonit")


def _kill_pause_process(run_dir: Path) -> None:
    """Rootless podman keeps a pause process per --tmpdir, holding its user namespace: a store's ends with
    its command, or with the store.  The pid file may be stale, so only this user's pause process is killed."""
    try:
        pid = int((run_dir / "tmp" / "pause.pid").read_text())
        proc = Path(f"/proc/{pid}")
        if proc.stat().st_uid == os.geteuid() and \
                os.path.basename((proc / "cmdline").read_bytes().split(b"\0")[0]) in PAUSE_PROGRAMS:
            os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


class Service:
    """`podman system service` for one store, on a socket only this user can reach."""

    def __init__(self, store: Path):
        self.store = store.resolve()
        key = hashlib.sha256(str(self.store).encode()).hexdigest()[:16]
        self.run_dir = runtime_dir() / key
        self.socket_path = self.run_dir / "podman.sock"
        self.log = self.run_dir / "service.log"
        self.scratch = scratch_root() / key
        self._process: subprocess.Popen | None = None

    def podman_args(self) -> list[str]:
        """Global podman flags that select this store; also what a user passes to reach it.  Overlay, as the
        stage images' storage, which the store sees read-only as its additional image store."""
        stages = StageStorage.get()
        if (self.store / "storage" / "vfs").is_dir():
            raise EngineError(f"store {self.store} was made on podman's vfs storage by an older osbuild-oci; "
                              "remove it (rm -rf; rootless, inside `podman unshare`) and build again")
        return ["--root", str(self.store / "storage"), "--runroot", str(self.run_dir / "run"),
                "--tmpdir", str(self.run_dir / "tmp"), "--events-backend", "file", "--storage-driver", "overlay",
                *(arg for option in [*stages.options(), f"overlay.imagestore={stages.graph_root}"]
                  for arg in ("--storage-opt", option))]

    def scratch_dir(self) -> Path:
        """The store's scratch directory, made (private) when first needed."""
        return private_dir(self.scratch, "TMPDIR")

    def environment(self) -> dict[str, str]:
        """The environment of a podman command on this store: its scratch is the store's."""
        return {**os.environ, "TMPDIR": str(self.scratch_dir())}

    def name_store(self) -> None:
        """Write the store's path into its runtime directory, once, for `remove_gone` to find."""
        record = self.run_dir / "store"
        if not record.exists():
            private_dir(self.run_dir)
            record.write_text(str(self.store))

    def remove_run_dir(self) -> None:
        """Remove the store's runtime directory: after the store itself is deleted."""
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def remove_gone(self) -> None:
        """Remove the runtime and scratch directories of this user's stores that no longer exist (deleted by
        hand)."""
        for record in self.run_dir.parent.glob("*/store"):
            try:
                gone = record.parent != self.run_dir and not Path(record.read_text()).exists()
            except OSError:
                continue
            if gone:
                _kill_pause_process(record.parent)
                shutil.rmtree(record.parent, ignore_errors=True)
                shutil.rmtree(self.scratch.parent / record.parent.name, ignore_errors=True)

    def _check_paths(self) -> None:
        runroot = str(self.run_dir / "run")
        if len(runroot) > 50:
            raise EngineError(f"podman refuses the run root {runroot}: longer than 50 characters; "
                              "set XDG_RUNTIME_DIR to a shorter directory of your own (e.g. /run/user/UID)")

    def start(self) -> None:
        """Start the service; one left behind by a killed command is stopped first, its socket removed."""
        self.store.mkdir(parents=True, exist_ok=True)
        self._check_paths()
        private_dir(self.run_dir)
        self.remove_gone()
        self.stop_orphan()
        if self.socket_path.is_socket() or self.socket_path.exists():
            if self.socket_path.lstat().st_uid != os.geteuid():
                raise EngineError(f"{self.socket_path} belongs to another user; refusing to use it")
            self.socket_path.unlink()
        log = open(self.log, "ab")
        self._process = subprocess.Popen(
            ["podman", *self.podman_args(), "system", "service", f"--time={ORPHAN_TIMEOUT}",
             f"unix://{self.socket_path}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            # conmon parses its arguments in the locale's encoding: a UTF-8 store path needs a UTF-8 locale.
            env={**self.environment(), "LC_ALL": "C.UTF-8"})
        deadline = time.monotonic() + 20
        while not self._ping():
            if self._process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace").strip().splitlines()[-3:]
                raise EngineError(f"podman service for store {self.store} did not start: {' '.join(tail)}")
            time.sleep(0.02)

    def alive(self) -> bool:
        """Whether the service still runs, asked after a request failed.

        A killed process closes its sockets a moment before it can be
        reaped, so a request can fail while poll() still sees it running:
        give it a moment to finish dying.
        """
        if self._process is None:
            return False
        try:
            self._process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return True
        return False

    def stop(self) -> None:
        """Stop the service, undo the store's mounts and remove its scratch (the caller holds the store's lock
        and has removed its containers)."""
        if self._process is not None:
            # The whole process group: rootless podman re-executes itself into a user namespace, and a
            # child whose parent was killed would go on holding the store.
            self._signal_group(signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._process.wait()
            self._process = None
        self.stop_orphan()  # one that escaped its group
        _kill_pause_process(self.run_dir)
        unmount_below(self.store)
        shutil.rmtree(self.scratch, ignore_errors=True)


    def stop_orphan(self) -> None:
        """A service whose osbuild-oci died holds the storage; the store's lock says it is nobody's now."""
        self._stop_processes(self._orphans())

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self._process.pid, signum)
        except ProcessLookupError:
            pass

    def _orphans(self) -> list[int]:
        """This user's processes serving this store's socket: a service whose osbuild-oci died."""
        needle = f"unix://{self.socket_path}".encode() + b"\0"
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid == os.geteuid() and needle in (entry / "cmdline").read_bytes():
                        pids.append(int(entry.name))
                except OSError:
                    pass
        return pids

    @staticmethod
    def _stop_processes(pids: list[int]) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _ping(self) -> bool:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.socket_path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            return b" 200 " in sock.recv(64)
        except OSError:
            return False
        finally:
            sock.close()
