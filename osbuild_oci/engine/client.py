"""The API calls the orchestrator makes to a store's podman service: images, containers, registries.

podman-py does the talking; what it lacks (attaching stdin) comes from
`attach`.  Every podman-py failure becomes an EngineError that names the
operation, never a traceback.

The service starts only when a container must run or the store must change:
a fully cached build only reads, and reads go through the podman CLI on the
same storage (0.1 s a call, against 0.3 s to import podman-py and start a
service), all of a plan's images in one call.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Callable

from ..registry import references as registry
from ..tools import sbom
from ..errors import EngineError, RegistryError
from ..stages.image import empty_ref
from .attach import attach
from .host import stage_network, ulimits
from ..lazy import lazy_import
from .localstorage import podman_cli
from .model import ContainerSpec, ImageInfo
from .service import Service

podman = lazy_import("podman")
requests = lazy_import("requests")
_NOT_KNOWN = re.compile(r"inspecting object: (.*): image not known$", re.MULTILINE)


def _podman_errors(method: Callable) -> Callable:
    """Turn podman-py's exceptions into an EngineError that names the operation, not a traceback."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (podman.errors.APIError, requests.exceptions.ConnectionError) as err:
            if not self.service.alive():
                raise self.service_died() from None
            if isinstance(err, requests.exceptions.ConnectionError):
                raise EngineError(f"lost the podman service of this store ({self.socket_path}): {err}") from None
            subject = str(args[0])[:200] if args else ""
            raise EngineError(f"podman refused to {method.__name__.replace('_', ' ')} {subject}: "
                              f"{err.explanation or err}") from None
    return wrapper


class Engine:
    """The operations the orchestrator needs of one store's podman service."""

    def __init__(self, store: Path):
        self.service = Service(store)
        self.store = self.service.store
        self._client: podman.PodmanClient | None = None
        self._containers: set[str] = set()
        # What pulls and tags added to the store, so a refused plan can take it back.
        self.journal: list[tuple[str, str, str | None]] = []
        # Images read through the CLI before the service started (None: not in the store).
        self._known: dict[str, ImageInfo | None] = {}
        self._leftovers: subprocess.Popen | None = None
        # Working containers whose layer is committed: removed while a long container runs (`run`).
        self._discarded: list[str] = []
        self._remover: tuple[subprocess.Popen, list[str]] | None = None

    @property
    def socket_path(self) -> Path:
        return self.service.socket_path

    def podman_args(self) -> list[str]:
        return self.service.podman_args()

    def podman_env(self) -> dict[str, str]:
        """The environment a podman command on this store runs with (Service.environment)."""
        return self.service.environment()

    def scratch(self) -> Path:
        """A directory for the command's own short-lived files: removed when the command ends, or, if it is
        killed, when the next command on the store ends."""
        return self.service.scratch_dir()

    def __enter__(self) -> "Engine":
        """Stop a service a killed command left; look for its containers while the command plans."""
        self.service.name_store()
        self.service.stop_orphan()
        self._leftovers = subprocess.Popen(["podman", *self.podman_args(), "ps", "--all", "--quiet"],
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.remove_discarded()
            if self._client is None and self._leftovers_found():
                self._start(leftovers=True)
            for cid in list(self._containers):
                self.remove_container(cid)
            if self._client is not None:
                self._client.close()
        finally:
            self.service.stop()

    def _leftovers_found(self) -> bool:
        """Whether a killed command left containers in the store (asked once, by the probe started on entry)."""
        if self._leftovers is None:
            return False
        out, _ = self._leftovers.communicate()
        found = self._leftovers.returncode != 0 or bool(out.strip())
        self._leftovers = None
        return found

    def _start(self, leftovers: bool) -> None:
        """Start the store's service; then remove what a killed command left, before anything else runs."""
        self.service.start()
        self._client = podman.PodmanClient(base_url=f"unix://{self.socket_path}")
        if leftovers:
            left = self.remove_all_containers()
            if left:
                print(f"note: removed {left} container(s) an interrupted osbuild-oci left in {self.store}",
                      file=sys.stderr)

    @property
    def client(self) -> podman.PodmanClient:
        if self._client is None:
            self._start(self._leftovers_found())
        assert self._client is not None
        return self._client

    # -- images ------------------------------------------------------------

    def service_died(self) -> EngineError:
        return EngineError(f"the podman service of store {self.store} stopped while working; "
                           f"its log: {self.service.log}")

    def image(self, ref: str) -> ImageInfo | None:
        if self._client is None:
            if ref not in self._known:
                self.prefetch([ref])
            return self._known.get(ref)
        try:
            return ImageInfo.from_inspect(self.client.images.get(ref).attrs)
        except podman.errors.ImageNotFound:
            return None
        except (podman.errors.APIError, requests.exceptions.ConnectionError) as err:
            if not self.service.alive():
                raise self.service_died() from None
            raise EngineError(f"cannot inspect image {ref}: {getattr(err, 'explanation', None) or err}") from None

    def prefetch(self, refs: list[str]) -> None:
        """Read these images in one CLI call, for `image` to answer from until the service starts.

        podman answers the images it found in order and names each one it did not;
        when the two do not add up, nothing is kept and each is asked again alone.
        """
        refs = [ref for ref in dict.fromkeys(refs) if ref not in self._known]
        if self._client is not None or not refs:
            return
        proc = podman_cli(*self.podman_args(), "image", "inspect", *refs, check=False)
        missing = set(_NOT_KNOWN.findall(proc.stderr))
        found = json.loads(proc.stdout or "[]") if proc.stdout.strip() else []
        present = [ref for ref in refs if ref not in missing]
        if len(present) != len(found) or (proc.returncode != 0 and not missing):
            if len(refs) == 1:
                raise EngineError(f"podman could not inspect image {refs[0]}: {proc.stderr.strip()[-300:]}")
            for ref in refs:
                self.prefetch([ref])
            return
        self._known.update({ref: None for ref in missing})
        self._known.update({ref: ImageInfo.from_inspect(attrs) for ref, attrs in zip(present, found)})

    @_podman_errors
    def images(self, repository: str) -> list[ImageInfo]:
        """Images with a tag in the given repository (for listing the store); `created` in Unix seconds."""
        out = []
        for img in self.client.images.list():
            tags = [t for t in (img.attrs.get("RepoTags") or []) if t.rsplit(":", 1)[0] == repository]
            if tags:
                out.append(ImageInfo(id=img.id, labels=img.attrs.get("Labels") or {}, layers=[], names=tags,
                                     created=str(img.attrs.get("Created") or "")))
        return out

    @_podman_errors
    def tag(self, image_id: str, ref: str) -> None:
        before = self.image(ref)
        repo, tag = ref.rsplit(":", 1)
        self.client.images.get(image_id).tag(repo, tag)
        self.journal.append(("name", ref, before.id if before else None))

    def undo(self, mark: int) -> None:
        """Take back the pulls and names recorded since mark, newest first."""
        while len(self.journal) > mark:
            kind, what, previous = self.journal.pop()
            if kind == "image" or previous is None:
                self.remove_image(what)
            else:
                repo, tag = what.rsplit(":", 1)
                self.client.images.get(previous).tag(repo, tag)

    @_podman_errors
    def remove_image(self, ref: str) -> None:
        try:
            self.client.images.remove(ref, force=True)
        except podman.errors.ImageNotFound:
            pass

    @_podman_errors
    def remove_all_containers(self) -> int:
        """Remove every container of the store: under the store's lock, they are what killed builds left.

        Running ones first: a killed build's stage container goes on writing into its working tree, and
        deleting that tree underneath it fails ("directory not empty")."""
        leftovers = sorted(self.client.containers.list(all=True), key=lambda ctr: ctr.attrs.get("State") != "running")
        for ctr in leftovers:
            ctr.remove(force=True)
        return len(leftovers)

    @_podman_errors
    def prune(self) -> None:
        """Drop leftover containers and the layers no tagged image uses any more."""
        self.remove_all_containers()
        self.client.images.prune()

    def empty_image(self, arch: str) -> str:
        """The image with no layers at all, base of a tree of arch that starts from nothing.

        It is built by `osbuild-oci stages build` into the ordinary storage (a build
        through the API service leaves its working container mounted).
        """
        info = self.image(empty_ref(arch))
        if info is None:
            raise EngineError(f"{empty_ref(arch)} is missing; run `osbuild-oci stages build` first")
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
        before = self.image(ref)
        self._registry_call("/images/pull", {"reference": ref, "tlsVerify": tls_verify, "policy": "always",
                                              "quiet": True}, ref, "pull")
        info = self.image(ref)
        if info is None:
            raise RegistryError(ref, "pull", "podman reported success but the image is not in the store")
        if before is None or before.id != info.id:
            self.journal.append(("image", info.id, None))
            if before is not None and "@" not in ref:
                self.journal.append(("name", ref, before.id))
        return info

    def push(self, image: str, destination: str, tls_verify: bool = True) -> None:
        """Push layer by layer; blobs the registry already has are not uploaded again."""
        self._registry_call(f"/images/{urllib.parse.quote(image, safe='')}/push",
                            {"destination": destination, "tlsVerify": tls_verify}, destination, "push")

    # -- containers ----------------------------------------------------------

    @_podman_errors
    def mount_working_container(self, image_id: str) -> tuple[str, str]:
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

    def sync(self, source: str, destination: str) -> None:
        """Make the mounted tree at destination equal the one at source, touching only what differs.

        rsync compares contents (--checksum), not size and mtime: the source epoch clamps every
        changed file's mtime to one value, so a file rewritten with as many bytes would look
        unchanged.  Overlay copies up (and the next commit stores) only changed files, plus
        whiteouts for removed ones.
        """
        self._on_mounted_tree(["rsync", "-aHAX", "--checksum", "--numeric-ids", "--delete", "--modify-window=-1",
                               f"{source}/", f"{destination}/"], f"copy tree {source} into {destination}")

    def clamp(self, tree: str, epoch: int, since: float) -> None:
        """Set the times of every file changed since `since` (its ctime, which no program can set back)
        and newer than epoch to epoch, as SOURCE_DATE_EPOCH asks.

        Files of older layers keep their times (they were clamped when their stage ran, or
        belong to a base image), so overlay copies up nothing the stage did not change.
        """
        self._on_mounted_tree(["find", tree, "-xdev", "-newerct", f"@{since:.3f}", "-newermt", f"@{epoch}",
                               "-exec", "touch", "--no-dereference", f"--date=@{epoch}", "{}", "+"],
                              f"clamp the times of tree {tree}")

    def sbom(self, tree: str, tree_id: str, epoch: int) -> str:
        """The SPDX document of a mounted tree: read here as root, rootless where the mount is visible
        (`python -m osbuild_oci.tools.sbom` in podman's user namespace)."""
        if os.geteuid() == 0:
            return sbom.dumps(sbom.of_tree(tree, tree_id, epoch))
        return self._on_mounted_tree([sys.executable, "-m", "osbuild_oci.tools.sbom", tree, tree_id, str(epoch)],
                                     f"read the packages of tree {tree_id}")

    def _on_mounted_tree(self, cmd: list[str], action: str) -> str:
        """Run a host tool on a mounted tree and return its output.  Rootless, the mounts exist only in
        podman's user namespace, so the tool runs there (as that namespace's root, which may change any file)."""
        if shutil.which(cmd[0]) is None:
            raise EngineError(f"{cmd[0]} is not installed; run scripts/setup-host (or apt-get install {cmd[0]})")
        proc = subprocess.run([*self.in_userns(), *cmd], capture_output=True, text=True)
        if proc.returncode != 0:
            detail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
            raise EngineError(f"{os.path.basename(cmd[0])} could not {action}: {detail[0]}")
        return proc.stdout

    def in_userns(self) -> list[str]:
        """What runs a host command where the store's files are its own: rootless, podman's user namespace."""
        return [] if os.geteuid() == 0 else ["podman", *self.podman_args(), "unshare"]

    def disk_use(self) -> int:
        """Bytes the store's directory takes on disk; every layer is stored once, however many images share it."""
        proc = subprocess.run([*self.in_userns(), "du", "-sxB1", str(self.store)], capture_output=True, text=True)
        if proc.returncode != 0 and not proc.stdout:
            raise EngineError(f"du could not measure {self.store}: {proc.stderr.strip()}")
        return int(proc.stdout.split()[0])

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
    def discard_container(self, container_id: str) -> None:
        """Unmount a working container now and remove it later: removing it right after a big commit
        takes seconds (its fsync waits for the commit's files to reach ext4's journal) and holds the
        store's layer lock meanwhile, so it waits for a container that runs long
        without needing that lock (`run(..., remove_discarded=True)`), or for the end of the command."""
        self._api("POST", f"/containers/{container_id}/unmount")
        self._discarded.append(container_id)

    def remove_discarded(self) -> None:
        """Finish removing the discarded working containers: wait for the background removal, then
        remove whatever it left, so the store holds (and measures) no working container."""
        if self._remover is not None:
            proc, ids = self._remover
            self._remover = None
            if proc.wait() == 0:
                self._containers.difference_update(ids)
            else:
                self._discarded += ids
        ids, self._discarded = self._discarded, []
        for cid in ids:
            self.remove_container(cid)

    @_podman_errors
    def run(self, spec: ContainerSpec, on_output: Callable[[int, bytes], None],
            remove_discarded: bool = False) -> int:
        """Run a container to completion, feeding it stdin; return its exit status.  remove_discarded:
        remove the discarded working containers while it runs (the assembler: long, and it takes no lock)."""
        kwargs: dict = dict(
            stdin_open=True, cap_drop=["ALL"], cap_add=list(spec.capabilities), ulimits=ulimits(),
            environment=dict(spec.env),
            mounts=[{"type": "bind", "source": m.source, "target": m.target, "read_only": m.read_only}
                    for m in spec.mounts],
            network_mode=stage_network() if spec.network else "none",
        )
        ctr = self.client.containers.create(spec.image, **kwargs)
        self._containers.add(ctr.id)
        try:
            with attach(self.socket_path, ctr.id) as stream:
                ctr.start()
                if remove_discarded and self._discarded:
                    ids, self._discarded = self._discarded, []
                    self._remover = (subprocess.Popen(["podman", *self.podman_args(), "rm", "--force", *ids],
                                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), ids)
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
        # libpod sends no charset, and requests would then guess Latin-1 for a UTF-8 path.
        return response.content.decode("utf-8", errors="surrogateescape")


def _last_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no reason given"
