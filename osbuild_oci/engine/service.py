"""A podman service for one store, and the API calls the orchestrator makes through it.

Trees live in a per-store containers-storage; stage images live in the user's
ordinary storage, which every store sees read-only as an additional image
store, so a new store needs no copies of them.  For each store a `podman
system service` is started (or found again, after a crash) on a socket under
the runtime directory, and podman-py talks to it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Callable

import podman
import podman.api
import podman.errors
import requests

from .. import registry
from ..stageimage import EMPTY_IMAGE
from ..errors import EngineError, RegistryError
from .attach import attach
from .host import runtime_dir, ulimits
from .localstorage import DefaultStorage
from .model import ContainerSpec, ImageInfo

# The service is stopped when the command ends; this idle timeout only reaps a service
# whose osbuild-oci process was killed (open connections, a running stage's attach
# among them, count as activity).
ORPHAN_TIMEOUT = 3600


def _podman_errors(method: Callable) -> Callable:
    """Turn podman-py's exceptions into an EngineError that names the operation, not a traceback."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except podman.errors.APIError as err:
            subject = str(args[0])[:200] if args else ""
            raise EngineError(f"podman refused to {method.__name__.replace('_', ' ')} {subject}: "
                              f"{err.explanation or err}") from None
        except requests.exceptions.ConnectionError as err:
            raise EngineError(f"lost the podman service of this store ({self.socket_path}): {err}") from None
    return wrapper


class Engine:
    """A podman service for one store, and the operations the orchestrator needs of it."""

    def __init__(self, store: Path):
        self.store = store.resolve()
        key = hashlib.sha256(str(self.store).encode()).hexdigest()[:16]
        self.run_dir = runtime_dir() / key
        self.socket_path = self.run_dir / "podman.sock"
        self._service: subprocess.Popen | None = None
        self._client: podman.PodmanClient | None = None
        self._containers: set[str] = set()

    # -- service lifecycle -------------------------------------------------

    def podman_args(self) -> list[str]:
        """Global podman flags that select this store; also what a user passes to reach it."""
        default = DefaultStorage.detect()
        args = ["--root", str(self.store / "storage"), "--runroot", str(self.run_dir / "run"),
                "--tmpdir", str(self.run_dir / "tmp"), "--events-backend", "file",
                "--storage-driver", default.driver]
        for key, value in default.driver_options.items():
            if key.startswith(f"{default.driver}.") and "imagestore" not in key:
                args += ["--storage-opt", f"{key}={value}"]
        if Path(default.graph_root).resolve() != (self.store / "storage").resolve():
            args += ["--storage-opt", f"{default.driver}.imagestore={default.graph_root}"]
        return args

    def __enter__(self) -> "Engine":
        self.store.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not self._ping():
            log = open(self.run_dir / "service.log", "ab")
            self._service = subprocess.Popen(
                ["podman", *self.podman_args(), "system", "service", f"--time={ORPHAN_TIMEOUT}",
                 f"unix://{self.socket_path}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            deadline = time.monotonic() + 20
            while not self._ping():
                if self._service.poll() is not None or time.monotonic() > deadline:
                    tail = (self.run_dir / "service.log").read_text(errors="replace").strip().splitlines()[-3:]
                    raise EngineError(f"podman service for store {self.store} did not start: {' '.join(tail)}")
                time.sleep(0.02)
        self._client = podman.PodmanClient(base_url=f"unix://{self.socket_path}")
        return self

    def __exit__(self, *exc) -> None:
        for cid in list(self._containers):
            self.remove_container(cid)
        if self._client is not None:
            self._client.close()
        if self._service is not None:
            self._service.terminate()
            try:
                self._service.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._service.kill()
                self._service.wait()

    def _ping(self) -> bool:
        if not self.socket_path.exists():
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.socket_path))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            return b" 200 " in sock.recv(64)
        except OSError:
            return False
        finally:
            sock.close()

    @property
    def client(self) -> podman.PodmanClient:
        assert self._client is not None, "Engine used outside its with-block"
        return self._client

    # -- images ------------------------------------------------------------

    def image(self, ref: str) -> ImageInfo | None:
        try:
            return ImageInfo.from_inspect(self.client.images.get(ref).attrs)
        except podman.errors.ImageNotFound:
            return None
        except podman.errors.APIError as err:
            raise EngineError(f"cannot inspect image {ref}: {err.explanation or err}") from None

    @_podman_errors
    def images(self, repository: str) -> list[ImageInfo]:
        """Images with a tag in the given repository (for listing the store)."""
        out = []
        for img in self.client.images.list():
            tags = [t for t in (img.attrs.get("RepoTags") or []) if t.rsplit(":", 1)[0] == repository]
            if tags:
                out.append(ImageInfo(id=img.id, labels=img.attrs.get("Labels") or {}, layers=[], names=tags))
        return out

    @_podman_errors
    def tag(self, image_id: str, ref: str) -> None:
        repo, tag = ref.rsplit(":", 1)
        self.client.images.get(image_id).tag(repo, tag)

    @_podman_errors
    def remove_image(self, ref: str) -> None:
        try:
            self.client.images.remove(ref, force=True)
        except podman.errors.ImageNotFound:
            pass

    @_podman_errors
    def prune(self) -> None:
        """Drop leftover containers and the layers no tagged image uses any more."""
        for ctr in self.client.containers.list(all=True):
            ctr.remove(force=True)
        self.client.images.prune()

    def empty_image(self) -> str:
        """The image with no layers at all, base of a tree that starts from nothing.

        It is built by `osbuild-oci stages build` into the ordinary storage (a build
        through the API service leaves its working container mounted).
        """
        info = self.image(EMPTY_IMAGE)
        if info is None:
            raise EngineError(f"{EMPTY_IMAGE} is missing; run `osbuild-oci stages build` first")
        return info.id

    # -- registries ------------------------------------------------------

    def _registry_call(self, path: str, params: dict, ref: str, action: str) -> list[dict]:
        creds = registry.credentials(ref)
        headers = {"X-Registry-Auth": podman.api.encode_auth_header(creds)} if creds else {}
        try:
            response = self.client.api.post(path, params=params, headers=headers)
        except podman.errors.APIError as err:
            raise RegistryError(ref, action, str(err.explanation or err)) from None
        messages = [json.loads(line) for line in response.text.splitlines() if line.strip().startswith("{")]
        if response.status_code >= 400:
            reason = messages[0].get("message", response.text) if messages else response.text
            raise RegistryError(ref, action, _last_line(reason))
        for message in messages:
            if message.get("error"):
                raise RegistryError(ref, action, _last_line(message["error"]))
        return messages

    def pull(self, ref: str, tls_verify: bool = True) -> ImageInfo:
        """Pull into this store; a reference pinned by digest is verified by podman against it."""
        self._registry_call("/images/pull", {"reference": ref, "tlsVerify": tls_verify, "policy": "always",
                                              "quiet": True}, ref, "pull")
        info = self.image(ref)
        if info is None:
            raise RegistryError(ref, "pull", "podman reported success but the image is not in the store")
        return info

    def push(self, image: str, destination: str, tls_verify: bool = True) -> None:
        """Push layer by layer; blobs the registry already has are not uploaded again."""
        self._registry_call(f"/images/{urllib.parse.quote(image, safe='')}/push",
                            {"destination": destination, "tlsVerify": tls_verify}, destination, "push")

    # -- containers ----------------------------------------------------------

    @_podman_errors
    def working_container(self, image_id: str) -> tuple[str, str]:
        """A never-started container of the image, mounted; returns (id, host path of its root)."""
        ctr = self.client.containers.create(image_id, command=["/nonexistent"], network_mode="none")
        self._containers.add(ctr.id)
        return ctr.id, self._api("POST", f"/containers/{ctr.id}/mount").strip()

    @_podman_errors
    def commit(self, container_id: str, ref: str, labels: dict[str, str]) -> str:
        """Store the container's changes as one new layer on its image, tagged ref."""
        repo, tag = ref.rsplit(":", 1)
        changes = [f"LABEL {key}={json.dumps(value)}" for key, value in labels.items()]
        image = self.client.containers.get(container_id).commit(repository=repo, tag=tag, format="oci",
                                                                 changes=changes)
        return image.id

    @_podman_errors
    def changes(self, container_id: str) -> list:
        return json.loads(self._api("GET", f"/containers/{container_id}/changes") or "[]") or []

    @_podman_errors
    def remove_container(self, container_id: str) -> None:
        try:
            self.client.containers.get(container_id).remove(force=True)
        except podman.errors.NotFound:
            pass
        self._containers.discard(container_id)

    @_podman_errors
    def run(self, spec: ContainerSpec, on_output: Callable[[int, bytes], None]) -> int:
        """Run a container to completion, feeding it stdin; return its exit status."""
        kwargs: dict = dict(
            stdin_open=True, cap_drop=["ALL"], cap_add=list(spec.capabilities), ulimits=ulimits(),
            environment=dict(spec.env),
            mounts=[{"type": "bind", "source": m.source, "target": m.target, "read_only": m.read_only}
                    for m in spec.mounts],
            network_mode=("bridge" if os.geteuid() == 0 else "host") if spec.network else "none",
        )
        ctr = self.client.containers.create(spec.image, **kwargs)
        self._containers.add(ctr.id)
        try:
            with attach(self.socket_path, ctr.id) as stream:
                ctr.start()
                stream.send(spec.stdin)
                stream.close_stdin()
                for fd, chunk in stream.frames():
                    on_output(fd, chunk)
            return int(ctr.wait())
        finally:
            self.remove_container(ctr.id)

    def _api(self, method: str, path: str) -> str:
        response = getattr(self.client.api, method.lower())(path)
        if response.status_code >= 300:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise EngineError(f"podman {method} {path}: {message}")
        return response.text


def _last_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no reason given"
