"""Checking a document against a JSON schema: bounded in time, told as one sentence, remembered.

Schemas come from stage image labels, which anyone can write: a pattern with
catastrophic backtracking must not hang the build, so patterns run on the
`regex` engine with a time limit instead of `re`.

A check that passed is remembered (a hash of the schema and the document, in the
user's private runtime directory): the same pipeline checked again, as every
rebuild does, needs neither jsonschema's 0.2 s import nor the check.  Only
passes are remembered; a failure is checked, and told, every time.
"""

from __future__ import annotations

import json

from ..ids import check_proof
from ..engine.host import private_dir, runtime_dir
from ..errors import UserError
from ..lazy import lazy_import

jsonschema = lazy_import("jsonschema")
regex = lazy_import("regex")
# Hashes kept of passed checks; past twice this many the oldest half is forgotten.
REMEMBERED = 4096

PATTERN_SECONDS = 1.0


def _search(pattern: str, text: str) -> bool:
    try:
        return regex.search(pattern, text, timeout=PATTERN_SECONDS) is not None
    except TimeoutError:
        raise TimeoutError(f"its pattern {pattern[:60]!r} took over {PATTERN_SECONDS:g} s on {text[:40]!r} "
                           "(catastrophic backtracking)") from None
    except regex.error as err:
        raise jsonschema.SchemaError(f"pattern {pattern[:60]!r} is not a regular expression: {err}") from None


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} is not of the form allowed here: {_in_words(schema)}")


def _pattern_properties(validator, properties, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in properties.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator, allowed, instance, schema):
    if not validator.is_type(instance, "object"):
        return
    known, patterns = schema.get("properties", {}), list(schema.get("patternProperties", {}))
    extras = sorted(key for key in instance if key not in known and not any(_search(p, key) for p in patterns))
    if validator.is_type(allowed, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], allowed, path=extra)
    elif not allowed and extras:
        yield jsonschema.ValidationError(f"Additional properties are not allowed ({', '.join(map(repr, extras))} "
                                         f"{'was' if len(extras) == 1 else 'were'} unexpected)")


def bounded_validator(schema: dict | bool) -> jsonschema.protocols.Validator:
    """A validator for the schema's own draft whose patterns cannot run away."""
    base = jsonschema.validators.validator_for(schema)
    cls = jsonschema.validators.extend(base, {"pattern": _pattern, "patternProperties": _pattern_properties,
                                                 "additionalProperties": _additional_properties})
    return cls(schema)


def _proofs_file():
    return private_dir(runtime_dir() / "validated") / "passed"


def known_valid(kind: str, schema, document) -> bool:
    """Whether this exact document passed this exact schema's check before."""
    try:
        return check_proof(kind, schema, document) in _proofs_file().read_text().split()
    except OSError:
        return False


def remember_valid(kind: str, schema, document) -> None:
    """Record a passed check (appended: concurrent builds on other stores write whole lines)."""
    proofs = _proofs_file()
    with open(proofs, "a") as out:
        out.write(check_proof(kind, schema, document) + "\n")
    lines = proofs.read_text().split()
    if len(lines) > 2 * REMEMBERED:
        proofs.write_text("\n".join(lines[-REMEMBERED:]) + "\n")


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
    if error.validator == "const":
        why = f": {schema['description']}" if "description" in schema else ""
        return UserError(f"must be {json.dumps(error.validator_value)}, not {json.dumps(error.instance)[:60]}{why}",
                         where)
    if error.validator == "enum":
        return UserError(f"{_short(error.instance)} is not one of {', '.join(map(repr, error.validator_value))}",
                         where)
    if error.validator == "pattern":
        return UserError(f"{_short(error.instance)} is not of the form allowed here: {_in_words(schema)}", where)
    if error.validator == "not":
        refused = error.validator_value if isinstance(error.validator_value, dict) else {}
        if "description" not in refused and "description" in schema:
            # A rule across fields (this option only with that one) whose schema says it whole.
            return UserError(schema["description"], where)
        return UserError(f"{_short(error.instance)} is refused here: {_in_words(refused)}", where)
    if error.validator in ("contains", "minContains", "maxContains") and "description" in schema:
        # A rule over a list's items (exactly one item of a kind) that says itself why.
        return UserError(schema["description"], where)
    return UserError(error.message, where)


def _in_words(schema: dict) -> str:
    """What a pattern allows, as its schema says it (a regular expression is no answer for a user)."""
    description = schema.get("description")
    if isinstance(description, str) and description.strip():
        return description.strip()
    return "the stage's schema gives no description of it; see `osbuild-oci stages show NAME`"


def _schema_summary(schema) -> str:
    if not isinstance(schema, dict):
        return repr(schema)
    parts = [str(schema.get("type", "value"))]
    parts += [f"{k} {schema[k]}" for k in ("minimum", "maximum", "enum") if k in schema]
    parts += [f"of the form: {_in_words(schema)}"] if "pattern" in schema else []
    return " ".join(parts)


def _json_type(value) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
