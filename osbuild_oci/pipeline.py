"""The pipeline file: parsing, structural validation, and the model the runner works from.

Only the structure is checked here; stage options are checked against each
stage image's own schema once the images are resolved (runner.plan).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import jsonschema

from .errors import UserError, describe_validation_error

_SCHEMA = json.loads(resources.files(__package__).joinpath("pipeline.schema.json").read_text())


@dataclass(frozen=True)
class Step:
    """A stage or the assembler as the pipeline names it; `where` is its JSON path."""

    name: str
    where: str
    options: dict = field(default_factory=dict)
    image: str | None = None


@dataclass(frozen=True)
class Pipeline:
    name: str
    stages: list[Step]
    assembler: Step | None = None
    base: str | None = None


def parse(text: str) -> Pipeline:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"invalid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(_SCHEMA).iter_errors(doc))
    if error is not None:
        raise describe_validation_error(error)

    def step(item: dict, where: str) -> Step:
        return Step(name=item["name"], where=where, options=item.get("options", {}), image=item.get("image"))

    return Pipeline(
        name=doc["name"],
        stages=[step(s, f"stages[{i}]") for i, s in enumerate(doc["stages"])],
        assembler=step(doc["assembler"], "assembler") if "assembler" in doc else None,
        base=doc.get("base"),
    )


def load(path: Path) -> Pipeline:
    try:
        text = path.read_text()
    except OSError as err:
        raise UserError(f"cannot read the pipeline: {err.strerror}") from None
    return parse(text)
