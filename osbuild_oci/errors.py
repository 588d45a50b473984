"""The two kinds of failure a user sees, and how a schema error becomes a sentence.

A UserError is the user's to fix (exit 2, nothing ran); a BuildError happened
while building (exit 1).  Neither prints a traceback.
"""

from __future__ import annotations

import jsonschema


class UserError(Exception):
    """Bad input: says what is wrong, where in the JSON, and how to fix it."""

    exit_code = 2

    def __init__(self, message: str, where: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class BuildError(Exception):
    """The build itself failed: a stage exited non-zero, podman refused, a registry is down."""

    exit_code = 1


def json_path(base: str, parts) -> str:
    """Render a jsonschema path as `stages[2].options.packages`."""
    out = base
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def describe_validation_error(error: jsonschema.ValidationError, base: str = "") -> UserError:
    """Turn the most relevant schema violation into one sentence with a fix."""
    where = json_path(base, error.absolute_path)
    if where == "(top level)" and error.validator != "type":
        where = ""
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        hint = f"allowed here: {', '.join(allowed)}" if allowed else "nothing is allowed here"
        if len(extra) == 1:
            return UserError(f"unknown property; {hint}", json_path(where, extra))
        return UserError(f"unknown properties {', '.join(map(repr, extra))}; {hint}", where)
    if error.validator == "required":
        return UserError(f"{error.message}; add it", where)
    if error.validator == "type":
        expected = error.validator_value
        return UserError(f"expected {expected if isinstance(expected, str) else ' or '.join(expected)}, "
                         f"got {_json_type(error.instance)} {_short(error.instance)}", where)
    if error.validator in ("oneOf", "anyOf"):
        alternatives = error.validator_value
        keys = [a.get("required") for a in alternatives if isinstance(a, dict)]
        if keys and all(k and len(k) == 1 for k in keys) and len(keys) == len(alternatives):
            names = ", ".join(k[0] for k in keys)
            return UserError(f"give {'exactly one' if error.validator == 'oneOf' else 'at least one'} of: {names}",
                             where)
        described = "; ".join(a.get("description") or _schema_summary(a) for a in alternatives)
        matched = "not exactly one" if error.validator == "oneOf" else "none"
        return UserError(f"{_short(error.instance)} matches {matched} of the allowed forms: {described}", where)
    if error.validator == "enum":
        return UserError(f"{_short(error.instance)} is not one of {', '.join(map(repr, error.validator_value))}",
                         where)
    return UserError(error.message, where)


def _schema_summary(schema) -> str:
    if not isinstance(schema, dict):
        return repr(schema)
    parts = [str(schema.get("type", "value"))]
    parts += [f"{k} {schema[k]}" for k in ("pattern", "minimum", "maximum", "enum") if k in schema]
    return " ".join(parts)


def _json_type(value) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
