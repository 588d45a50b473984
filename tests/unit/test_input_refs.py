"""The inputs a stage's options name, found wherever its schema puts them and refused in one line when they could
leave the context or the image; the pipeline's `sources` as the schema takes them."""

from __future__ import annotations

import json
import re

import pytest

from osbuild_oci.errors import UserError
from osbuild_oci.pipeline.inputs import From, InputRef, input_refs
from osbuild_oci.pipeline.model import Source, parse

DIGEST = "sha256:" + "ab" * 32


def test_inputs_are_found_wherever_the_options_put_them_in_document_order():
    options = {"items": [{"from": "context", "source": "./app//etc/", "destination": "/etc/app/"},
                         {"from": "image", "image": "registry.example/ci/tool:1", "source": "/usr/bin/tool"}],
               "debs": [{"from": "source", "source": DIGEST}],
               "other": {"from": "tree", "source": "/x"}, "secret": {"secret": "key"}}
    assert input_refs(options, "stages[1].options") == [
        InputRef(From.CONTEXT, "app/etc", "stages[1].options.items[0]"),
        InputRef(From.IMAGE, "usr/bin/tool", "stages[1].options.items[1]", "registry.example/ci/tool:1"),
        InputRef(From.SOURCE, DIGEST, "stages[1].options.debs[0]")]


def test_keys_and_mount_places_name_each_input_once():
    ref = InputRef(From.IMAGE, "usr/bin/tool", "w", "127.0.0.1:5000/ci/tool@sha256:" + "0" * 64)
    assert ref.key == "image:127.0.0.1:5000/ci/tool@sha256:" + "0" * 64 + ":/usr/bin/tool"
    assert ref.mounted == "images/127.0.0.1%3A5000%2Fci%2Ftool%40sha256%3A" + "0" * 64 + "/usr/bin/tool"
    assert InputRef(From.SOURCE, DIGEST, "w").mounted == "sources/sha256/" + "ab" * 32
    assert InputRef(From.CONTEXT, "app/etc", "w").key == "context:app/etc"


def test_the_stage_finds_each_input_where_the_orchestrator_mounts_it():
    from helpers import load_program
    stage = load_program("stages", "org.osbuild-oci.copy", "stage").osbuild_stage
    for options in ({"from": "context", "source": "./app//etc/"}, {"from": "source", "source": DIGEST},
                    {"from": "image", "image": "localhost/ci/tool:latest", "source": "/usr/bin/tool"}):
        ref = input_refs({"x": options}, "o")[0]
        with pytest.raises(stage.StageError, match=f"is not mounted at /run/osbuild/inputs/{re.escape(ref.mounted)};"):
            stage.input_path(options)


@pytest.mark.parametrize("options, where, message", [
    ({"from": "context", "source": "../etc/passwd"}, "o.x.source",
     "'../etc/passwd' is no path inside the build context"),
    ({"from": "context", "source": "app/../../x"}, "o.x.source", "is no path inside the build context"),
    ({"from": "context", "source": "/etc/passwd"}, "o.x.source",
     "'/etc/passwd' is absolute; a context path is relative"),
    ({"from": "context", "source": "./"}, "o.x.source", "is no path inside the build context"),
    ({"from": "context", "source": 7}, "o.x.source", "expected a path (string) inside the build context, got int"),
    ({"from": "source", "source": "sha256:abc"}, "o.x.source", "a source is named by its digest"),
    ({"from": "image", "image": "Not A Ref", "source": "/usr/bin/tool"}, "o.x.image", "is no image reference"),
    ({"from": "image", "image": "-v=/:/host", "source": "/x"}, "o.x.image", "is no image reference"),
    ({"from": "image", "image": "localhost/tool", "source": "usr/bin/tool"}, "o.x.source",
     "a path in an image is absolute"),
    ({"from": "image", "image": "localhost/tool", "source": "/usr/../../etc"}, "o.x.source", "is no path in an image"),
])
def test_paths_that_leave_the_context_or_the_image_are_refused(options, where, message):
    with pytest.raises(UserError) as caught:
        input_refs({"x": options}, "o")
    assert caught.value.where == where
    assert message in caught.value.message


def pipeline(sources) -> str:
    return json.dumps({"name": "p", "stages": [], "sources": sources})


def test_sources_map_a_digest_to_urls_or_a_context_file():
    parsed = parse(pipeline({DIGEST: "https://example.org/app.deb", "sha256:" + "cd" * 32: ["http://a/x", "http://b/x"],
                             "sha256:" + "ef" * 32: {"context": "debs/app.deb"}})).sources
    assert parsed == {DIGEST: Source(("https://example.org/app.deb",)),
                      "sha256:" + "cd" * 32: Source(("http://a/x", "http://b/x")),
                      "sha256:" + "ef" * 32: Source(context="debs/app.deb")}


@pytest.mark.parametrize("sources, message", [
    ({"md5:abc": "http://a/x"}, "sources: 'md5:abc' is not of the form allowed here: a source's digest"),
    ({DIGEST: "file:///etc/passwd"},
     f"sources.{DIGEST}: 'file:///etc/passwd' is not of the form allowed here: an http:// or https:// URL"),
    ({DIGEST: {"context": "../x"}}, f"sources.{DIGEST}.context: '../x' is not of the form allowed here: a path"),
])
def test_bad_sources_are_refused_naming_the_json_path(sources, message):
    with pytest.raises(UserError) as caught:
        parse(pipeline(sources))
    assert str(caught.value).startswith(message)


def test_any_options_give_inputs_or_one_line_refusal():
    """Generated options, inputs hidden anywhere with any values: a list of checked inputs, or a UserError."""
    from hypothesis import HealthCheck, given, settings, strategies as st
    leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.sampled_from(
        ["context", "source", "image", "..", "/", "a/../b", DIGEST, "localhost/x", "/usr/bin/x", "\0", "./"])
    options = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["from", "source", "image", "items", "x"]), inner, max_size=4), max_leaves=20)

    @settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(options)
    def check(value):
        try:
            found = input_refs(value, "o")
        except UserError as err:
            assert "\n" not in str(err) and err.where
            return
        for ref in found:
            assert ".." not in ref.source.split("/") and not ref.source.startswith("/")
    check()
