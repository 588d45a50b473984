"""The package cache's budget: trim keeps the most recently used .debs."""

from __future__ import annotations

import os

from osbuild_oci.store.packagecache import PackageCache, trim


def test_trim_removes_the_least_recently_used_until_within_budget(tmp_path):
    for age, name in enumerate(["newest", "middle", "oldest"]):
        path = tmp_path / f"{name}.deb"
        path.write_bytes(b"x" * 100)
        os.utime(path, (1_000_000 - age, 1_000_000 - age))
    assert trim(tmp_path, 250) == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["middle.deb", "newest.deb"]
    assert trim(tmp_path, 200) == 0, "exactly at the budget is within it"


def test_store_gc_budgets_the_cache_as_its_size_and_trims_what_is_over(tmp_path):
    cache = PackageCache(tmp_path / "packages")
    assert cache.size() == 0
    cache.trim(100)  # a cache not made yet is nothing to trim
    cache.directory.mkdir()
    for age, name in enumerate(["newest", "oldest"]):
        path = cache.directory / f"{name}.deb"
        path.write_bytes(b"x" * 100)
        os.utime(path, (1_000_000 - age, 1_000_000 - age))
    assert cache.size() == 200
    cache.trim(50)
    assert sorted(p.name for p in cache.directory.iterdir()) == ["newest.deb"]
