"""Containers of a store: working containers that hold a tree while it is written, and the stage and assembler
containers that run, fed their stdin, until they exit."""

from __future__ import annotations

import json
import subprocess
from typing import Callable

from ..errors import EngineError
from . import doctor
from .api import call, podman, podman_errors
from .attach import attach
from .host import Network, guard_network, isolated_network, ulimits
from .model import ContainerSpec


class ContainersMixin:
    """The container operations of Engine (engine/client.py)."""

    @podman_errors
    def mount_working_container(self, image_id: str) -> tuple[str, str]:
        """A never-started container of the image, mounted; returns (id, host path of its root)."""
        ctr = self.client.containers.create(image_id, command=["/nonexistent"], network_mode="none")
        self._containers.add(ctr.id)
        return ctr.id, call(self.client, "POST", f"/containers/{ctr.id}/mount").strip()

    @podman_errors
    def commit(self, container_id: str, ref: str, labels: dict[str, str]) -> str:
        """Store the container's changes as one new layer on its image, tagged ref."""
        repo, tag = ref.rsplit(":", 1)
        changes = [f"LABEL {key}={json.dumps(value)}" for key, value in labels.items()]
        image = self.client.containers.get(container_id).commit(repository=repo, tag=tag, format="oci",
                                                                 changes=changes)
        return image.id

    @podman_errors
    def changes(self, container_id: str) -> list:
        return json.loads(call(self.client, "GET", f"/containers/{container_id}/changes") or "[]") or []

    @podman_errors
    def remove_container(self, container_id: str) -> None:
        try:
            self.client.containers.get(container_id).remove(force=True)
        except podman.errors.NotFound:
            pass
        self._containers.discard(container_id)

    @podman_errors
    def remove_all_containers(self) -> int:
        """Remove every container of the store: under the store's lock, they are what killed builds left.

        Running ones first: a killed build's stage container goes on writing into its working tree, and
        deleting that tree underneath it fails ("directory not empty")."""
        leftovers = sorted(self.client.containers.list(all=True), key=lambda ctr: ctr.attrs.get("State") != "running")
        for ctr in leftovers:
            ctr.remove(force=True)
        return len(leftovers)

    @podman_errors
    def discard_container(self, container_id: str) -> None:
        """Unmount a working container now and remove it later: removing it right after a big commit
        takes seconds (its fsync waits for the commit's files to reach ext4's journal) and holds the
        store's layer lock meanwhile, so it waits for a container that runs long
        without needing that lock (`run(..., remove_discarded=True)`), or for the end of the command."""
        call(self.client, "POST", f"/containers/{container_id}/unmount")
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

    @podman_errors
    def run(self, spec: ContainerSpec, on_output: Callable[[int, bytes], None],
            remove_discarded: bool = False) -> int:
        """Run a container to completion, feeding it stdin; return its exit status.  remove_discarded:
        remove the discarded working containers while it runs (the assembler: long, and it takes no lock)."""
        kwargs: dict = dict(
            stdin_open=True, cap_drop=["ALL"], cap_add=list(spec.capabilities), ulimits=ulimits(),
            environment=dict(spec.env),
            mounts=[{"type": "bind", "source": m.source, "target": m.target, "read_only": m.read_only}
                    for m in spec.mounts],
            network_mode=isolated_network() if spec.network == Network.ISOLATED else spec.network,
        )
        ctr = self.client.containers.create(spec.image, **kwargs)
        self._containers.add(ctr.id)
        try:
            if spec.network == Network.ISOLATED:
                ctr.init()
                ctr.reload()
                guard_network(ctr.attrs["NetworkSettings"]["SandboxKey"], self.in_userns())
            try:
                stream = attach(self.socket_path, ctr.id)
            except EngineError as err:
                # The runtime's own words (mount proc: operation not permitted) are far from their cause in a
                # container that lacks a privilege: the doctor names the privilege (docs/ci.md).
                raise EngineError(f"{err}{doctor.cause()}") from None
            with stream:
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
