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
from typing import Any, Iterable


def canonical(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def digest(document: Any) -> str:
    """The SHA-256 (hex) of a document's canonical JSON."""
    return hashlib.sha256(canonical(document)).hexdigest()


def stage_id(parent: str | None, image_id: str, options: dict, source_epoch: int, tree_arch: str,
             inputs: dict[str, str] | None = None) -> str:
    """The tree a stage makes: parent tree (or base image digest), stage image digest, canonical options, source
    epoch, the pipeline's architecture, and the content digest of every input the stage reads.

    The epoch is the files' clamped modification time, so trees of different epochs never share an id; the
    architecture is in every id (not only the options of stages that take it), so an arm64 tree and an amd64
    tree of one pipeline never share one, whatever their stages.  Inputs (build/inputs.py: input key -> content
    digest) are a key of their own only for a stage that reads some, so every other stage keeps the id it had
    before inputs existed.
    """
    document = {"parent": parent or "", "image": image_id, "options": options, "source_epoch": source_epoch,
                "arch": tree_arch}
    if inputs:
        document["inputs"] = inputs
    return digest(document)


def output_id(tree: str | None, image_id: str, options: dict) -> str:
    """What an assembler makes: the tree it reads, its image digest, its canonical options."""
    return digest({"tree": tree or "", "assembler": image_id, "options": options})


def check_proof(kind: str, schema: Any, document: Any) -> str:
    """A passed schema check, remembered by this digest (pipeline.validation)."""
    return digest([kind, schema, document])


def files_digest(entries: Iterable[tuple[str, str, bytes]], extra: str) -> str:
    """What a set of files holds, as a copy of it would: each entry's relative path, its kind ("x" an executable
    file, "-" any other file, "d" a directory) and its bytes' SHA-256 (empty for a directory), in the order
    given (sorted by path), after `extra`.

    Only the executable bit of a mode counts: the others follow the umask of whoever checked the files out,
    and would give two machines two digests of one commit.  Times and owners never count.
    """
    h = hashlib.sha256(extra.encode() + b"\0")
    for path, kind, content in entries:
        h.update(f"{path}\0{kind}\0".encode(errors="surrogateescape"))
        h.update(content)
    return h.hexdigest()


def source_digest(folder: Path, extra: str) -> str:
    """What a stage image is built from: every file's path in the folder, whether it is executable, its bytes.

    A fixed +x or a file moved into a subfolder changes the image, so either must rebuild it.
    """
    # Python's byte-code caches appear wherever a test imported a stage program; they are no source.
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return files_digest(((path.relative_to(folder).as_posix(), "x" if path.stat().st_mode & 0o111 else "-",
                          hashlib.sha256(path.read_bytes()).digest()) for path in paths), extra)
