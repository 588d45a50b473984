"""Keys, signatures, the trust config and the lock file, checked without a registry."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from osbuild_oci.build import lockfile, settings as config
from osbuild_oci.registry import keys, signing
from osbuild_oci.errors import UserError

REF = "registry.example/ns/trees:abc"
DIGEST = "sha256:" + "1" * 64


def test_a_generated_key_opens_only_with_its_passphrase(tmp_path):
    private, public = keys.generate(tmp_path / "k", b"pass")
    assert keys.load_private(private, b"pass").public_key().public_numbers() == \
        signing.load_public(public).public_numbers()
    with pytest.raises(ValueError, match="wrong passphrase"):
        keys.load_private(private, b"")
    with pytest.raises(FileExistsError):
        keys.generate(tmp_path / "k", b"")


def test_the_passphrase_is_the_first_line_of_its_file(tmp_path):
    (tmp_path / "p").write_bytes(b"secret\nignored\n")
    assert keys.read_passphrase(tmp_path / "p") == b"secret"
    assert keys.read_passphrase(None) == b""


def _signed(private, identity: str = REF, digest: str = DIGEST) -> tuple[bytes, str]:
    payload = json.dumps({"critical": {"identity": {"docker-reference": identity},
                                       "image": {"docker-manifest-digest": digest},
                                       "type": signing.SIGNATURE_TYPE}, "optional": None}).encode()
    return payload, base64.b64encode(private.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()


def test_a_signature_vouches_only_for_its_key_digest_and_name():
    private, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    key = private.public_key()
    assert signing._check(*_signed(private), key, REF, DIGEST) == ""
    assert signing._check(*_signed(other), key, REF, DIGEST) == signing.UNKNOWN_SIGNER
    assert "not sha256:" in signing._check(*_signed(private, digest="sha256:" + "2" * 64), key, REF, DIGEST)
    assert signing._check(*_signed(private, identity="registry.example/ns/trees:def"), key, REF, DIGEST) == \
        f"it is signed as registry.example/ns/trees:def, not as {REF}"
    # A digest reference needs only the repository to match, as containers/image's matchRepoDigestOrExact.
    assert signing._check(*_signed(private), key, f"registry.example/ns/trees@{DIGEST}", DIGEST) == ""


def test_trust_keys_come_from_the_config_file_unless_the_command_line_names_some(tmp_path, monkeypatch):
    file = tmp_path / "config.toml"
    file.write_text('trust-keys = ["team.pub"]\n')
    monkeypatch.setenv("OSBUILD_OCI_CONFIG", str(file))
    assert config.trust_keys([]) == [tmp_path / "team.pub"]
    assert config.trust_keys([Path("mine.pub")]) == [Path("mine.pub")]
    file.write_text('trust-key = "team.pub"\n')
    with pytest.raises(UserError, match="unknown setting 'trust-key'"):
        config.trust_keys([])


def test_a_malformed_lock_is_refused_naming_the_entry(tmp_path):
    lock = tmp_path / "p.lock"
    lock.write_text(json.dumps({"version": 1, "images": {"org.osbuild.noop": {"image": "x", "id": "short"}}}))
    with pytest.raises(UserError) as err:
        lockfile.load(lock)
    assert str(err.value).startswith(f"{lock}: images.org.osbuild.noop: expected")
