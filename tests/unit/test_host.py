"""Reading the host: mount points as the kernel writes them, and the limits containers get."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

from osbuild_oci.engine.host import decode_mount_field


def test_mount_points_keep_non_ascii_and_decode_only_octal_escapes():
    assert decode_mount_field("/tmp/störe".encode()) == "/tmp/störe"
    assert decode_mount_field(b"/tmp/a\\040b\\011c\\134d") == "/tmp/a b\tc\\d"


def limits_under(nofile: int, nproc: int) -> dict[str, list[int]]:
    """What ulimits() gives in a process whose hard limits are these (prlimit lowers them for it alone)."""
    code = "import json; from osbuild_oci.engine.host import ulimits; print(json.dumps(ulimits()))"
    out = subprocess.run(["prlimit", f"--nofile={nofile}:{nofile}", f"--nproc={nproc}:{nproc}", sys.executable, "-c",
                          code], capture_output=True, text=True, check=True).stdout
    return {u["Name"]: [u["Soft"], u["Hard"]] for u in json.loads(out)}


def test_ulimits_are_the_processs_own_hard_limits():
    assert limits_under(3000, 2000) == {"nofile": [3000, 3000], "nproc": [2000, 2000]}


def test_ulimits_are_capped_where_runc_cannot_set_more():
    """nproc above 16384 is capped (a process cannot raise its own hard limit, so nofile's cap, the same code,
    cannot be shown on hosts whose hard limit is below 65536, as these VMs' 20000 is)."""
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    assert hard == resource.RLIM_INFINITY or hard >= 20000, f"nproc's hard limit {hard} is too low to show the cap"
    assert limits_under(3000, 20000)["nproc"] == [16384, 16384]
