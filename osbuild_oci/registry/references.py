"""Registry references and credentials, and whether a registry holds an image.

Credentials come only from the usual containers auth files, never from the
command line.  They are looked up here, exactly as containers-auth.json(5)
orders them, and sent with each API request: the store's podman service,
started with the user's environment, finds the default files itself, but not
the one REGISTRY_AUTH_FILE names (measured), so one lookup here serves all.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import BuildError, RegistryError, UserError


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
    """Where podman, skopeo and buildah keep credentials, in the order containers-auth.json(5) reads them.

    An explicit REGISTRY_AUTH_FILE comes first; then the primary file, which is
    $XDG_RUNTIME_DIR/containers/auth.json or, without a runtime directory,
    /run/containers/UID/auth.json (where `podman login` writes as root); then
    $XDG_CONFIG_HOME/containers/auth.json, ~/.docker/config.json and ~/.dockercfg.
    """
    paths = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        paths.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    paths.append(Path(runtime) / "containers" / "auth.json" if runtime else
                 Path(f"/run/containers/{os.getuid()}/auth.json"))
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    paths += [Path(config) / "containers" / "auth.json", Path.home() / ".docker" / "config.json",
              Path.home() / ".dockercfg"]
    return paths


def _scopes(ref: str) -> list[str]:
    """The keys an auth file may hold for a reference, most specific first: repo, namespaces, registry."""
    parts = repository(ref).split("/")
    return ["/".join(parts[:n]) for n in range(len(parts), 0, -1)]


def _from_helper(helper: str, registry: str) -> dict[str, str] | None:
    """Ask a docker-credential-HELPER program, as podman does for credHelpers and credsStore."""
    try:
        proc = subprocess.run([f"docker-credential-{helper}", "get"], input=registry, capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UserError(f"credential helper docker-credential-{helper} for {registry} failed: {err}") from None
    if proc.returncode != 0:
        return None
    try:
        reply = json.loads(proc.stdout)
        return {"username": reply["Username"], "password": reply["Secret"]}
    except (ValueError, KeyError, TypeError):
        raise UserError(f"credential helper docker-credential-{helper} gave no credentials for {registry}") from None


def _from_file(doc: dict, legacy: bool, ref: str, registry: str) -> dict[str, str] | None:
    helpers = doc.get("credHelpers") or {}
    if registry in helpers:
        return _from_helper(helpers[registry], registry)
    auths = doc if legacy else (doc.get("auths") or {})
    plain = {key.removeprefix("https://").removeprefix("http://").rstrip("/"): value
             for key, value in auths.items() if isinstance(value, dict)}
    for scope in _scopes(ref):
        encoded = plain.get(scope, {}).get("auth")
        if encoded:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
            return {"username": user, "password": password}
    if doc.get("credsStore"):
        return _from_helper(doc["credsStore"], registry)
    return None


def credentials(ref: str) -> dict[str, str] | None:
    """{"username", "password"} for the reference's registry, from the first auth file that has it."""
    registry = host(ref)
    if registry is None:
        return None
    for path in auth_files():
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict):
            found = _from_file(doc, path.name == ".dockercfg", ref, registry)
            if found:
                return found
    return None


def skopeo(command: str, *args: str, side: str = "", tls_verify: bool, action: str, ref: str) -> bytes:
    """skopeo COMMAND for the registry of ref (side "", "src-" or "dest-"), with the credentials osbuild-oci
    found; its stdout.

    They go in a private auth file, so skopeo reads exactly what every other pull
    and push uses (containers-auth.json(5) order, helpers) and no path it cannot
    open (rootless without a session, /run/containers/UID is root's).
    """
    if shutil.which("skopeo") is None:
        raise BuildError("skopeo is not installed; run scripts/setup-host (or apt-get install skopeo)")
    creds, server = credentials(ref), host(ref)
    auths = {server: {"auth": base64.b64encode(f"{creds['username']}:{creds['password']}".encode()).decode()}} \
        if creds and server else {}
    with tempfile.TemporaryDirectory(prefix="osbuild-oci-auth-") as tmp:
        authfile = Path(tmp) / "auth.json"
        authfile.write_text(json.dumps({"auths": auths}))
        proc = subprocess.run(["skopeo", command, f"--{side}tls-verify={str(tls_verify).lower()}",
                               f"--{side}authfile={authfile}", *args], capture_output=True)
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        reason = (lines or [f"exit status {proc.returncode}"])[-1]
        reason = reason.split('msg="', 1)[-1].rstrip('"').replace('\\"', '"')
        # skopeo blames "parsing image name" for any failure to open the image; the rest says what failed.
        if reason.startswith("Error parsing image name") and '": ' in reason:
            reason = reason.split('": ', 1)[1]
        raise RegistryError(ref, action, reason)
    return proc.stdout


def has_image(ref: str, tls_verify: bool) -> bool:
    """Whether the registry holds ref, asked without pulling it.

    A registry that cannot answer is a RegistryError; one that answers it has no such image is False.
    """
    try:
        skopeo("inspect", "--raw", "--no-tags", f"docker://{ref}", tls_verify=tls_verify, action="look up", ref=ref)
    except RegistryError as err:
        if err.missing:
            return False
        raise
    return True
