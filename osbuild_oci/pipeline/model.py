"""The pipeline file: parsing, structural validation, and the model the runner works from.

Only the structure is checked here; stage options are checked against each
stage image's own schema once the images are resolved (runner.plan).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

from . import arch
from ..errors import UserError
from .validation import describe_validation_error, jsonschema, known_valid, remember_valid

# Deeper than any real pipeline; far below what json and jsonschema can recurse into.
MAX_DEPTH = 64
# The source_epoch of a pipeline that names none: fixed, so trees stay reproducible (2024-01-01T00:00:00Z).
DEFAULT_SOURCE_EPOCH = 1704067200
_SCHEMA = json.loads(resources.files(__package__).joinpath("schema.json").read_text())
# An image reference, as the schema allows it for a base or a stage image (and an image input, pipeline/inputs.py).
REFERENCE = re.compile(_SCHEMA["$defs"]["reference"]["pattern"])


@dataclass(frozen=True)
class Alias:
    """Another name for a stage: the image it resolves to, and the options that name implies.

    Implied options are defaults; the pipeline's own options win.  A deprecated
    name still works but says what to write instead.
    """

    target: str
    implies: dict = field(default_factory=dict)
    deprecated: bool = False


ALIASES = {
    "io.weldr.qcow2": Alias("org.osbuild-oci.disk", {"format": "qcow2"}),
    "org.osbuild.qcow2": Alias("org.osbuild-oci.disk", {"format": "qcow2"}),
    "org.osbuild.raw": Alias("org.osbuild-oci.disk", {"format": "raw"}),
    "org.osbuild.copy": Alias("org.osbuild-oci.files", deprecated=True),
}


@dataclass(frozen=True)
class Step:
    """A stage or the assembler as the pipeline names it; `where` is its JSON path."""

    name: str
    where: str
    options: dict = field(default_factory=dict)
    image: str | None = None


@dataclass(frozen=True)
class Source:
    """Where a source (content the pipeline names by its digest) is fetched from: URLs tried in turn, or a path
    in the build context."""

    urls: tuple[str, ...] = ()
    context: str | None = None


@dataclass(frozen=True)
class Pipeline:
    name: str
    stages: list[Step]
    assembler: Step | None = None
    base: str | None = None
    notes: list[str] = field(default_factory=list)
    source_epoch: int = DEFAULT_SOURCE_EPOCH
    # Debian's name; None: the host's.
    arch: str | None = None
    # "sha256:<hex>" -> where to fetch it (the schema checked the form).
    sources: dict[str, Source] = field(default_factory=dict)

    @property
    def tree_arch(self) -> str:
        return self.arch or arch.host()


SECRET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Where an assembler finds the secrets its options name: a read-only file each, never in a tree or a log.
SECRETS_MOUNT = "/run/osbuild/secrets"


def find_objects(options: object, where: str, match: Callable[[dict], bool]) -> list[tuple[dict, str]]:
    """Every object in options that match() takes, with its JSON path, in document order; what a match holds
    is not searched."""
    found: list[tuple[dict, str]] = []
    todo = [(options, where)]
    while todo:
        value, path = todo.pop()
        if isinstance(value, dict):
            if match(value):
                found.append((value, path))
                continue
            todo.extend(reversed([(child, f"{path}.{key}") for key, child in value.items()]))
        elif isinstance(value, list):
            todo.extend(reversed([(child, f"{path}[{index}]") for index, child in enumerate(value)]))
    return found


def secret_refs(options, where: str) -> dict[str, str]:
    """Every `{"secret": NAME}` in options, NAME -> its JSON path: the secrets (key files given with `--secret
    NAME=FILE`) a step reads.  Only the name is in the options, so no stage id, lock file or log holds a secret."""
    found: dict[str, str] = {}
    for value, path in find_objects(options, where, lambda value: set(value) == {"secret"}):
        name = value["secret"]
        if not isinstance(name, str) or not SECRET_NAME.match(name):
            raise UserError("a secret's name is 1-64 letters, digits, '.', '_' or '-', starting with a "
                            "letter or digit", f"{path}.secret")
        found.setdefault(name, path)
    return found


def _not_json(constant: str) -> None:
    raise UserError(f"invalid JSON: {constant} is not a JSON number (RFC 8259); write a number or a string")


def _check_depth(doc) -> None:
    """Refuse documents nested deeper than MAX_DEPTH, before anything recursive walks them."""
    todo = [(doc, "", 1)]
    while todo:
        value, where, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise UserError(f"nested deeper than {MAX_DEPTH} levels; no pipeline needs that", where or None)
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, child in items:
            todo.append((child, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}".lstrip("."),
                         depth + 1))


def parse(text: str) -> Pipeline:
    try:
        doc = json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError as err:
        raise UserError(f"invalid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
    except RecursionError:
        raise UserError(f"nested deeper than {MAX_DEPTH} levels; no pipeline needs that") from None
    _check_depth(doc)
    if not known_valid("pipeline", _SCHEMA, doc):
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(_SCHEMA).iter_errors(doc))
        if error is not None:
            raise describe_validation_error(error)
        remember_valid("pipeline", _SCHEMA, doc)

    notes: list[str] = []

    def step(item: dict, where: str) -> Step:
        name, options = item["name"], item.get("options", {})
        alias = ALIASES.get(name) if "image" not in item else None
        if alias is not None:
            if alias.deprecated:
                notes.append(f"{where}.name: {name} is deprecated; write {alias.target!r} instead")
            name, options = alias.target, {**alias.implies, **options}
        return Step(name=name, where=where, options=options, image=item.get("image"))

    return Pipeline(
        name=doc["name"],
        stages=[step(s, f"stages[{i}]") for i, s in enumerate(doc["stages"])],
        assembler=step(doc["assembler"], "assembler") if "assembler" in doc else None,
        base=doc.get("base"),
        notes=notes,
        source_epoch=doc.get("source_epoch", DEFAULT_SOURCE_EPOCH),
        arch=doc.get("arch"),
        sources={digest: _source(where) for digest, where in doc.get("sources", {}).items()},
    )


def _source(where: str | list | dict) -> Source:
    if isinstance(where, dict):
        return Source(context=where["context"])
    return Source(urls=(where,) if isinstance(where, str) else tuple(where))


def load(path: Path) -> Pipeline:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read the pipeline: {err.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise UserError(f"not UTF-8 text: byte 0x{data[err.start]:02x} at line {line}; save the file as UTF-8 "
                        "(JSON is UTF-8, RFC 8259)") from None
    return parse(text)
