"""A tree's SPDX document in a registry: an OCI artifact beside the tree image, found by the tree's digest.

skopeo 1.9 and registry 2.8 have no referrers API, so the artifact is tagged as
cosign tags its attachments: `REPO:sha256-<hex of the tree's manifest digest>.sbom`.
Its manifest also names the tree as `subject`, so a registry with the referrers
API lists it there too.  skopeo does the transfer, with the credentials
osbuild-oci found (registry.skopeo).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from . import references as registry
from ..errors import RegistryError
from ..oci import SPDX as MEDIA_TYPE

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


def _repository(ref: str) -> str:
    """REGISTRY/NS/REPO of a reference, without its tag or digest."""
    name = ref.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]


def sbom_ref(ref: str, tls_verify: bool) -> tuple[str, dict]:
    """Where the SBOM of the image at ref is (its cosign-style tag), and the image's manifest descriptor."""
    manifest = registry.skopeo("inspect", "--raw", f"docker://{ref}", tls_verify=tls_verify, action="inspect",
                               ref=ref)
    digest = hashlib.sha256(manifest).hexdigest()
    media_type = json.loads(manifest).get("mediaType", MANIFEST)
    return (f"{_repository(ref)}:sha256-{digest}.sbom",
            {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(manifest)})


def push_sbom(document: str, ref: str, tls_verify: bool) -> str:
    """Push document as the SBOM of the image already pushed to ref; returns the artifact's reference."""
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
        index = {"schemaVersion": 2, "manifests": [blob(json.dumps(manifest).encode(), MANIFEST)]}
        (layout / "index.json").write_text(json.dumps(index))
        (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        registry.skopeo("copy", "--quiet", "--preserve-digests", f"oci:{layout}", f"docker://{target}",
                        side="dest-", tls_verify=tls_verify, action="push", ref=target)
    return target


def pull_sbom(ref: str, tls_verify: bool) -> str:
    """The SBOM pushed for the image at ref."""
    target, _ = sbom_ref(ref, tls_verify)
    with tempfile.TemporaryDirectory(prefix="osbuild-oci-sbom-") as tmp:
        registry.skopeo("copy", "--quiet", "--preserve-digests", f"docker://{target}", f"oci:{tmp}",
                        side="src-", tls_verify=tls_verify, action="pull", ref=target)
        index = json.loads((Path(tmp) / "index.json").read_text())
        manifest = json.loads(_blob(Path(tmp), index["manifests"][0]["digest"]))
        layers = [layer for layer in manifest.get("layers", []) if layer.get("mediaType") == MEDIA_TYPE]
        if not layers:
            raise RegistryError(target, "pull", f"the artifact holds no {MEDIA_TYPE} layer")
        return _blob(Path(tmp), layers[0]["digest"]).decode()


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()
