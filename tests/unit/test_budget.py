"""gc's choice on a layer graph: least recently used first, never a tree whose layers a kept tree needs."""

from __future__ import annotations

import pytest

from osbuild_oci.store.budget import Candidate, choose
from osbuild_oci.units import parse_size
from osbuild_oci.engine.records import Layer, Records
from osbuild_oci.errors import UserError


def test_sizes_as_users_write_them():
    assert [parse_size(s, "--max-size") for s in ("20G", "512m", "1.5K", "1000", "2GiB", "3gb")] == \
        [20 * 2 ** 30, 512 * 2 ** 20, 1536, 1000, 2 * 2 ** 30, 3 * 2 ** 30]
    with pytest.raises(UserError, match="--max-size '20 apples'"):
        parse_size("20 apples", "--max-size")


def store() -> Records:
    """prefix <- a, prefix <- b; image t holds a's layer under a second name (--tag)."""
    layers = {"base": Layer("", 100), "pre": Layer("base", 10), "la": Layer("pre", 40), "lb": Layer("pre", 30)}
    images = {"P": ("pre", frozenset({"trees:p"})), "A": ("la", frozenset({"trees:a"})),
              "B": ("lb", frozenset({"trees:b", "mine:latest"}))}
    return Records(images, layers)


def test_least_recently_used_first_and_only_what_frees_bytes():
    records = store()
    p, a, b = Candidate("trees:p", "P", 1.0), Candidate("trees:a", "A", 2.0), Candidate("trees:b", "B", 3.0)
    chosen, size = choose(records, [b, a, p], 150)
    assert (chosen, size) == ([a], 140), "the prefix frees nothing while b needs it; a goes first"
    chosen, size = choose(records, [b, a, p], 0)
    assert (chosen, size) == ([a], 140), "b keeps another name, so it stays and so does the prefix"
    assert choose(records, [b, a, p], 1000) == ([], 180)
