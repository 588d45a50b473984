"""Images of a store: reading them (the CLI before the service runs, the API after), naming, removing, moving
them to and from registries, and the journal that takes a refused plan's pulls and names back."""

from __future__ import annotations

import base64
import enum
import json
import re
import subprocess
import tempfile
from pathlib import Path
from dataclasses import dataclass

from ..errors import EngineError, RegistryError
from .api import last_line, podman, podman_errors, requests
from .localstorage import podman_cli
from .model import ImageInfo

_NOT_KNOWN = re.compile(r"inspecting object: (.*): image not known$", re.MULTILINE)


class Added(enum.StrEnum):
    """What a journal entry records: an image pulled into the store, or a name given to an image."""

    IMAGE = "image"
    NAME = "name"


@dataclass(frozen=True)
class Entry:
    kind: Added
    what: str  # the image id, or the name
    previous: str | None = None  # for a name: the image it named before, if any


class ImagesMixin:
    """The image operations of Engine (engine/client.py)."""

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

    def forget(self, ref: str) -> None:
        """Drop what prefetch read of ref: the stage storage, outside this store, has just changed it."""
        self._known.pop(ref, None)

    def prefetch(self, refs: list[str]) -> None:
        """Read these images in one CLI call, for `image` to answer from until the service starts.

        podman answers the images it found in order and names each one it did not;
        when the two do not add up, nothing is kept and each is asked again alone.
        """
        refs = [ref for ref in dict.fromkeys(refs) if ref not in self._known]
        if self._client is not None or not refs:
            return
        proc = podman_cli(*self.podman_args(), "image", "inspect", "--", *refs, check=False)
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

    @podman_errors
    def images(self, repository: str) -> list[ImageInfo]:
        """Images with a tag in the given repository (for listing the store); `created` in Unix seconds."""
        out = []
        for img in self.client.images.list():
            tags = [t for t in (img.attrs.get("RepoTags") or []) if t.rsplit(":", 1)[0] == repository]
            if tags:
                out.append(ImageInfo(id=img.id, labels=img.attrs.get("Labels") or {}, layers=[], names=tags,
                                     created=str(img.attrs.get("Created") or "")))
        return out

    @podman_errors
    def tag(self, image_id: str, ref: str) -> None:
        before = self.image(ref)
        repo, tag = ref.rsplit(":", 1)
        self.client.images.get(image_id).tag(repo, tag)
        self.journal.append(Entry(Added.NAME, ref, before.id if before else None))

    def undo(self, mark: int) -> None:
        """Take back the pulls and names recorded since mark, newest first."""
        while len(self.journal) > mark:
            entry = self.journal.pop()
            if entry.kind == Added.IMAGE or entry.previous is None:
                self.remove_image(entry.what)
            else:
                repo, tag = entry.what.rsplit(":", 1)
                self.client.images.get(entry.previous).tag(repo, tag)

    @podman_errors
    def remove_image(self, ref: str) -> None:
        try:
            self.client.images.remove(ref, force=True)
        except podman.errors.ImageNotFound:
            pass

    @podman_errors
    def prune(self) -> None:
        """Drop leftover containers and the layers no tagged image uses any more."""
        self.remove_all_containers()
        self.client.images.prune()

    def _registry_call(self, path: str, params: dict, ref: str, action: str, auth: dict | None) -> list[dict]:
        headers = {"X-Registry-Auth": podman.api.encode_auth_header(auth)} if auth else {}
        try:
            response = self.client.api.post(path, params=params, headers=headers)
        except podman.errors.APIError as err:
            raise RegistryError(ref, action, str(err.explanation or err)) from None
        messages = [json.loads(line) for line in response.text.splitlines() if line.strip().startswith("{")]
        if response.status_code >= 400:
            reason = messages[0].get("message", response.text) if messages else response.text
            raise RegistryError(ref, action, last_line(reason))
        for message in messages:
            if message.get("error"):
                raise RegistryError(ref, action, last_line(message["error"]))
        return messages

    def pull(self, ref: str, tls_verify: bool, auth: dict | None) -> ImageInfo:
        """Pull into this store with these credentials; a reference pinned by digest is verified by podman."""
        before = self.image(ref)
        self._registry_call("/images/pull", {"reference": ref, "tlsVerify": tls_verify, "policy": "always",
                                              "quiet": True}, ref, "pull", auth)
        info = self.image(ref)
        if info is None:
            raise RegistryError(ref, "pull", "podman reported success but the image is not in the store")
        if before is None or before.id != info.id:
            self.journal.append(Entry(Added.IMAGE, info.id))
            if before is not None and "@" not in ref:
                self.journal.append(Entry(Added.NAME, ref, before.id))
        return info

    def push(self, image: str, destination: str, tls_verify: bool, auth: dict | None) -> str:
        """Push layer by layer (blobs the registry has are not uploaded again); the manifest digest pushed.

        Through the podman CLI on this store: podman 4.3's API reports no digest, and the digest that was
        pushed, not what the tag serves when read back, is what gets signed.
        """
        with tempfile.TemporaryDirectory(prefix="push-", dir=self.scratch()) as tmp:
            authfile, digestfile = Path(tmp) / "auth.json", Path(tmp) / "digest"
            server = destination.split("/", 1)[0]
            secret = base64.b64encode(f"{auth['username']}:{auth['password']}".encode()).decode() if auth else None
            authfile.write_text(json.dumps({"auths": {server: {"auth": secret}} if secret else {}}))
            proc = subprocess.run(["podman", *self.podman_args(), "push", "--quiet",
                                   f"--tls-verify={str(tls_verify).lower()}", "--authfile", str(authfile),
                                   "--digestfile", str(digestfile), image, f"docker://{destination}"],
                                  capture_output=True, text=True, env=self.podman_env())
            if proc.returncode != 0:
                raise RegistryError(destination, "push", last_line(proc.stderr).split("Error: ", 1)[-1])
            return digestfile.read_text().strip()
