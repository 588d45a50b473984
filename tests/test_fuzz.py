"""Generated input for every file a user hands osbuild-oci, in process: each is taken or refused in one line.

Pipelines, lock files, the settings file, key files and signature payloads: random JSON,
near-valid mutations of the examples, random bytes and deep nesting.  Whatever comes in, the
result is a value or the error a user is shown (UserError, or for a signature an untrusted
verdict), never another exception, which would be a traceback.  A bounded number of examples
runs here, in the fast tier; benchmarks/fuzz.py runs thousands through the real CLI.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from helpers import REPO
from osbuild_oci.build import lockfile, settings
from osbuild_oci.errors import UserError
from osbuild_oci.pipeline.model import parse
from osbuild_oci.registry import freshness, keys, signing

EXAMPLES = [json.loads(path.read_text()) for path in sorted((REPO / "pipelines").glob("*.json"))]
NAMES = ["name", "stages", "options", "base", "arch", "assembler", "image", "source_epoch", "version", "images",
         "id", "pull", "critical", "optional", "identity", "docker-reference", "type", "kdf", "cipher", "params"]
FAST = hypothesis_settings(max_examples=40, deadline=None, derandomize=True,
                           suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | \
    st.text(max_size=12) | st.sampled_from(["", "..", "/abs/dir", "../..", "\0", "org.osbuild.noop", "0" * 64])
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) |
                      st.dictionaries(st.sampled_from(NAMES) | st.text(max_size=6), inner, max_size=5), max_leaves=24)


@st.composite
def near(draw, documents: list):
    """A document with one to three of its values replaced, removed or added to."""
    doc = json.loads(json.dumps(draw(st.sampled_from(documents))))
    for _ in range(draw(st.integers(1, 3))):
        node = doc
        while isinstance(node, (dict, list)) and node:
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            if not isinstance(node[key], (dict, list)) or not node[key] or draw(st.booleans()):
                action = draw(st.integers(0, 2))
                if action == 0 and isinstance(node, dict):
                    del node[key]
                elif action == 1 and isinstance(node, dict):
                    node[draw(st.sampled_from(NAMES))] = draw(values)
                else:
                    node[key] = draw(values)
                break
            node = node[key]
    return doc


def deep() -> st.SearchStrategy[str]:
    return st.integers(60, 3000).flatmap(lambda n: st.sampled_from(
        ["[" * n + "]" * n, '{"a":' * n + "1" + "}" * n,
         '{"name": "d", "stages": [{"name": "org.osbuild.noop", "options": ' + "[" * n + "]" * n + "}]}"]))


def texts(documents: list) -> st.SearchStrategy[str]:
    return st.one_of(near(documents).map(json.dumps), values.map(json.dumps), deep(),
                     st.binary(max_size=200).map(lambda data: data.decode("utf-8", errors="replace")))


@FAST
@given(texts(EXAMPLES))
def test_a_pipeline_is_parsed_or_refused_in_one_line(text):
    try:
        parse(text)
    except UserError as err:
        assert "\n" not in str(err)


LOCK = {"version": 1, "images": {"org.osbuild.noop": {"image": "localhost/osbuild-oci/org.osbuild.noop:latest",
                                                      "id": "0" * 64, "pull": "r.example/a@sha256:" + "0" * 64}},
        "base": {"image": "x", "id": "1" * 64}}


@FAST
@given(st.one_of(texts([LOCK]).map(str.encode), st.binary(max_size=100)))
def test_a_lock_file_is_loaded_or_refused(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.lock"
        path.write_bytes(data)
        try:
            lockfile.load(path)
        except UserError:
            pass


toml_values = st.sampled_from(['"20G"', '"-5G"', '"1e999G"', "3", "true", "nan", "[1, 2]", '["team.pub"]', "{x = 1}",
                               '["../../etc/passwd"]', '"\\u0000"', "[" * 3000 + "]" * 3000, "{a = " * 900 + "1" + "}" * 900])
toml_lines = st.tuples(st.sampled_from(["store-max-size", "trust-keys", "trust-key", "x", "a.b"]), toml_values) \
    .map(lambda kv: f"{kv[0]} = {kv[1]}")


@FAST
@given(st.one_of(st.lists(toml_lines, max_size=4).map("\n".join).map(str.encode), st.binary(max_size=100)))
def test_the_settings_file_is_loaded_or_refused(data):
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as env:
        path = Path(tmp) / "config.toml"
        path.write_bytes(data)
        env.setenv("OSBUILD_OCI_CONFIG", str(path))
        try:
            settings.trust_keys([])
        except UserError:
            pass


@pytest.fixture(scope="module")
def key_files(tmp_path_factory) -> tuple[bytes, bytes]:
    private, public = keys.generate(tmp_path_factory.mktemp("keys") / "good", b"")
    return private.read_bytes(), public.read_bytes()


def _garbled_key(good: bytes) -> st.SearchStrategy[bytes]:
    lines = good.decode().splitlines()
    sealed = json.loads(base64.b64decode("".join(lines[1:-1]))) if "SIGSTORE" in lines[0] else None
    repacked = near([sealed]).map(lambda doc: "\n".join(
        [lines[0], base64.b64encode(json.dumps(doc).encode()).decode(), lines[-1], ""]).encode()) if sealed else \
        st.just(good)
    flipped = st.tuples(st.integers(0, len(good) - 1), st.integers(0, 255)).map(
        lambda at: good[:at[0]] + bytes([at[1]]) + good[at[0] + 1:])
    return st.one_of(repacked, flipped, st.integers(0, len(good)).map(lambda n: good[:n]), st.binary(max_size=200))


@hypothesis_settings(max_examples=12, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_key_files_are_opened_or_refused(key_files, data):
    private, public = key_files
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k"
        path.write_bytes(data.draw(_garbled_key(private)))
        try:
            signing.SigningKey.open(path)
        except UserError:
            pass
        path.write_bytes(data.draw(_garbled_key(public)))
        try:
            signing.load_public(path)
        except UserError:
            pass


SIGNER = ec.generate_private_key(ec.SECP256R1())
PAYLOAD = {"critical": {"identity": {"docker-reference": "r.example/a:b"},
                        "image": {"docker-manifest-digest": "sha256:" + "1" * 64}, "type": signing.SIGNATURE_TYPE},
           "optional": {freshness.SIGNED: "2026-01-01T00:00:00Z"}}
ATTACHMENT = {"schemaVersion": 2, "layers": [{"mediaType": signing.PAYLOAD_TYPE, "digest": "sha256:" + "1" * 64,
                                              "size": 3, "annotations": {signing.SIGNATURE_ANNOTATION: "x"}}],
              "config": {"digest": "sha256:" + "2" * 64, "size": 2}}


@FAST
@given(texts([PAYLOAD]), st.booleans() | scalars, texts([ATTACHMENT]))
def test_a_signature_payload_and_attachment_give_a_verdict(payload, signed, attachment):
    """Even a payload the trusted key really signed, of any shape, is judged, not a traceback."""
    data = payload.encode("utf-8", errors="surrogatepass")
    signature = base64.b64encode(SIGNER.sign(data, ec.ECDSA(hashes.SHA256()))).decode() if signed is True else signed
    verdict = signing._check(data, signature, SIGNER.public_key(), "r.example/a:b", "sha256:" + "1" * 64)
    assert isinstance(verdict, str)
    if verdict == "":
        assert isinstance(signing._dates(data), dict)
    try:
        signing._descriptors(attachment.encode("utf-8", errors="surrogatepass"))
    except signing.Malformed:
        pass
