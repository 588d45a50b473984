"""Signing key pairs in the format podman and skopeo sign with: `osbuild-oci key generate`.

Debian 12's skopeo has no `generate-sigstore-key`, and cosign is not packaged,
so this writes what containers/image's sigstore signer reads (the format cosign
writes): a P-256 private key as PKCS#8, sealed with NaCl secretbox under a key
that scrypt (N=32768, r=8, p=1, the parameters cosign and containers/image
accept) derives from the passphrase, as JSON in a PEM block "ENCRYPTED SIGSTORE
PRIVATE KEY"; the public key is a PEM "PUBLIC KEY" that a containers-policy.json
`sigstoreSigned` requirement names as `keyPath`.  Without a passphrase the key
is sealed under the empty passphrase: containers/image only reads sealed keys,
and osbuild-oci then hands skopeo an empty passphrase file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import nacl.exceptions
import nacl.secret
import nacl.utils
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

PRIVATE_PEM = "ENCRYPTED SIGSTORE PRIVATE KEY"
SCRYPT = {"N": 32768, "r": 8, "p": 1}
# What a key file may ask of scrypt: far above cosign's parameters, far below an hour of work (p multiplies it).
SCRYPT_LIMITS = {"N": 1 << 20, "r": 32, "p": 16}


def read_passphrase(path: Path | None) -> bytes:
    """The passphrase as skopeo reads --sign-passphrase-file: the first line, without its newline."""
    if path is None:
        return b""
    return path.read_bytes().split(b"\n", 1)[0]


def _seal(secret: bytes, passphrase: bytes) -> bytes:
    salt = nacl.utils.random(32)
    key = hashlib.scrypt(passphrase, salt=salt, n=SCRYPT["N"], r=SCRYPT["r"], p=SCRYPT["p"],
                         maxmem=64 * 1024 * 1024, dklen=nacl.secret.SecretBox.KEY_SIZE)
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    sealed = nacl.secret.SecretBox(key).encrypt(secret, nonce).ciphertext

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()
    return json.dumps({"kdf": {"name": "scrypt", "params": SCRYPT, "salt": b64(salt)},
                       "cipher": {"name": "nacl/secretbox", "nonce": b64(nonce)},
                       "ciphertext": b64(sealed)}).encode()


def _pem(kind: str, der: bytes) -> bytes:
    body = base64.b64encode(der).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {kind}-----", *lines, f"-----END {kind}-----", ""]).encode()


def generate(name: Path, passphrase: bytes) -> tuple[Path, Path]:
    """Write NAME.key (0600, never over an existing file) and NAME.pub; return their paths."""
    private, public = name.with_name(name.name + ".key"), name.with_name(name.name + ".pub")
    key = ec.generate_private_key(ec.SECP256R1())
    pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    spki = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(_pem(PRIVATE_PEM, _seal(pkcs8, passphrase)))
    public.write_bytes(spki)
    return private, public


def load_private(path: Path, passphrase: bytes) -> ec.EllipticCurvePrivateKey:
    """Open a key `generate` (or cosign) wrote; ValueError says why it cannot be used."""
    text = path.read_text()
    begin, end = f"-----BEGIN {PRIVATE_PEM}-----", f"-----END {PRIVATE_PEM}-----"
    if begin not in text and "ENCRYPTED COSIGN PRIVATE KEY" in text:
        begin, end = begin.replace("SIGSTORE", "COSIGN"), end.replace("SIGSTORE", "COSIGN")
    if begin not in text or end not in text:
        raise ValueError(f"it is not a PEM block {PRIVATE_PEM!r} (make one with `osbuild-oci key generate`)")
    body = text.split(begin, 1)[1].split(end, 1)[0]
    try:
        doc = json.loads(base64.b64decode("".join(body.split())))
        kdf, cipher = doc["kdf"], doc["cipher"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise ValueError(f"unsupported sealing {kdf['name']}/{cipher['name']}")
        params = kdf["params"]
        if any(not isinstance(params[name], int) or params[name] > limit for name, limit in SCRYPT_LIMITS.items()):
            raise ValueError(f"scrypt parameters {json.dumps(params)[:80]} beyond what a sigstore key uses "
                             f"({json.dumps(SCRYPT_LIMITS)} at most)")
        key = hashlib.scrypt(passphrase, salt=base64.b64decode(kdf["salt"]), n=params["N"], r=params["r"],
                             p=params["p"], maxmem=256 * 1024 * 1024, dklen=nacl.secret.SecretBox.KEY_SIZE)
        secret = nacl.secret.SecretBox(key).decrypt(base64.b64decode(doc["ciphertext"]),
                                                    base64.b64decode(cipher["nonce"]))
    except nacl.exceptions.CryptoError:
        raise ValueError("wrong passphrase (give the one it was generated with in --sign-passphrase-file)") from None
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as err:
        raise ValueError(f"its sealed content is malformed ({err})") from None
    key = serialization.load_der_private_key(secret, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("it holds no ECDSA key")
    return key
