#!/usr/bin/env python3
"""Fuzz the real command line with generated input files; print how many ran and every finding.

What a user hands osbuild-oci is hostile until checked: pipelines, lock files, the settings
file, key files.  Each case writes one generated file and runs the CLI as a user would:
pipelines through `inspect` and `build` (of cheap stages only: a generated pipeline that is
valid runs), lock files through `build --lock F --locked`, the settings file through
OSBUILD_OCI_CONFIG, keys through `--sign-key` and `--trust-key`.  A finding is an exit status
other than 0 and 2, "Traceback" on stderr, more than one error line, or a refusal (exit 2) after
which the store's images or layers (containers-storage's own records) changed.  Signature
payloads are fuzzed in process against the checks a pull makes.  Inputs come from a seeded
generator: random JSON, near-valid mutations of the examples in pipelines/, random bytes, deep
nesting.  Run as root after scripts/setup-host:

    .venv/bin/python benchmarks/fuzz.py [CASES] [SEED]
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
from helpers import _storage_records  # noqa: E402

CLI = [sys.executable, "-m", "osbuild_oci"]
# Pipelines that a build may run when a mutation leaves them valid: cheap stages that work on an empty
# tree (org.osbuild.hostname does not: it wants the /etc of a Debian tree), no base, no assembler.
CHEAP = [json.loads((REPO / "pipelines" / "noop.json").read_text()),
         {"name": "small", "stages": [{"name": "org.osbuild.noop", "options": {"n": 1}},
                                      {"name": "org.osbuild-oci.files",
                                       "options": {"files": [{"path": "/srv/a", "content": "x"}]}}]}]
EXAMPLES = [json.loads(path.read_text()) for path in sorted((REPO / "pipelines").glob("*.json"))]
LOCK = {"version": 1, "images": {"org.osbuild.noop": {"image": "localhost/osbuild-oci/org.osbuild.noop:latest",
                                                      "id": "0" * 64}}}
WORDS = ["", "..", "/", "/abs/dir", "../..", "a" * 300, "\n", "\0", "\ud800", "é", "$(id)", "'\"{};`", "NaN",
         "org.osbuild.noop", "org.osbuild.copy", "localhost/osbuild-oci/trees:" + "0" * 64, "0" * 64,
         "registry.invalid:1/x@sha256:" + "0" * 64, "sha256:", "arm64", "amd64", "-1", "1e999"]


def scalar(rng: random.Random):
    kind = rng.randrange(7)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 1, 2 ** 63, -(2 ** 64), 10 ** 400, 1704067200, 4096])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, 3.0])
    if kind == 4:
        return rng.choice(WORDS)
    return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 0x3000)])) for _ in range(rng.randrange(12)))


def random_json(rng: random.Random, depth: int = 0):
    if depth > 4 or rng.random() < 0.4:
        return scalar(rng)
    if rng.random() < 0.5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {str(scalar(rng)) if rng.random() < 0.3 else rng.choice(["name", "stages", "options", "base", "arch",
                                                                     "assembler", "image", "source_epoch"]):
            random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def mutate(rng: random.Random, doc):
    """A near-valid document: one to three changes at random places."""
    doc = json.loads(json.dumps(doc))
    for _ in range(rng.randrange(1, 4)):
        path, node = [], doc
        while isinstance(node, (dict, list)) and node and rng.random() < 0.7:
            key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
            path.append((node, key))
            node = node[key]
        if not path:
            return random_json(rng)
        parent, key = path[-1]
        action = rng.randrange(4)
        if action == 0 and isinstance(parent, dict):
            del parent[key]
        elif action == 1 and isinstance(parent, dict):
            parent[rng.choice(WORDS)] = random_json(rng)
        elif action == 2:
            parent[key] = scalar(rng)
        else:
            parent[key] = random_json(rng)
    return doc


def deep(rng: random.Random) -> str:
    n = rng.choice([63, 64, 65, 200, 5000, 200000])
    return rng.choice(["[" * n + "]" * n, '{"a":' * n + "1" + "}" * n,
                       '{"name": "d", "stages": [{"name": "org.osbuild.noop", "options": ' + "[" * n + "]" * n + "}]}"])


def document(rng: random.Random, valid_ones: list) -> bytes:
    """One generated file: mostly near-valid, some random JSON, random bytes or deep nesting."""
    kind = rng.random()
    if kind < 0.55:
        text = json.dumps(mutate(rng, rng.choice(valid_ones)))
    elif kind < 0.75:
        text = json.dumps(random_json(rng))
    elif kind < 0.85:
        text = deep(rng)
    else:
        return rng.randbytes(rng.randrange(200)) if rng.random() < 0.5 else \
            json.dumps(rng.choice(valid_ones)).encode()[:rng.randrange(80)] + rng.randbytes(3)
    return text.encode("utf-8", errors="surrogatepass")


def toml_document(rng: random.Random) -> bytes:
    lines = rng.choice([['store-max-size = "20G"'], ['trust-keys = ["team.pub"]'], []])
    for _ in range(rng.randrange(3)):
        key = rng.choice(["store-max-size", "trust-keys", "trust-key", "x", "[table]", "a.b"])
        value = rng.choice(['"' + str(scalar(rng)).replace('"', "") + '"', "3", "[1, 2]", '["../../etc/passwd"]',
                            "{x = 1}", "[[1]]", '"-5G"', '"1e9999G"', '"0"', "true", "nan", '"\\u0000"'])
        lines.append(f"{key} = {value}" if not key.startswith("[") else key)
    text = "\n".join(rng.sample(lines, len(lines)))
    return text.encode() if rng.random() < 0.9 else rng.randbytes(60)


def key_document(rng: random.Random, good: bytes) -> bytes:
    """A private or public key file, garbled: cut, bytes flipped, the PEM body's JSON changed, or random."""
    kind = rng.randrange(5)
    if kind == 0:
        return good[:rng.randrange(len(good))]
    if kind == 1:
        data = bytearray(good)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if kind == 2 and b"SIGSTORE" in good:
        lines = good.decode().splitlines()
        body = json.loads(base64.b64decode("".join(lines[1:-1])))
        body = mutate(rng, body)
        return "\n".join([lines[0], base64.b64encode(json.dumps(body).encode()).decode(), lines[-1], ""]).encode()
    if kind == 3:
        return b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n" + base64.b64encode(rng.randbytes(90)) + \
            b"\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
    return rng.randbytes(rng.randrange(300))


class Fuzzer:
    def __init__(self, work: Path, seed: int):
        self.work, self.rng = work, random.Random(seed)
        self.store, self.out = work / "store", work / "out"
        self.count, self.findings = 0, []

    def state(self) -> tuple:
        return (sorted((i["id"], tuple(i.get("names") or [])) for i in _storage_records(self.store, "images")),
                sorted(layer["id"] for layer in _storage_records(self.store, "layers")))

    def run(self, what: str, data: bytes, *args: str, env: dict | None = None) -> None:
        """One case; a finding is recorded with the input that made it."""
        before = self.state()
        proc = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=REPO, timeout=300,
                              env={**__import__("os").environ, **(env or {})})
        self.count += 1
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        # A garbled key that still opens gets as far as pushing to the closed port: the build's exit 1 is right.
        pushed = proc.returncode == 1 and "127.0.0.1:9" in proc.stderr and len(errors) == 1
        problem = ("exit status %d" % proc.returncode if proc.returncode not in (0, 2) and not pushed else
                   "a traceback" if "Traceback" in proc.stderr else
                   "more than one error line" if proc.returncode == 2 and len(errors) != 1 else
                   "the store changed on a refusal" if proc.returncode == 2 and self.state() != before else "")
        if problem:
            self.findings.append({"target": what, "problem": problem, "input": data[:400].decode("utf-8", "replace"),
                                  "stderr": proc.stderr[-600:]})
            print(f"FINDING {what}: {problem}\n  input: {data[:200]!r}\n  {proc.stderr.strip()[-300:]}",
                  file=sys.stderr, flush=True)
        if proc.returncode == 0:
            subprocess.run(["rm", "-rf", str(self.out)], check=True)

    def write(self, name: str, data: bytes) -> Path:
        path = self.work / name
        path.write_bytes(data)
        return path

    def pipeline_inspect(self) -> None:
        data = document(self.rng, EXAMPLES)
        self.run("pipeline (inspect)", data, "inspect", str(self.write("p.json", data)), "--store", str(self.store))

    def pipeline_build(self) -> None:
        data = document(self.rng, CHEAP)
        self.run("pipeline (build)", data, "build", str(self.write("p.json", data)), "--store", str(self.store),
                 "-o", str(self.out))

    def lock(self) -> None:
        data = document(self.rng, [LOCK])
        self.run("lock file", data, "build", str(REPO / "pipelines" / "noop.json"), "--store", str(self.store),
                 "--lock", str(self.write("p.lock", data)), "--locked")

    def config(self) -> None:
        data = toml_document(self.rng)
        self.run("config.toml", data, "inspect", str(REPO / "pipelines" / "noop.json"), "--store", str(self.store),
                 env={"OSBUILD_OCI_CONFIG": str(self.write("config.toml", data))})

    def keys(self, private: bytes, public: bytes) -> None:
        if self.rng.random() < 0.5:
            data = key_document(self.rng, private)
            self.run("--sign-key", data, "build", str(REPO / "pipelines" / "noop.json"), "--store", str(self.store),
                     "--sign-key", str(self.write("bad.key", data)), "--cache-to", "127.0.0.1:9/fuzz/trees",
                     "--no-tls-verify")
        else:
            data = key_document(self.rng, public)
            self.run("--trust-key", data, "build", str(REPO / "pipelines" / "noop.json"), "--store",
                     str(self.store), "--trust-key", str(self.write("bad.pub", data)))

    def payloads(self, n: int) -> None:
        """The checks a pull makes of a signature artifact and its payloads, with a real key, in process."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        from osbuild_oci.registry import freshness, signing
        private = ec.generate_private_key(ec.SECP256R1())
        valid = {"critical": {"identity": {"docker-reference": "r.example/a:b"},
                              "image": {"docker-manifest-digest": "sha256:" + "1" * 64}, "type": signing.SIGNATURE_TYPE},
                 "optional": {freshness.SIGNED: "2026-01-01T00:00:00Z"}}
        manifest = {"layers": [{"mediaType": signing.PAYLOAD_TYPE, "digest": "sha256:" + "1" * 64, "size": 3,
                                "annotations": {signing.SIGNATURE_ANNOTATION: "x"}}]}
        accepted = freshness.Accepted(self.work)
        for _ in range(n):
            self.count += 1
            payload = document(self.rng, [valid])
            signature = base64.b64encode(private.sign(payload, ec.ECDSA(hashes.SHA256()))).decode() \
                if self.rng.random() < 0.8 else scalar(self.rng)
            try:
                if signing._check(payload, signature, private.public_key(), "r.example/a:b",
                                  "sha256:" + "1" * 64) == "":
                    accepted.refusal("r.example/a:b", freshness.dates(json.loads(payload).get("optional")))
                try:
                    signing._descriptors(document(self.rng, [manifest]))
                except signing.Malformed:
                    pass
            except Exception as err:  # noqa: BLE001 - every other exception is the finding
                self.findings.append({"target": "signature payload", "problem": repr(err),
                                      "input": payload[:400].decode("utf-8", "replace")})
                print(f"FINDING signature payload: {err!r}\n  input: {payload[:200]!r}", file=sys.stderr)


def main() -> None:
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    with tempfile.TemporaryDirectory(prefix="osbuild-oci-fuzz-", dir="/var/tmp") as tmp:
        fuzzer = Fuzzer(Path(tmp), seed)
        seeded = subprocess.run([*CLI, "build", str(REPO / "pipelines" / "noop.json"), "--store", str(fuzzer.store)],
                                capture_output=True, text=True, cwd=REPO)
        assert seeded.returncode == 0, seeded.stderr
        subprocess.run([*CLI, "key", "generate", str(fuzzer.work / "good")], check=True, capture_output=True, cwd=REPO)
        private, public = (fuzzer.work / "good.key").read_bytes(), (fuzzer.work / "good.pub").read_bytes()
        started = time.monotonic()
        targets = [fuzzer.pipeline_inspect] * 4 + [fuzzer.pipeline_build] * 3 + [fuzzer.lock] * 2 + \
            [fuzzer.config] * 2 + [lambda: fuzzer.keys(private, public)] * 2
        cli_cases = cases // 2
        for i in range(cli_cases):
            fuzzer.rng.choice(targets)()
            if (i + 1) % 100 == 0:
                print(f"{i + 1} CLI cases, {len(fuzzer.findings)} findings, {time.monotonic() - started:.0f} s",
                      file=sys.stderr, flush=True)
        fuzzer.payloads(cases - cli_cases)
        subprocess.run([*CLI, "store", "delete", "--store", str(fuzzer.store)], capture_output=True, cwd=REPO)
        seconds = time.monotonic() - started
    print(json.dumps({"cases": fuzzer.count, "cli_cases": cli_cases, "seed": seed, "seconds": round(seconds),
                      "findings": len(fuzzer.findings)}))
    for finding in fuzzer.findings:
        print(json.dumps(finding))


if __name__ == "__main__":
    main()
