"""The last plan's refs: kept per pipeline name, bounded, and a damaged file is only a missed guess."""

from __future__ import annotations

from osbuild_oci.build import lastplan


def test_the_next_plan_of_a_name_gets_the_last_refs_of_that_name(tmp_path):
    assert lastplan.guess(tmp_path, "a") == []
    lastplan.remember(tmp_path, "a", ["trees:1", "outputs:2"])
    lastplan.remember(tmp_path, "b", ["trees:3"])
    lastplan.remember(tmp_path, "a", ["trees:4"])
    assert (lastplan.guess(tmp_path, "a"), lastplan.guess(tmp_path, "b")) == (["trees:4"], ["trees:3"])
    assert [p.name for p in tmp_path.iterdir()] == ["last-plans.json"], "replaced atomically, no temporary left"


def test_only_the_newest_names_are_kept(tmp_path):
    for n in range(lastplan.MAX_PIPELINES + 3):
        lastplan.remember(tmp_path, f"p{n}", [f"trees:{n}"])
    lastplan.remember(tmp_path, "p1", ["trees:again"])
    assert lastplan.guess(tmp_path, "p0") == [] and lastplan.guess(tmp_path, "p3") == []
    assert lastplan.guess(tmp_path, "p1") == ["trees:again"], "remembering a name again makes it the newest"
    assert lastplan.guess(tmp_path, f"p{lastplan.MAX_PIPELINES + 2}") != []


def test_a_damaged_file_is_no_guess(tmp_path):
    for text in ("{not json", "[1, 2]", '{"a": "trees:1", "b": [1]}'):
        (tmp_path / "last-plans.json").write_text(text)
        assert lastplan.guess(tmp_path, "a") == [] and lastplan.guess(tmp_path, "b") == []
    lastplan.remember(tmp_path, "a", ["trees:1"])
    assert lastplan.guess(tmp_path, "a") == ["trees:1"]
