"""org.osbuild-oci.debconf: answers preseeded before org.osbuild.apt change what a package installs."""

from __future__ import annotations

KEYMAP = "keyboard-configuration/xkb-keymap"


def test_a_preseeded_answer_decides_what_the_package_writes(on_debian):
    # The Debian tree answered keyboard-configuration's layout question "de" before installing it.
    run = on_debian()
    assert 'XKBLAYOUT="de"\n' in run("cat", "/etc/default/keyboard")
    # Marked as seen (the '*'), so a later dpkg-reconfigure does not ask again.
    assert f"* {KEYMAP}: de" in run("debconf-show", "keyboard-configuration")
    # debconf's backup of its database differs on every build: not in the layer.
    assert run("ls", "/var/cache/debconf").split() == ["config.dat", "passwords.dat", "templates.dat"]


def test_answers_of_every_type_reach_the_database(on_debian):
    selections = [
        {"package": "keyboard-configuration", "question": "keyboard-configuration/ctrl_alt_bksp", "type": "boolean",
         "value": "true"},
        {"package": "locales", "question": "locales/locales_to_be_generated", "type": "multiselect",
         "value": "de_DE.UTF-8 UTF-8, fr_FR.UTF-8 UTF-8"},
        {"package": "keyboard-configuration", "question": "keyboard-configuration/variantcode", "type": "string",
         "value": "nodeadkeys"},
        {"package": "keyboard-configuration", "question": KEYMAP, "type": "seen", "value": "false"}]
    run = on_debian({"name": "org.osbuild-oci.debconf", "options": {"selections": selections}})
    shown = run("debconf-show", "keyboard-configuration", "locales").splitlines()
    assert "* keyboard-configuration/ctrl_alt_bksp: true" in shown
    assert "* locales/locales_to_be_generated: de_DE.UTF-8 UTF-8, fr_FR.UTF-8 UTF-8" in shown
    assert "* keyboard-configuration/variantcode: nodeadkeys" in shown
    assert f"  {KEYMAP}: de" in shown, "seen false: no longer marked as asked, the answer kept"


def test_bad_selections_are_refused(refused):
    good = {"package": "tzdata", "question": "tzdata/Areas", "type": "select", "value": "Europe"}
    refused("org.osbuild-oci.debconf", {"selections": [{**good, "value": "Europe\ntzdata tzdata/Zones/Europe"}]},
            "options.selections[0].value")
    refused("org.osbuild-oci.debconf", {"selections": [{**good, "package": "tz data"}]},
            "options.selections[0].package")
    refused("org.osbuild-oci.debconf", {"selections": [{**good, "type": "boolean", "value": "yes"}]},
            "options.selections[0].value")
    refused("org.osbuild-oci.debconf", {"selections": []}, "options.selections")
