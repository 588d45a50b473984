"""What a user reads when the pipeline file is wrong: one sentence naming the JSON path and the fix."""

from __future__ import annotations

import json

import pytest

from osbuild_oci.errors import UserError
from osbuild_oci.pipeline.model import parse

CASES = [
    ('{"name": "x",\n "stages": [\n  {"name" "a"}]}', "invalid JSON: Expecting ':' delimiter at line 3, column 11"),
    ("[]", "(top level): expected object, got array"),
    ({"stages": []}, "'name' is a required property; add it"),
    ({"name": "x", "stages": "org.osbuild.noop"}, "stages: expected array, got string 'org.osbuild.noop'"),
    ({"name": "x", "stages": [], "stagse": []},
     "stagse: unknown property; allowed here: arch, assembler, base, name, source_epoch, sources, stages"),
    ({"name": "x", "stages": [], "source_epoch": "2024"}, "source_epoch: expected integer, got string '2024'"),
    ({"name": "x", "stages": [], "source_epoch": -1}, "source_epoch: -1 is less than the minimum of 0"),
    ({"name": "x", "stages": [{"options": {}}]}, "stages[0]: 'name' is a required property; add it"),
    ({"name": "x", "stages": [{"name": "Org Osbuild"}]},
     "stages[0].name: 'Org Osbuild' is not of the form allowed here: Stage name such as org.osbuild.apt"),
    ({"name": "x", "stages": [{"name": "a", "options": []}]}, "stages[0].options: expected object, got array []"),
    ({"name": "x", "stages": [], "assembler": {"options": {}}}, "assembler: 'name' is a required property; add it"),
]


@pytest.mark.parametrize("doc,expected", CASES, ids=[str(i) for i in range(len(CASES))])
def test_a_bad_pipeline_is_one_sentence_with_its_json_path(doc, expected):
    with pytest.raises(UserError) as caught:
        parse(doc if isinstance(doc, str) else json.dumps(doc))
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_good_pipeline_keeps_its_order_and_paths():
    pipeline = parse(json.dumps({"name": "p", "base": "localhost/x", "stages": [
        {"name": "a", "options": {"k": 1}}, {"name": "b", "image": "reg.example/ns/b@sha256:" + "0" * 64}],
        "assembler": {"name": "c"}}))
    assert [(s.name, s.where) for s in pipeline.stages] == [("a", "stages[0]"), ("b", "stages[1]")]
    assert pipeline.stages[0].options == {"k": 1}
    assert pipeline.stages[1].image.endswith("0" * 64)
    assert (pipeline.assembler.name, pipeline.assembler.where) == ("c", "assembler")
    assert pipeline.base == "localhost/x"


@pytest.mark.parametrize("text,expected", [
    ("[" * 5000 + "]" * 5000, "nested deeper than 64 levels"),
    ('{"name": "x", "stages": [{"name": "a", "options": {"o": ' + "[" * 3000 + "]" * 3000 + "}}]}",
     "nested deeper than 64 levels"),
    ('{"name": "x", "stages": [{"name": "a", "options": {"o": ' + "[" * 100 + "]" * 100 + "}}]}",
     "stages[0].options.o" + "[0]" * 60 + ": nested deeper than 64 levels"),
    ('{"name": "x", "stages": [], "n": NaN}', "NaN is not a JSON number (RFC 8259)"),
    ('{"name": "x", "stages": [{"name": "a", "options": {"v": -Infinity}}]}', "-Infinity is not a JSON number"),
])
def test_hostile_json_is_one_sentence(text, expected):
    with pytest.raises(UserError) as caught:
        parse(text)
    assert expected in str(caught.value)


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    from osbuild_oci.pipeline.model import load
    path = tmp_path / "p.json"
    path.write_bytes(b'{"name": "x",\n "stages": [], "x": "\xff"}')
    with pytest.raises(UserError) as caught:
        load(path)
    assert str(caught.value) == ("not UTF-8 text: byte 0xff at line 2; save the file as UTF-8 "
                                 "(JSON is UTF-8, RFC 8259)")


def test_every_pattern_of_the_projects_schemas_says_in_words_what_it_allows():
    """A pattern error shows the schema's description, never the regular expression, so each needs one."""
    import json

    from helpers import REPO
    undescribed = []
    for path in [REPO / "osbuild_oci/pipeline/schema.json", *REPO.glob("osbuild_oci/stages/sources/*/*/schema.json")]:
        todo = [(json.loads(path.read_text()), path.parent.name)]
        while todo:
            node, where = todo.pop()
            if isinstance(node, dict):
                if "pattern" in node and not str(node.get("description", "")).strip():
                    undescribed.append(where)
                todo.extend((value, f"{where}/{key}") for key, value in node.items())
            elif isinstance(node, list):
                todo.extend((value, f"{where}[{i}]") for i, value in enumerate(node))
    assert undescribed == []
