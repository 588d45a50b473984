"""org.osbuild.sysctld and org.osbuild.modprobe: files the booted system's sysctl and kmod read."""

from __future__ import annotations

SYSCTL = {"name": "org.osbuild.sysctld", "options": {"filename": "50-router.conf", "config": [
    {"key": "net.ipv4.ip_forward", "value": "1"}, {"key": "net.ipv4.conf.*.rp_filter", "value": "2"},
    {"key": "-net.ipv4.conf.lo.rp_filter"}, {"key": "kernel.domainname", "value": ""}]}}
MODPROBE = {"name": "org.osbuild.modprobe", "options": {"filename": "disallow.conf", "commands": [
    {"command": "blacklist", "modulename": "floppy"},
    {"command": "install", "modulename": "cramfs", "cmdline": "/bin/false"}]}}
SYSCTL_FILE = ("net.ipv4.ip_forward = 1\nnet.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.lo.rp_filter\n"
               "kernel.domainname = \n")
MODPROBE_FILE = "blacklist floppy\ninstall cramfs /bin/false\n"


def test_files_as_osbuild_writes_them(tiny):
    tree = tiny(SYSCTL, MODPROBE)
    assert tree["/usr/lib/sysctl.d/50-router.conf"] == SYSCTL_FILE
    assert tree["/usr/lib/modprobe.d/disallow.conf"] == MODPROBE_FILE


def test_debians_own_tools_read_them(on_debian):
    run = on_debian(SYSCTL, MODPROBE)
    # systemd-sysctl's own view of every sysctl.d file it reads at boot.
    merged = run("env", "SYSTEMD_COLORS=0", "SYSTEMD_URLIFY=0", "systemd-analyze", "cat-config", "sysctl.d")
    assert f"# /usr/lib/sysctl.d/50-router.conf\n{SYSCTL_FILE}" in merged
    config = run("modprobe", "--showconfig").splitlines()
    assert "blacklist floppy" in config and "install cramfs /bin/false" in config


def test_a_tree_whose_lib_is_no_link_gets_its_modprobe_d(tiny):
    unmerged = {"name": "org.osbuild.mkdir", "options": {"paths": [{"path": "/lib", "mode": 0o755}]}}
    tree = tiny(unmerged, MODPROBE)
    assert tree["/lib/modprobe.d/disallow.conf"] == MODPROBE_FILE
    assert "/usr/lib/modprobe.d/disallow.conf" not in tree.files


def test_bad_options_are_refused(refused):
    refused("org.osbuild.sysctld", {"filename": "../../etc/x.conf", "config": [{"key": "a", "value": "1"}]},
            "options.filename")
    refused("org.osbuild.sysctld", {"filename": "x.conf", "config": [{"key": "a", "value": "1\nkernel.x = 2"}]},
            "options.config[0].value")
    refused("org.osbuild.sysctld", {"filename": "x.conf", "config": [{"key": "net.ipv4.ip_forward"}]},
            "options.config[0].key")
    refused("org.osbuild.sysctld", {"filename": "x.conf", "config": []}, "options.config")
    refused("org.osbuild.modprobe", {"filename": "x.conf", "commands": [{"command": "options", "modulename": "a"}]},
            "options.commands[0].command")
    refused("org.osbuild.modprobe", {"filename": "x.conf", "commands": [
        {"command": "install", "modulename": "a", "cmdline": "/bin/true\ninstall b /bin/sh"}]},
        "options.commands[0].cmdline")
    refused("org.osbuild.modprobe", {"filename": "x.conf", "commands": [{"command": "install", "modulename": "a"}]},
            "options.commands[0]")
