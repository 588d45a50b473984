"""org.osbuild.chrony: time sources in Debian's /etc/chrony/chrony.conf, read back by chronyd."""

from __future__ import annotations


def test_chronyd_uses_the_servers_instead_of_debians_pool(on_debian):
    run = on_debian({"name": "org.osbuild.chrony", "options": {
        "timeservers": ["ntp1.example.org"],
        "servers": [{"hostname": "10.0.0.1", "minpoll": 4, "maxpoll": 8, "prefer": True},
                    {"hostname": "ntp2.example.org", "iburst": False}],
        "leapsectz": "",
        "refclocks": [{"driver": {"name": "PHC", "path": "/dev/ptp0", "pin": 1, "extpps": True}, "poll": 2},
                      {"driver": {"name": "SHM", "segment": 0, "perm": "0640"}, "offset": 0.5}]}})
    # chronyd's own reading of its configuration (-p prints it and exits).
    config = run("chronyd", "-p").splitlines()
    assert config[:5] == ["server ntp1.example.org iburst", "server 10.0.0.1 prefer iburst minpoll 4 maxpoll 8",
                          "server ntp2.example.org", "refclock PHC /dev/ptp0:extpps,pin=1 poll 2",
                          "refclock SHM 0:perm=0640 offset 0.5"]
    assert not [line for line in config if line.split()[0] in ("pool", "peer", "leapsectz")]
    # Debian's other sources stay.
    assert "sourcedir /etc/chrony/sources.d" in config


def test_leapsectz_replaces_debians(on_debian):
    run = on_debian({"name": "org.osbuild.chrony", "options": {"leapsectz": "right/Europe/Berlin"}})
    config = run("chronyd", "-p").splitlines()
    assert [line for line in config if line.startswith(("leapsectz", "pool"))] == ["leapsectz right/Europe/Berlin"]


def test_a_tree_without_chrony_fails_clearly(fails):
    assert fails({"name": "org.osbuild.chrony", "options": {"timeservers": ["ntp.example.org"]}}) == \
        "the tree has no /etc/chrony/chrony.conf; install chrony with org.osbuild.apt before this stage"


def test_bad_options_are_refused(refused):
    refused("org.osbuild.chrony", {"timeservers": ["ntp.example.org iburst\nallow all"]}, "options.timeservers[0]")
    refused("org.osbuild.chrony", {"servers": [{"hostname": "a", "minpoll": 30}]}, "options.servers[0].minpoll")
    refused("org.osbuild.chrony", {"refclocks": [{"driver": {"name": "PPS", "device": "/dev/../etc/x"}}]},
            "options.refclocks[0].driver.device")
    refused("org.osbuild.chrony", {"pools": ["pool.ntp.org"]}, "options.pools")
    refused("org.osbuild.chrony", {}, "options")
