"""The new stages as an ordinary user: one small pipeline on Debian's minbase, built rootless.

The user, its subordinate ids, storage and stage images are test_rootless's `rootless`
fixture.  Every stage here writes as root inside the user's namespace, users' keys
are given to the tree's alice and debconf runs the tree's own program in a chroot.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from helpers import MINBASE
from test_rootless import rootless  # noqa: F401  (the fixture: the user, its checkout and stage images)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="makes its own unprivileged user: run the suite as root")]

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGr5Zq0W4oJeF6bXx5JdNlMEl6F0pZ0Wj0mH3jQKx8bT alice@example"
PIPELINE = {"name": "rootless-stages", "base": MINBASE, "stages": [
    {"name": "org.osbuild.users", "options": {"users": {"alice": {"uid": 1500, "keys": [KEY]}}}},
    {"name": "org.osbuild-oci.debconf", "options": {"selections": [
        {"package": "tzdata", "question": "tzdata/Areas", "type": "select", "value": "Europe"}]}},
    {"name": "org.osbuild.sshd.config", "options": {"config": {"PasswordAuthentication": False}}},
    {"name": "org.osbuild.sysctld", "options": {"filename": "50-forward.conf",
                                                "config": [{"key": "net.ipv4.ip_forward", "value": "1"}]}},
    {"name": "org.osbuild.systemd.unit.create", "options": {"filename": "hello.service", "config": {
        "Unit": {"Description": "Hello"}, "Service": {"ExecStart": ["/bin/echo hello"]},
        "Install": {"WantedBy": ["multi-user.target"]}}}},
    {"name": "org.osbuild.keymap", "options": {"keymap": "de"}},
    {"name": "org.osbuild.kernel-cmdline", "options": {"kernel_opts": "console=ttyS0"}}]}


def test_the_stages_work_for_an_ordinary_user(rootless):  # noqa: F811
    store, pipeline = rootless.home / "stages-store", rootless.home / "stages.json"
    rootless.remove(store)
    pipeline.write_text(json.dumps(PIPELINE))
    shutil.chown(pipeline, rootless.name)
    try:
        built = rootless.build(pipeline, store)
        assert built["proc"].returncode == 0, built["proc"].stderr[-3000:]
        assert built["ran"] == [stage["name"] for stage in PIPELINE["stages"]]
        script = ("stat -c '%a %U %G' /home/alice/.ssh /home/alice/.ssh/authorized_keys; "
                  "cat /home/alice/.ssh/authorized_keys; debconf-show tzdata | grep Areas; "
                  "stat -c '%U %a' /etc/ssh/sshd_config.d/60-osbuild.conf /usr/lib/sysctl.d/50-forward.conf "
                  "/usr/lib/systemd/system/hello.service /etc/default/keyboard /etc/kernel/cmdline")
        shown = rootless.podman(store, "run", "--rm", "--network=none", f"localhost/osbuild-oci/trees:{built['tree']}",
                                "sh", "-c", script).stdout.splitlines()
        assert shown == ["700 alice alice", "600 alice alice", KEY, "* tzdata/Areas: Europe",
                         *["root 644"] * 5]
    finally:
        rootless.run("osbuild-oci", "store", "delete", "--store", store, check=False)
        rootless.remove(store)
        pipeline.unlink()
