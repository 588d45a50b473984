"""Signature artifacts as hostile input, and freshness: what a store accepted once cannot be rolled back."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from osbuild_oci.registry import freshness, signing

REF = "registry.example/ns/trees:abc"
DIGEST = "sha256:" + "1" * 64
LAYER = {"mediaType": signing.PAYLOAD_TYPE, "digest": DIGEST, "size": 300,
         "annotations": {signing.SIGNATURE_ANNOTATION: "c2ln"}}


def test_a_signature_older_than_the_accepted_one_is_refused_naming_both_dates(tmp_path):
    accepted = freshness.Accepted(tmp_path)
    new = {freshness.SIGNED: "2026-12-07T10:00:00Z", freshness.RELEASE: "2026-12-06T08:00:00Z"}
    assert accepted.refusal(REF, new) == ""
    accepted.accept(REF, new)
    again = freshness.Accepted(tmp_path)  # what the next command reads
    assert again.refusal(REF, new) == "", "the same signature again is fine"
    assert again.refusal(REF, {**new, freshness.SIGNED: "2026-12-07T09:59:59Z"}) == (
        "it was signed 2026-12-07T09:59:59Z, before the signature of 2026-12-07T10:00:00Z this store already "
        "accepted for it (a rollback?)")
    assert "its packages are of 2026-11-01T00:00:00Z, older than those of 2026-12-06T08:00:00Z" in \
        again.refusal(REF, {freshness.SIGNED: "2027-01-01T00:00:00Z", freshness.RELEASE: "2026-11-01T00:00:00Z"})
    assert "signed at an unknown time" in again.refusal(REF, {}), "a signature without a date proves nothing"
    assert again.refusal("registry.example/ns/trees:other", {}) == "", "each reference on its own"
    again.accept(REF, {freshness.SIGNED: "2026-12-08T00:00:00Z"})
    assert json.loads((tmp_path / freshness.FILE).read_text())[REF] == {
        freshness.SIGNED: "2026-12-08T00:00:00Z", freshness.RELEASE: "2026-12-06T08:00:00Z"}


@pytest.mark.parametrize("garbage", ["", "[]", '{"x": 3}', '{"r": {"org.osbuild-oci.signed": 5}}', "\xff"])
def test_an_unreadable_record_counts_as_none(tmp_path, garbage):
    (tmp_path / freshness.FILE).write_text(garbage, errors="surrogateescape")
    assert freshness.Accepted(tmp_path).refusal(REF, {}) == ""


def test_only_well_formed_dates_of_a_payload_count():
    assert freshness.dates({freshness.SIGNED: "2026-12-07T10:00:00Z", freshness.RELEASE: "yesterday",
                            "creator": "x"}) == {freshness.SIGNED: "2026-12-07T10:00:00Z"}
    assert freshness.dates(None) == freshness.dates(["x"]) == {}


@pytest.mark.parametrize("manifest, why", [
    ({"layers": [LAYER] * 65}, "65 signatures, more than the 64"),
    ({"layers": [{**LAYER, "size": signing.MAX_PAYLOAD + 1}]}, "not within 0 to 4194304"),
    ({"layers": [{**LAYER, "mediaType": "other", "size": 1 << 40}]}, "not within"),
    ({"layers": [LAYER], "config": {"size": 1 << 33}}, "not within"),
    ({"layers": [{**LAYER, "size": True}]}, "not within"),
    ({"layers": [{**LAYER, "annotations": {signing.SIGNATURE_ANNOTATION: 7}}]}, "no text"),
    ({"layers": [{**LAYER, "annotations": ["x"]}]}, "no text"),
    ({"layers": [{**LAYER, "digest": None}]}, "no digest"),
    ({"layers": "x"}, "no list of layers"),
    ([], "no list of layers"),
])
def test_an_attachment_beyond_containers_images_limits_is_malformed_before_it_is_fetched(manifest, why):
    with pytest.raises(signing.Malformed, match=why):
        signing._descriptors(json.dumps(manifest).encode())


def test_an_attachment_within_the_limits_lists_its_signature_layers():
    assert signing._descriptors(json.dumps({"layers": [LAYER] * 63 + [{"mediaType": "x", "size": 1}]}).encode()) \
        == [LAYER] * 63


@pytest.mark.parametrize("signature", [7, None, ["x"], "not base64!"])
def test_a_signature_that_is_no_base64_text_is_an_unknown_signer(signature):
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert signing._check(b"{}", signature, key, REF, DIGEST) == signing.UNKNOWN_SIGNER


@pytest.mark.parametrize("critical", [
    {"type": 5, "image": {"docker-manifest-digest": DIGEST}, "identity": {"docker-reference": REF}},
    {"type": signing.SIGNATURE_TYPE, "image": {"docker-manifest-digest": DIGEST}, "identity": {"docker-reference": []}},
    {"type": signing.SIGNATURE_TYPE, "image": [], "identity": {"docker-reference": REF}}, "critical", None])
def test_a_validly_signed_payload_of_the_wrong_shape_is_malformed(critical):
    private = ec.generate_private_key(ec.SECP256R1())
    payload = json.dumps({"critical": critical}).encode()
    signature = base64.b64encode(private.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
    assert signing._check(payload, signature, private.public_key(), f"registry.example/ns/trees@{DIGEST}", DIGEST) \
        == "its signed payload is malformed"


def test_a_key_file_asking_scrypt_for_hours_of_work_is_refused_at_once(tmp_path):
    import time

    from osbuild_oci.registry import keys
    private, _ = keys.generate(tmp_path / "k", b"")
    lines = private.read_text().splitlines()
    sealed = json.loads(base64.b64decode("".join(lines[1:-1])))
    sealed["kdf"]["params"]["p"] = 1 << 20
    private.write_text("\n".join([lines[0], base64.b64encode(json.dumps(sealed).encode()).decode(), lines[-1], ""]))
    started = time.monotonic()
    with pytest.raises(ValueError, match="beyond what a sigstore key uses"):
        keys.load_private(private, b"")
    assert time.monotonic() - started < 1
