"""Reading the host: mount points as the kernel writes them, and the limits containers get."""

from __future__ import annotations

import resource

from osbuild_oci.engine.host import decode_mount_field, ulimits


def test_mount_points_keep_non_ascii_and_decode_only_octal_escapes():
    assert decode_mount_field("/tmp/störe".encode()) == "/tmp/störe"
    assert decode_mount_field(b"/tmp/a\\040b\\011c\\134d") == "/tmp/a b\tc\\d"


def test_ulimits_are_the_hosts_own_hard_limits_capped():
    limits = {u["Name"]: u for u in ulimits()}
    for name, rlimit, cap in (("nofile", resource.RLIMIT_NOFILE, 65536), ("nproc", resource.RLIMIT_NPROC, 16384)):
        hard = resource.getrlimit(rlimit)[1]
        expected = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        assert limits[name]["Soft"] == limits[name]["Hard"] == expected
