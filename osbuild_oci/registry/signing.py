"""Sigstore signatures in the registry: written when pushing, required when pulling.

A signature is stored the way cosign, podman and skopeo store it (registries.d
`use-sigstore-attachments`): an OCI manifest tagged `sha256-<manifest hex>.sig`
next to the image, one layer a signature, whose payload names the image's
reference and manifest digest and whose annotation holds the ECDSA P-256
signature of that payload.  Debian 12's podman and skopeo can neither write
nor check them (both stop with "Debian-local change: sigstore disabled"), so
osbuild-oci does both with `cryptography`, making the checks containers/image
makes for a policy.json `sigstoreSigned` requirement with the default
`matchRepoDigestOrExact` identity.  skopeo only moves bytes (and reads the
auth files): the image's manifest, the signature artifact.  A trusted image
is then pulled by the digest the signature names, so a tag moved after the
check cannot slip in, and an untrusted one is never pulled at all.  Every
payload also carries when it was signed (and a tree's release date), so a store
refuses a signature older than one it already accepted (`freshness`).  The
artifact is fetched within containers/image's limits (64 layers, 4 MiB a
payload), and whatever in it is malformed makes the image untrusted, never a traceback.
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import freshness, keys, references as registry
from ..errors import RegistryError, Untrusted, UserError

PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
SIGNATURE_TYPE = "cosign container image signature"
UNKNOWN_SIGNER = "signed by none of the trusted keys"
# containers/image's limits for a sigstore attachment: a manifest of more layers, or a larger
# payload, is refused before it is fetched.
MAX_SIGNATURES = 64
MAX_PAYLOAD = 4 << 20


@dataclass(frozen=True)
class SigningKey:
    """An opened --sign-key; without a passphrase file, the empty passphrase `key generate` seals with."""

    path: Path
    private: ec.EllipticCurvePrivateKey

    @classmethod
    def open(cls, path: Path, passphrase_file: Path | None = None) -> "SigningKey":
        try:
            return cls(path, keys.load_private(path, keys.read_passphrase(passphrase_file)))
        except OSError as err:
            raise UserError(f"--sign-key {path}: cannot read {err.filename}: {err.strerror}") from None
        except (ValueError, UnsupportedAlgorithm) as err:
            raise UserError(f"--sign-key {path}: {err}") from None


def _blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"size": len(data), "digest": f"sha256:{digest}"}


def sign_digest(reference: str, digest: str, key: SigningKey, tls_verify: bool,
                release_date: str | None = None) -> None:
    """Store a signature that reference is the manifest of digest (one this process pushed itself)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    optional = {"creator": "osbuild-oci", freshness.SIGNED: now,
                **({freshness.RELEASE: release_date} if release_date else {})}
    payload = json.dumps({"critical": {"identity": {"docker-reference": reference},
                                       "image": {"docker-manifest-digest": digest},
                                       "type": SIGNATURE_TYPE},
                          "optional": optional}, sort_keys=True).encode()
    signature = base64.b64encode(key.private.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    with tempfile.TemporaryDirectory(prefix="osbuild-oci-sign-") as tmp:
        layout = Path(tmp)
        (layout / "blobs" / "sha256").mkdir(parents=True)
        (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        layer = {"mediaType": PAYLOAD_TYPE, **_blob(layout, payload), "annotations": {SIGNATURE_ANNOTATION: signature}}
        config_doc = {"architecture": "", "os": "", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}
        sig_manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": OCI_CONFIG, **_blob(layout, json.dumps(config_doc).encode())},
                        "layers": [layer]}
        entry = {"mediaType": OCI_MANIFEST, **_blob(layout, json.dumps(sig_manifest).encode())}
        (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
        registry.skopeo("copy", "--quiet", "--preserve-digests", f"oci:{layout}", f"docker://{_attachment(reference, digest)}",
                side="dest-", tls_verify=tls_verify, action="store the signature of", ref=reference)


def _attachment(reference: str, digest: str) -> str:
    """Where sigstore attachments of the manifest digest live: REPO:sha256-<hex>.sig."""
    return f"{registry.repository(reference)}:{digest.replace(':', '-')}.sig"


def load_public(path: Path) -> ec.EllipticCurvePublicKey:
    """A --trust-key file: the PEM public key `key generate` (or cosign) wrote."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as err:
        raise UserError(f"--trust-key {path}: cannot read it: {err.strerror}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise UserError(f"--trust-key {path}: not a PEM public key (use the NAME.pub of `osbuild-oci key generate`)"
                        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise UserError(f"--trust-key {path}: not an ECDSA public key; sigstore signatures use ECDSA P-256")
    return key


def _identity_matches(signed: str, reference: str) -> bool:
    """matchRepoDigestOrExact: a tag must be signed exactly; a digest reference needs the same repository."""
    if "@" in reference:
        return registry.repository(signed) == registry.repository(reference)
    return signed == reference


class Malformed(ValueError):
    """Something in a signature artifact is not what a sigstore attachment holds."""


def _descriptors(manifest: bytes) -> list[dict]:
    """The signature layers a sigstore attachment's manifest lists, checked against containers/image's
    limits before any of them is fetched."""
    try:
        doc = json.loads(manifest)
    except (ValueError, RecursionError):
        raise Malformed("its manifest is not JSON, or nested without end") from None
    layers = doc.get("layers") if isinstance(doc, dict) else None
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        raise Malformed("its manifest has no list of layers")
    if len(layers) > MAX_SIGNATURES:
        raise Malformed(f"it holds {len(layers)} signatures, more than the {MAX_SIGNATURES} read")
    config = doc.get("config")
    for blob in [*layers, *([config] if isinstance(config, dict) else [])]:
        size = blob.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_PAYLOAD:
            raise Malformed(f"a blob of {str(size)[:20]} bytes is not within 0 to {MAX_PAYLOAD}")
    wanted = [layer for layer in layers if layer.get("mediaType") == PAYLOAD_TYPE]
    for layer in wanted:
        annotations = layer.get("annotations") or {}
        if not isinstance(annotations, dict) or not isinstance(annotations.get(SIGNATURE_ANNOTATION, ""), str) \
                or not isinstance(layer.get("digest"), str):
            raise Malformed("a signature layer has no digest, or a signature annotation that is no text")
    return wanted


def _payloads(reference: str, digest: str, tls_verify: bool) -> list[tuple[bytes, str]]:
    """(payload, base64 signature) of every sigstore signature stored for the digest; none when there is none.

    A malformed or oversized attachment is Untrusted, whoever put it there.
    """
    target = _attachment(reference, digest)
    try:
        manifest = registry.skopeo("inspect", "--raw", f"docker://{target}", side="", tls_verify=tls_verify,
                                   action="read the signatures of", ref=reference)
    except RegistryError as err:
        if err.missing:
            return []
        raise
    try:
        if len(manifest) > MAX_PAYLOAD:
            raise Malformed(f"its manifest holds {len(manifest)} bytes, more than {MAX_PAYLOAD}")
        wanted = _descriptors(manifest)
        pinned = f"{registry.repository(target)}@sha256:{hashlib.sha256(manifest).hexdigest()}"
        with tempfile.TemporaryDirectory(prefix="osbuild-oci-verify-") as tmp:
            registry.skopeo("copy", "--quiet", "--preserve-digests", f"docker://{pinned}", f"oci:{tmp}",
                            side="src-", tls_verify=tls_verify, action="read the signatures of", ref=reference)
            return [(_blob_of(Path(tmp), layer), (layer.get("annotations") or {}).get(SIGNATURE_ANNOTATION, ""))
                    for layer in wanted]
    except Malformed as err:
        raise Untrusted(reference, "trust", f"its signature artifact {target} is malformed: {err}") from None


def _blob_of(layout: Path, descriptor: dict) -> bytes:
    algorithm, _, hex_digest = descriptor["digest"].partition(":")
    if algorithm != "sha256" or len(hex_digest) != 64 or not all(c in "0123456789abcdef" for c in hex_digest):
        raise Malformed(f"a layer's digest {descriptor['digest'][:80]!r} is no sha256 digest")
    try:
        data = (layout / "blobs" / algorithm / hex_digest).read_bytes()
    except OSError:
        raise Malformed(f"layer {hex_digest[:12]} was not fetched") from None
    if len(data) > MAX_PAYLOAD or hashlib.sha256(data).hexdigest() != hex_digest:
        raise Malformed(f"layer {hex_digest[:12]} does not match its digest")
    return data


def _check(payload: bytes, signature: str, key: ec.EllipticCurvePublicKey, reference: str, digest: str) -> str:
    """Why this signature does not vouch for reference at digest with key; "" when it does."""
    try:
        key.verify(base64.b64decode(signature, validate=True), payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, TypeError):
        return UNKNOWN_SIGNER
    try:
        critical = json.loads(payload)["critical"]
        kind, signed_digest = critical["type"], critical["image"]["docker-manifest-digest"]
        identity = critical["identity"]["docker-reference"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return "its signed payload is malformed"
    if not all(isinstance(field, str) for field in (kind, signed_digest, identity)):
        return "its signed payload is malformed"
    if kind != SIGNATURE_TYPE:
        return f"its signed payload is of type {kind[:80]!r}"
    if signed_digest != digest:
        return f"its signature is for manifest {signed_digest[:80]}, not {digest}"
    if not _identity_matches(identity, reference):
        return f"it is signed as {identity[:200]}, not as {reference}"
    return ""


def _dates(payload: bytes) -> dict[str, str]:
    """The freshness dates of a payload _check passed."""
    return freshness.dates(json.loads(payload).get("optional"))


def trusted(reference: str, trust_keys: tuple[ec.EllipticCurvePublicKey, ...], tls_verify: bool,
            accepted: freshness.Accepted | None = None) -> str:
    """REPO@DIGEST of what reference names now, if one of the keys signed that manifest for it; else Untrusted.

    A reference pinned by digest is checked against that digest without asking what a tag says.
    For a tag, with the store's record (accepted), a signature older than one the store already
    accepted for it is refused, and a newer one is remembered.
    """
    if "@" in reference:
        digest = reference.split("@", 1)[1]
    else:
        raw = registry.skopeo("inspect", "--raw", f"docker://{reference}", side="", tls_verify=tls_verify,
                      action="pull", ref=reference)
        digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    payloads = _payloads(reference, digest, tls_verify)
    if not payloads:
        raise Untrusted(reference, "trust", "it has no signature")
    reasons = [(payload, _check(payload, signature, key, reference, digest))
               for payload, signature in payloads for key in trust_keys]
    valid = [payload for payload, reason in reasons if reason == ""]
    if not valid:
        raise Untrusted(reference, "trust", next((r for _, r in reasons if r != UNKNOWN_SIGNER), UNKNOWN_SIGNER))
    if accepted is not None and "@" not in reference:
        found = freshness.newest([_dates(payload) for payload in valid])
        if why := accepted.refusal(reference, found):
            raise Untrusted(reference, "trust", why)
        accepted.accept(reference, found)
    return f"{registry.repository(reference)}@{digest}"
