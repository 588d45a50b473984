"""org.osbuild.sshd.config: a drop-in Debian's sshd reads before its own sshd_config."""

from __future__ import annotations

DROPIN = "/etc/ssh/sshd_config.d/60-osbuild.conf"


def sshd(**config) -> dict:
    return {"name": "org.osbuild.sshd.config", "options": {"config": config}}


def test_the_booted_sshd_uses_the_options(on_debian):
    run = on_debian(sshd(PasswordAuthentication=False, PermitRootLogin="prohibit-password"),
                    sshd(ClientAliveInterval=30, ChallengeResponseAuthentication=True, PermitRootLogin=False))
    # The second run updated the first's drop-in: all four options, PermitRootLogin as last set.
    assert run("cat", DROPIN) == ("# Written by osbuild-oci's org.osbuild.sshd.config.\nPasswordAuthentication no\n"
                                  "PermitRootLogin no\nClientAliveInterval 30\nChallengeResponseAuthentication yes\n")
    # sshd's own view (-T) once the host keys a first boot makes are there.
    effective = run("sh", "-c", "mkdir -p /run/sshd && ssh-keygen -A -q && sshd -T").splitlines()
    assert {"passwordauthentication no", "permitrootlogin no", "clientaliveinterval 30"} <= set(effective)
    # Debian's sshd_config says KbdInteractiveAuthentication no after its Include: the drop-in wins.
    assert "kbdinteractiveauthentication yes" in effective


def test_a_tree_without_openssh_gets_the_drop_in_for_later(tiny):
    tree = tiny(sshd(PasswordAuthentication=True))
    assert tree[DROPIN].endswith("\nPasswordAuthentication yes\n")


def test_a_sshd_config_without_the_include_fails_clearly(fails):
    config = {"name": "org.osbuild-oci.files", "options": {"files": [
        {"path": "/etc/ssh/sshd_config", "content": "PasswordAuthentication yes\n"}]}}
    assert fails(config, sshd(PasswordAuthentication=False)).startswith(
        "the tree's /etc/ssh/sshd_config does not include /etc/ssh/sshd_config.d/*.conf")


def test_bad_options_are_refused(refused):
    refused("org.osbuild.sshd.config", {"config": {"PermitRootLogin": "yes\nAllowUsers x"}},
            "options.config.PermitRootLogin")
    refused("org.osbuild.sshd.config", {"config": {"PasswordAuthentication": "no"}},
            "options.config.PasswordAuthentication")
    refused("org.osbuild.sshd.config", {"config": {"AllowUsers": "root"}}, "options.config.AllowUsers")
    refused("org.osbuild.sshd.config", {}, "options")
