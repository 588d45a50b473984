"""A stage image's schema label is untrusted input: refused in one sentence, never fetched, never hangs."""

from __future__ import annotations

import json
import time

import pytest

from osbuild_oci.errors import UserError
from osbuild_oci.stages.image import LABEL_CAPABILITIES, LABEL_SCHEMA, StageImage, ALLOWED_CAPABILITIES


def image(schema, **labels) -> StageImage:
    raw = schema if isinstance(schema, str) else json.dumps(schema)
    return StageImage.from_labels("org.example.x", "reg.example/x:1", "0" * 64, {LABEL_SCHEMA: raw, **labels},
                                  "stages[0]")


@pytest.mark.parametrize("schema,reason", [
    ({"$ref": "file:///etc/passwd"}, "$ref 'file:///etc/passwd' points outside the label"),
    ({"properties": {"a": {"$ref": "http://127.0.0.1:9/x.json"}}}, "$ref 'http://127.0.0.1:9/x.json' points outside"),
    ([1, 2], "it is a JSON list, not a schema object"),
    ("not json", "Expecting value"),
    ('{"type": NaN}', "NaN is not JSON"),
    ({"type": "no-such-type"}, "'no-such-type' is not valid under any of the given schemas"),
])
def test_an_invalid_label_is_refused_when_read(schema, reason):
    with pytest.raises(UserError) as caught:
        image(schema)
    assert str(caught.value).startswith("stages[0]: stage image reg.example/x:1 has an invalid schema label: ")
    assert reason in str(caught.value)


@pytest.mark.parametrize("schema,reason", [
    ({"$ref": "#"}, "it refers to itself without end"),
    ({"$ref": "#/$defs/missing"}, "'/$defs/missing' does not exist"),
])
def test_a_label_that_breaks_only_when_used_is_refused_when_used(schema, reason):
    with pytest.raises(UserError) as caught:
        image(schema).check_options({}, "stages[0]")
    assert "has an invalid schema label: " in str(caught.value) and reason in str(caught.value)


@pytest.mark.parametrize("keyword", ["pattern", "patternProperties", "additionalProperties"])
def test_catastrophic_backtracking_is_bounded(keyword):
    evil = "^(a|aa)+$"
    schema = {"pattern": {"type": "object", "properties": {"v": {"type": "string", "pattern": evil}}},
              "patternProperties": {"type": "object", "patternProperties": {evil: {}}},
              "additionalProperties": {"type": "object", "patternProperties": {evil: {}},
                                       "additionalProperties": False}}[keyword]
    options = {"v": "a" * 40 + "!"} if keyword == "pattern" else {"a" * 40 + "!": 1}
    started = time.monotonic()
    with pytest.raises(UserError) as caught:
        image(schema).check_options(options, "stages[0]")
    assert time.monotonic() - started < 10
    assert "catastrophic backtracking" in str(caught.value)


def test_patterns_still_work():
    checked = image({"type": "object", "properties": {"v": {"pattern": "^[a-z]+$"}}, "additionalProperties": False})
    checked.check_options({"v": "abc"}, "stages[0]")
    with pytest.raises(UserError) as caught:
        checked.check_options({"v": "ABC"}, "stages[0]")
    assert str(caught.value) == ("stages[0].options.v: 'ABC' is not of the form allowed here: the stage's schema gives "
                                 "no description of it; see `osbuild-oci stages show NAME`")
    described = image({"type": "object", "properties": {"v": {"pattern": "^[a-z]+$", "description": "Lower case."}}})
    with pytest.raises(UserError) as caught:
        described.check_options({"v": "ABC"}, "stages[0]")
    assert str(caught.value) == "stages[0].options.v: 'ABC' is not of the form allowed here: Lower case."
    with pytest.raises(UserError) as caught:
        checked.check_options({"w": 1}, "stages[0]")
    assert str(caught.value) == "stages[0].options.w: unknown property; allowed here: v"


def test_capabilities_outside_the_allowlist_are_refused():
    greedy = image({}, **{LABEL_CAPABILITIES: "CAP_CHOWN sys_admin"})
    assert greedy.capabilities == ("CAP_CHOWN", "CAP_SYS_ADMIN")
    with pytest.raises(UserError) as caught:
        greedy.check_capabilities(frozenset(), "stages[0]")
    message = str(caught.value)
    assert message.startswith(f"stages[0]: stage image reg.example/x:1 asks for CAP_SYS_ADMIN in its {LABEL_CAPABILITIES}")
    assert message.endswith("pass --allow-capability CAP_SYS_ADMIN")
    greedy.check_capabilities(frozenset({"CAP_SYS_ADMIN"}), "stages[0]")
    assert "CAP_DAC_READ_SEARCH" not in ALLOWED_CAPABILITIES and "CAP_SYS_ADMIN" not in ALLOWED_CAPABILITIES


def test_an_assembler_gets_no_cap_mknod():
    """An assembler makes files for the host to take: a device node among them would be the host's to trust."""
    stage = image({}, **{LABEL_CAPABILITIES: "CAP_MKNOD"})
    stage.check_capabilities(frozenset(), "stages[0]")
    assembler = image({}, **{LABEL_CAPABILITIES: "CAP_MKNOD", "org.osbuild-oci.kind": "assembler"})
    with pytest.raises(UserError, match="asks for CAP_MKNOD .* outside the allowlist of an assembler"):
        assembler.check_capabilities(frozenset(), "assembler")
