"""A tree's SPDX document in a registry: an OCI artifact beside the tree image, found by the tree's digest.

skopeo 1.9 and registry 2.8 have no referrers API, so the artifact is tagged as
cosign tags its attachments: `REPO:sha256-<hex of the tree's manifest digest>.sbom`.
Its manifest also names the tree as `subject`, so a registry with the referrers
API lists it there too.  skopeo does the transfer, with the credentials
osbuild-oci found (registry.skopeo).  With a signing key the artifact is signed
like an image (its own `.sig` attachment); with trust keys, both the tree and
its SBOM must be signed by one of them before the document is read.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from . import references as registry
from ..errors import RegistryError
from ..oci import SPDX as MEDIA_TYPE

if TYPE_CHECKING:
    from .signing import SigningKey

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
# Far above the document of any Debian tree (the flagship's is under 2 MB): a larger artifact is not fetched.
MAX_DOCUMENT = 64 << 20


def sbom_ref(ref: str, tls_verify: bool) -> tuple[str, dict]:
    """Where the SBOM of the image at ref is (its cosign-style tag), and the image's manifest descriptor."""
    manifest = registry.skopeo("inspect", "--raw", f"docker://{ref}", tls_verify=tls_verify, action="inspect",
                               ref=ref)
    digest = hashlib.sha256(manifest).hexdigest()
    try:
        doc = json.loads(manifest)
    except ValueError:
        doc = None
    media_type = doc.get("mediaType", MANIFEST) if isinstance(doc, dict) else None
    if not isinstance(media_type, str):
        raise RegistryError(ref, "inspect", "its manifest is not a JSON object with a media type")
    return (f"{registry.repository(ref)}:sha256-{digest}.sbom",
            {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(manifest)})


def push_sbom(document: str, ref: str, tls_verify: bool, sign_key: SigningKey | None = None) -> str:
    """Push document as the SBOM of the image already pushed to ref, signed with sign_key if given;
    returns the artifact's reference."""
    target, subject = sbom_ref(ref, tls_verify)
    with tempfile.TemporaryDirectory(prefix="osbuild-oci-sbom-") as tmp:
        layout = Path(tmp)
        (layout / "blobs" / "sha256").mkdir(parents=True)

        def blob(data: bytes, media_type: str) -> dict:
            digest = hashlib.sha256(data).hexdigest()
            (layout / "blobs" / "sha256" / digest).write_bytes(data)
            return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

        layer = {**blob(document.encode(), MEDIA_TYPE),
                 "annotations": {"org.opencontainers.image.title": "sbom.spdx.json"}}
        manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "artifactType": MEDIA_TYPE,
                    "config": blob(b"{}", EMPTY_CONFIG), "layers": [layer], "subject": subject}
        entry = blob(json.dumps(manifest).encode(), MANIFEST)
        index = {"schemaVersion": 2, "manifests": [entry]}
        (layout / "index.json").write_text(json.dumps(index))
        (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        registry.skopeo("copy", "--quiet", "--preserve-digests", f"oci:{layout}", f"docker://{target}",
                        side="dest-", tls_verify=tls_verify, action="push", ref=target)
    if sign_key is not None:
        from . import signing  # cryptography: only for a command that signs
        signing.sign_digest(target, entry["digest"], sign_key, tls_verify)
    return target


def pull_sbom(ref: str, tls_verify: bool, trust: tuple = ()) -> str:
    """The SBOM pushed for the image at ref; with trust keys, only if one of them signed both the image
    and the SBOM (else errors.Untrusted)."""
    if trust:
        from . import signing  # cryptography: only for a command that checks signatures
        ref = signing.trusted(ref, trust, tls_verify)
    target, _ = sbom_ref(ref, tls_verify)
    if trust:
        target = signing.trusted(target, trust, tls_verify)
    raw = registry.skopeo("inspect", "--raw", f"docker://{target}", tls_verify=tls_verify, action="pull",
                          ref=target)
    try:
        manifest = json.loads(raw)
        layers = [layer for layer in manifest["layers"] if layer.get("mediaType") == MEDIA_TYPE]
        if not layers:
            raise ValueError(f"it holds no {MEDIA_TYPE} layer")
        digest, size = layers[0]["digest"], layers[0]["size"]
        if not isinstance(size, int) or not 0 <= size <= MAX_DOCUMENT or not isinstance(digest, str) \
                or not digest.startswith("sha256:"):
            raise ValueError(f"its document's size {str(size)[:20]} or digest {str(digest)[:80]} is not acceptable")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise RegistryError(target, "pull", f"the artifact is no SBOM attachment: {err}") from None
    pinned = f"{registry.repository(target)}@sha256:{hashlib.sha256(raw).hexdigest()}"
    with tempfile.TemporaryDirectory(prefix="osbuild-oci-sbom-") as tmp:
        registry.skopeo("copy", "--quiet", "--preserve-digests", f"docker://{pinned}", f"oci:{tmp}",
                        side="src-", tls_verify=tls_verify, action="pull", ref=target)
        try:
            data = (Path(tmp) / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()
        except OSError:
            raise RegistryError(target, "pull", f"its document {digest[:80]} did not arrive") from None
    if hashlib.sha256(data).hexdigest() != digest.split(":", 1)[1]:
        raise RegistryError(target, "pull", "its document does not match its digest")
    return data.decode("utf-8", errors="replace")
