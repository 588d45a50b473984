"""The engine of one store: its podman service, started only when needed, and what the orchestrator asks of it.

podman-py does the talking (engine/api.py); what it lacks (attaching stdin)
comes from `attach`.  The operations live by job in images.py, containers.py
and mounted.py; this module starts and stops them.  The engine knows podman,
not the domain: references, credentials and labels come from its callers.

The service starts only when a container must run or the store must change:
a fully cached build only reads, and reads go through the podman CLI on the
same storage (0.1 s a call, against 0.3 s to import podman-py and start a
service), all of a plan's images in one call.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..errors import EngineError
from .api import podman
from .containers import ContainersMixin
from .images import Entry, ImagesMixin
from .model import ImageInfo
from .mounted import MountedMixin
from .service import Service


class Engine(ImagesMixin, ContainersMixin, MountedMixin):
    """The operations the orchestrator needs of one store's podman service."""

    def __init__(self, store: Path):
        self.service = Service(store)
        self.store = self.service.store
        self._client: podman.PodmanClient | None = None
        self._containers: set[str] = set()
        # What pulls and tags added to the store, so a refused plan can take it back.
        self.journal: list[Entry] = []
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

    def service_died(self) -> EngineError:
        return EngineError(f"the podman service of store {self.store} stopped while working; "
                           f"its log: {self.service.log}")
