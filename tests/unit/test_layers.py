"""The layer budget's policy: which layers a tree at each depth is made of."""

from __future__ import annotations

import pytest

from osbuild_oci.store import layers


def test_a_pipeline_of_fewer_than_16_stages_keeps_a_layer_per_stage():
    assert layers.ends(1) == [1]
    assert layers.ends(15) == list(range(1, 16))


def test_a_completed_unit_becomes_one_layer_and_the_next_stages_stack_on_it():
    assert layers.ends(16) == [16]
    assert layers.ends(19) == [16, 17, 18, 19]
    assert layers.ends(48) == [16, 32, 48]
    assert layers.ends(64) == [64]
    assert layers.ends(100) == [64, 80, 96, 97, 98, 99, 100]
    assert layers.ends(500) == [256, 320, 384, 448, 464, 480, 496, 497, 498, 499, 500]


def test_everything_below_the_newest_top_unit_is_one_layer():
    top = layers.UNITS[-1]
    assert layers.ends(top) == [top]
    assert layers.ends(3 * top + 17) == [3 * top, 3 * top + 16, 3 * top + 17]


def test_no_tree_exceeds_the_budget_and_each_merges_once():
    assert layers.BASE_KEEP + layers.STAGE_LAYERS <= layers.BUDGET
    assert max(len(layers.ends(depth)) for depth in range(5000)) == layers.STAGE_LAYERS == 25
    for depth in range(5000):
        ends = layers.ends(depth)
        assert len(ends) <= layers.STAGE_LAYERS, depth
        assert ends == sorted(set(ends)) and (not ends or ends[-1] == depth), depth
        if depth:
            # The tree is its merge start's image plus one layer, and that image is one of its parent's
            # layers' trees (or the root): building it never needs a tree the parent does not name.
            start = layers.merge_start(depth)
            assert layers.ends(start) + [depth] == ends, depth
            assert start == 0 or start in layers.ends(depth - 1), depth


def test_only_a_base_too_deep_for_the_budget_is_flattened():
    assert layers.keeps_base(3)
    assert layers.keeps_base(layers.BASE_KEEP)
    assert not layers.keeps_base(layers.BASE_KEEP + 1)


def test_a_negative_depth_is_a_bug():
    with pytest.raises(ValueError):
        layers.ends(-1)
