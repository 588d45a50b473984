"""Registry references and credentials.

Credentials come only from the usual containers auth files, never from the
command line: the podman API service does not read them itself, so they are
looked up here and sent with each request.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path


def host(ref: str) -> str | None:
    """The registry part of a reference, or None for a short or local name."""
    first = ref.split("/", 1)[0]
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def repository(ref: str) -> str:
    """The reference without its tag or digest."""
    name = ref.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def is_remote(ref: str) -> bool:
    return host(ref) not in (None, "localhost")


def auth_files() -> list[Path]:
    """Where podman, skopeo and buildah keep credentials, in the order they read them."""
    paths = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        paths.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/containers/{os.getuid()}"
    paths.append(Path(runtime) / "containers" / "auth.json")
    if os.environ.get("XDG_RUNTIME_DIR") and os.getuid() == 0:
        paths.append(Path("/run/containers/0/auth.json"))
    paths.append(Path.home() / ".config" / "containers" / "auth.json")
    paths.append(Path.home() / ".docker" / "config.json")
    return paths


def credentials(ref: str) -> dict[str, str] | None:
    """{"username", "password"} for the reference's registry, from the first auth file that has it."""
    registry = host(ref)
    if registry is None:
        return None
    repo = repository(ref)
    for path in auth_files():
        try:
            auths = json.loads(path.read_text()).get("auths", {})
        except (OSError, ValueError):
            continue
        # The most specific key wins: registry/namespace/repo before registry.
        for key in sorted(auths, key=len, reverse=True):
            plain = key.removeprefix("https://").removeprefix("http://").rstrip("/")
            if repo == plain or repo.startswith(plain + "/"):
                encoded = auths[key].get("auth")
                if encoded:
                    user, _, password = base64.b64decode(encoded).decode().partition(":")
                    return {"username": user, "password": password}
    return None
