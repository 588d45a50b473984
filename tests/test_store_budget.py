"""A store in bounds: last use recorded, gc removes the least recently used trees, shared layers stay."""

from __future__ import annotations

import json

import pytest

from helpers import MINBASE, TREES, osbuild, run_build, tree_run, tree_tags

pytestmark = pytest.mark.slow


def script(text: str) -> dict:
    return {"name": "org.osbuild.script", "options": {"script": text}}


PREFIX = script("yes prefix | head -c 1000000 > /prefix")


def pipeline(letter: str) -> dict:
    return {"name": f"budget-{letter}", "base": MINBASE,
            "stages": [PREFIX, script(f"yes {letter} | head -c 2000000 > /own")]}


def gc(store, max_size: int):
    """`store gc` with a package cache of the test's own: the budget counts the user's package cache too."""
    return osbuild("store", "gc", "--store", store, "--max-size", str(max_size),
                   env={"XDG_CACHE_HOME": str(store.parent / "cache")})


def listing(store) -> dict[str, dict]:
    proc = osbuild("store", "list", "--store", store, "--json")
    assert proc.returncode == 0, proc.stderr
    return {row["tree"]: row for row in json.loads(proc.stdout)}


def base_tree(store) -> str:
    """The adopted base's tree id: the one tree no stage made."""
    return next(tree for tree, row in listing(store).items() if row["stage"] == "")


def test_gc_removes_the_least_recently_used_and_keeps_what_kept_trees_need(tmp_path, stage_images):
    store = tmp_path / "store"
    built = {}
    for letter in "abc":
        built[letter] = run_build(pipeline(letter), store, tmp_path / f"o-{letter}")
        assert built[letter].returncode == 0, built[letter].stderr
    prefix = built["a"].of("stage-done")[0]["id"]
    before = listing(store)
    touched = run_build(pipeline("a"), store, tmp_path / "o-again")
    assert touched.ran == []
    after = listing(store)
    assert after[built["a"].tree]["last_used"] > before[built["a"].tree]["last_used"], "a cache hit is a use"
    assert after[built["b"].tree]["last_used"] == before[built["b"].tree]["last_used"]
    assert 2_000_000 <= after[built["b"].tree]["size"] < 2_100_000, "the size of its own layer"

    layers = json.loads(osbuild("store", "du", "--store", store, "--json").stdout)["layers"]
    trimmed = gc(store, layers - 1_000_000)
    assert trimmed.returncode == 0, trimmed.stderr
    assert tree_tags(store) == {TREES + t for t in (base_tree(store), prefix, built["a"].tree, built["c"].tree)}, \
        trimmed.stdout
    for letter in "ac":
        assert tree_run(store, built[letter].image, "sh", "-c", "head -c 4 /own; head -c 6 /prefix") == \
            f"{letter}\n{letter}\nprefix"
    du = json.loads(osbuild("store", "du", "--store", store, "--json").stdout)
    assert layers - 2_100_000 < du["layers"] <= layers - 2_000_000 and du["disk"] > du["layers"]

    # A build on a's tree uses a's tree but not the prefix, which becomes older than both.
    on_a = run_build({"name": "on-a", "base": built["a"].tree, "stages": [script("yes e | head -c 1500000 > /e")]},
                     store, tmp_path / "o-e")
    assert on_a.returncode == 0, on_a.stderr
    size = json.loads(osbuild("store", "du", "--store", store, "--json").stdout)["layers"]
    second = gc(store, size - 2_500_000)
    assert second.returncode == 0, second.stderr
    assert [line.split(":")[1] for line in second.stdout.splitlines() if line.startswith("removed ")] == \
        [built["c"].tree, on_a.tree], "least recently used first; a tree others build on frees nothing"
    left = listing(store)
    assert prefix in left and built["a"].tree in left, "the shared prefix stays while a kept tree needs it"


def test_a_budget_makes_every_build_end_with_gc_keeping_its_own_trees(tmp_path, stage_images):
    store = tmp_path / "store"
    for letter in "ab":
        assert run_build(pipeline(letter), store, tmp_path / f"o-{letter}").returncode == 0
    config = tmp_path / "config" / "osbuild-oci"
    config.mkdir(parents=True)
    (config / "config.toml").write_text('store-max-size = "1k"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    again = run_build(pipeline("b"), store, tmp_path / "o-again", env=env)
    assert again.returncode == 0, again.stderr
    [trimmed] = again.of("store-trimmed")
    assert trimmed["max_size"] == 1024 and trimmed["size"] > 1024
    assert [name.split(":")[1] for name in trimmed["removed"]] == [run_build(pipeline("a"), store, tmp_path / "x",
                                                                              "--store-max-size", "100G").tree]
    flag = run_build(pipeline("b"), store, tmp_path / "o-flag", "--store-max-size", "nonsense")
    assert flag.returncode == 2 and "--store-max-size 'nonsense'" in flag.stderr


def test_an_output_copy_a_kill_left_half_written_is_removed_by_the_next_command(tmp_path, stage_images):
    """A build keeps its output as files, copied under a dot name and then renamed: a kill between the two
    leaves the dot name, which the next command on the store removes, and which is never a hit."""
    store = tmp_path / "store"
    tarred = {**pipeline("a"), "assembler": {"name": "org.osbuild.tar", "options": {"filename": "a.tar"}}}
    first = run_build(tarred, store, tmp_path / "o-first")
    assert first.returncode == 0, first.stderr
    [done] = first.of("assembler-done")
    kept = store / "outputs" / done["id"]
    assert (kept / "a.tar").read_bytes() == (tmp_path / "o-first" / "a.tar").read_bytes()
    partial = kept.with_name(f".{done['id']}")
    kept.rename(partial)
    assert osbuild("store", "list", "--store", store).returncode == 0
    assert not partial.exists()
    again = run_build(tarred, store, tmp_path / "o-again")
    assert again.returncode == 0 and [e["cached"] for e in again.of("assembler-done")] == [False], again.stderr
    assert (kept / "a.tar").read_bytes() == (tmp_path / "o-first" / "a.tar").read_bytes()


def test_gc_removes_a_cached_output_by_its_last_use_like_a_tree(tmp_path, stage_images):
    """Cached assembler outputs are in the store's budget: the least recently used goes first, tree or output."""
    store = tmp_path / "store"
    tarred = {**pipeline("a"), "assembler": {"name": "org.osbuild.tar", "options": {"filename": "a.tar"}}}
    first = run_build(tarred, store, tmp_path / "o-tar")
    assert first.returncode == 0, first.stderr
    [done] = first.of("assembler-done")
    for letter in "ab":  # a's tree is used again after its output, and b's is newer still
        assert run_build(pipeline(letter), store, tmp_path / f"o-{letter}").returncode == 0
    output = f"localhost/osbuild-oci/outputs:{done['id']}"
    du = json.loads(osbuild("store", "du", "--store", store, "--json").stdout)
    assert du["outputs"] > 0, "the output's files count in the budget"
    trimmed = gc(store, du["layers"] + du["outputs"] - 1)
    assert trimmed.returncode == 0, trimmed.stderr
    assert [line for line in trimmed.stdout.splitlines() if line.startswith("removed ")] == [f"removed {output}"]
    assert first.tree in listing(store), "the tree it was made of stays"
    again = run_build(tarred, store, tmp_path / "o-again")
    assert again.returncode == 0 and [e["cached"] for e in again.of("assembler-done")] == [False], again.stderr
