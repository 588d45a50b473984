"""The OCI formats the project writes by hand: media types, and an OCI image layout of one manifest.

skopeo moves such a layout into a registry or a storage (`oci:DIR`); writing
it is a few JSON files, so no library is needed: the empty images trees start
from, sigstore signature artifacts and SBOM artifacts are all made this way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
SPDX = "application/spdx+json"
LAYOUT_VERSION = '{"imageLayoutVersion": "1.0.0"}'


def blob(layout: Path, data: bytes, media_type: str | None = None) -> dict:
    """Store data as a blob of the layout; its descriptor."""
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {**({"mediaType": media_type} if media_type else {}), "digest": f"sha256:{digest}", "size": len(data)}


def write_layout(layout: Path, config: dict, config_type: str, layers: list[dict], **fields) -> dict:
    """An image layout at layout holding one manifest (schema 2, OCI) of this config and these layer descriptors
    (already stored with `blob`); extra manifest fields (artifactType, subject) as given.  The manifest's
    descriptor."""
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST,
                "config": blob(layout, json.dumps(config, separators=(",", ":"), sort_keys=True).encode(), config_type),
                "layers": layers, **fields}
    descriptor = blob(layout, json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode(), MANIFEST)
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [descriptor]}))
    (layout / "oci-layout").write_text(LAYOUT_VERSION)
    return descriptor
