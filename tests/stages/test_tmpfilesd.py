"""org.osbuild.tmpfilesd: a tmpfiles.d file systemd-tmpfiles applies at boot."""

from __future__ import annotations

TMPFILES = {"name": "org.osbuild.tmpfilesd", "options": {"filename": "app.conf", "config": [
    {"type": "d", "path": "/run/app", "mode": "0750", "user": "root", "group": "root", "age": "10d"},
    {"type": "L+", "path": "/run/app/current", "argument": "/etc/hostname"},
    {"type": "f", "path": "/run/app/greeting", "mode": "0644", "argument": "hello world"}]}}


def test_the_file_as_osbuild_writes_it(tiny):
    assert tiny(TMPFILES)["/usr/lib/tmpfiles.d/app.conf"] == (
        "d /run/app 0750 root root 10d\n"
        "L+ /run/app/current - - - - /etc/hostname\n"
        "f /run/app/greeting 0644 - - - hello world\n")


def test_systemd_tmpfiles_applies_it(on_debian):
    run = on_debian(TMPFILES)
    made = run("sh", "-c", "systemd-tmpfiles --create app.conf && stat -c %a /run/app && readlink /run/app/current "
                           "&& cat /run/app/greeting")
    assert made == "750\n/etc/hostname\nhello world"


def test_bad_options_are_refused(refused):
    refused("org.osbuild.tmpfilesd", {"filename": "a.conf", "config": [{"type": "y", "path": "/run/x"}]},
            "options.config[0].type")
    refused("org.osbuild.tmpfilesd", {"filename": "a.conf", "config": [{"type": "d", "path": "/run/x /etc"}]},
            "options.config[0].path")
    refused("org.osbuild.tmpfilesd", {"filename": "a.conf", "config": [{"type": "d", "path": "/x", "mode": "755"}]},
            "options.config[0].mode")
    refused("org.osbuild.tmpfilesd", {"filename": "a/b.conf", "config": [{"type": "d", "path": "/x"}]},
            "options.filename")
