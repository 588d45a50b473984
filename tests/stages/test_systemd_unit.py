"""org.osbuild.systemd.unit.create and org.osbuild.systemd.unit: units and drop-ins written from options."""

from __future__ import annotations

SERVICE = {"name": "org.osbuild.systemd.unit.create", "options": {"filename": "hello.service", "config": {
    "Unit": {"Description": "Say hello", "After": ["network.target", "time-sync.target"], "DefaultDependencies": True},
    "Service": {"Type": "oneshot", "RemainAfterExit": True, "ExecStart": ["/bin/echo hello", "/bin/echo again"],
                "Environment": [{"key": "GREETING", "value": "hello world"}],
                "StandardOutput": "journal+console"},
    "Install": {"WantedBy": ["multi-user.target"]}}}}
SERVICE_FILE = """[Unit]
Description=Say hello
After=network.target
After=time-sync.target
DefaultDependencies=yes

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/echo hello
ExecStart=/bin/echo again
Environment="GREETING=hello world"
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target

"""
DROPIN = {"name": "org.osbuild.systemd.unit", "options": {"unit": "hello.service", "dropin": "10-env.conf", "config": {
    "Service": {"Environment": [{"key": "EXTRA", "value": "1"}]}, "Unit": {"ConditionPathExists": "!/etc/no-hello"}}}}
SOCKET = {"name": "org.osbuild.systemd.unit.create", "options": {
    "filename": "hello.socket", "unit-path": "etc",
    "config": {"Socket": {"ListenFifo": "/run/hello.fifo", "SocketMode": "0600", "RemoveOnStop": True}}}}


def test_units_and_dropins_where_osbuild_puts_them(tiny):
    user_dropin = {"name": "org.osbuild.systemd.unit", "options": {
        "unit": "pipewire.service", "dropin": "env.conf", "unit-type": "global",
        "config": {"Service": {"Environment": "A=1 B=2"}}}}
    tree = tiny(SERVICE, DROPIN, SOCKET, user_dropin)
    assert tree["/usr/lib/systemd/system/hello.service"] == SERVICE_FILE
    assert tree["/usr/lib/systemd/system/hello.service.d/10-env.conf"] == \
        '[Service]\nEnvironment="EXTRA=1"\n\n[Unit]\nConditionPathExists=!/etc/no-hello\n\n'
    # unit-path etc; osbuild's ListenFifo is systemd's ListenFIFO.
    assert tree["/etc/systemd/system/hello.socket"] == \
        "[Socket]\nListenFIFO=/run/hello.fifo\nSocketMode=0600\nRemoveOnStop=yes\n\n"
    assert tree["/usr/lib/systemd/user/pipewire.service.d/env.conf"] == "[Service]\nEnvironment=A=1 B=2\n\n"


def test_systemd_reads_and_enables_them(on_debian):
    enable = {"name": "org.osbuild.systemd", "options": {"enabled_services": ["hello.service"]}}
    run = on_debian(SERVICE, DROPIN, SOCKET, enable)
    assert run("systemctl", "is-enabled", "hello.service") == "enabled\n"
    # systemd's own checks of the unit, its drop-in and the socket: nothing unknown, nothing wrong.
    assert run("sh", "-c", "systemd-analyze verify hello.service hello.socket 2>&1") == ""
    merged = run("env", "SYSTEMD_COLORS=0", "SYSTEMD_URLIFY=0", "systemd-analyze", "cat-config",
                 "systemd/system/hello.service")
    assert "# /usr/lib/systemd/system/hello.service.d/10-env.conf\n" in merged


def test_the_section_must_match_the_unit_type(refused):
    refused("org.osbuild.systemd.unit.create", {"filename": "data.mount", "config": SERVICE["options"]["config"]},
            "options.config")
    refused("org.osbuild.systemd.unit.create", {"filename": "hello.service", "config": {
        "Unit": {}, "Service": {}, "Install": {}, "Mount": {"What": "/dev/vdb", "Where": "/data"}}}, "options.config")


def test_bad_options_are_refused(refused):
    service = SERVICE["options"]["config"]
    refused("org.osbuild.systemd.unit.create", {"filename": "../hello.service", "config": service}, "options.filename")
    refused("org.osbuild.systemd.unit.create", {"filename": "hello.service", "config": {
        **service, "Service": {"ExecStart": ["/bin/true\nExecStartPost=/bin/sh"]}}},
        "options.config.Service.ExecStart[0]")
    refused("org.osbuild.systemd.unit.create", {"filename": "hello.service", "config": {
        **service, "Service": {"Environment": [{"key": "A", "value": 'x" "B=y'}]}}},
        "options.config.Service.Environment[0].value")
    refused("org.osbuild.systemd.unit.create", {"filename": "hello.service", "config": {
        **service, "Unit": {"Wants": ["a.service b.service"]}}}, "options.config.Unit.Wants[0]")
    refused("org.osbuild.systemd.unit", {"unit": "hello.socket", "dropin": "a.conf", "config": {}}, "options.unit")
    refused("org.osbuild.systemd.unit", {"unit": "hello.service", "dropin": "a.conf", "config": {
        "Service": {"ExecStart": "/bin/sh"}}}, "options.config.Service.ExecStart")
