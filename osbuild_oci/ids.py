"""Every content id the project computes: canonical JSON digests of what decides a tree, an output or a check.

An id names its inputs, so two machines that agree on the inputs agree on the
id, and a cache hit needs no other check than the id.  Canonical JSON here is
`json.dumps(sort_keys=True, separators=(",", ":"))` of plain data, hashed with
SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def canonical(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def digest(document: Any) -> str:
    """The SHA-256 (hex) of a document's canonical JSON."""
    return hashlib.sha256(canonical(document)).hexdigest()


def stage_id(parent: str | None, image_id: str, options: dict, source_epoch: int, tree_arch: str) -> str:
    """The tree a stage makes: parent tree (or base image digest), stage image digest, canonical options, source
    epoch, the pipeline's architecture.

    The epoch is the files' clamped modification time, so trees of different epochs never share an id; the
    architecture is in every id (not only the options of stages that take it), so an arm64 tree and an amd64
    tree of one pipeline never share one, whatever their stages.
    """
    return digest({"parent": parent or "", "image": image_id, "options": options, "source_epoch": source_epoch,
                   "arch": tree_arch})


def output_id(tree: str | None, image_id: str, options: dict) -> str:
    """What an assembler makes: the tree it reads, its image digest, its canonical options."""
    return digest({"tree": tree or "", "assembler": image_id, "options": options})


def check_proof(kind: str, schema: Any, document: Any) -> str:
    """A passed schema check, remembered by this digest (pipeline.validation)."""
    return digest([kind, schema, document])


def source_digest(folder: Path, extra: str) -> str:
    """What a stage image is built from: every file's path in the folder, whether it is executable, its bytes.

    A fixed +x or a file moved into a subfolder changes the image, so either must rebuild it.  Other
    mode bits follow the umask of whoever checked out or installed the sources (git and wheels keep
    only the executable bit), so they do not count.
    """
    h = hashlib.sha256(extra.encode() + b"\0")
    # Python's byte-code caches appear wherever a test imported a stage program; they are no source.
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        executable = "x" if path.stat().st_mode & 0o111 else "-"
        h.update(f"{path.relative_to(folder).as_posix()}\0{executable}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()
