"""The package cache's budget: trim keeps the most recently used .debs."""

from __future__ import annotations

import os

from osbuild_oci.packagecache import trim


def test_trim_removes_the_least_recently_used_until_within_budget(tmp_path):
    for age, name in enumerate(["newest", "middle", "oldest"]):
        path = tmp_path / f"{name}.deb"
        path.write_bytes(b"x" * 100)
        os.utime(path, (1_000_000 - age, 1_000_000 - age))
    assert trim(tmp_path, 250) == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["middle.deb", "newest.deb"]
    assert trim(tmp_path, 200) == 0, "exactly at the budget is within it"
