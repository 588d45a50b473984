"""org.osbuild.keymap: vconsole.conf as osbuild writes it, and Debian's /etc/default/keyboard."""

from __future__ import annotations


def keymap(**options) -> dict:
    return {"name": "org.osbuild.keymap", "options": options}


def test_debians_keyboard_file_follows_the_keymap(on_debian):
    # keyboard-configuration wrote "de" (the debconf answer); the stage changes the XKB lines only.
    run = on_debian(keymap(keymap="us"))
    assert run("cat", "/etc/default/keyboard") == (
        '# KEYBOARD CONFIGURATION FILE\n\n# Consult the keyboard(5) manual page.\n\n'
        'XKBMODEL="pc105+inet"\nXKBLAYOUT="us"\nXKBVARIANT=""\nXKBOPTIONS="terminate:ctrl_alt_bksp"\n\n'
        'BACKSPACE="guess"\n')
    assert run("cat", "/etc/vconsole.conf") == "KEYMAP=us\n"


def test_x11_layouts_and_font(tiny):
    tree = tiny(keymap(keymap="de-latin1-nodeadkeys", font="eurlatgr", **{"x11-keymap": {"layouts": ["de", "us"]}}))
    assert tree["/etc/vconsole.conf"] == "KEYMAP=de-latin1-nodeadkeys\nFONT=eurlatgr\n"
    keyboard = tree["/etc/default/keyboard"]
    assert 'XKBLAYOUT="de,us"\nXKBVARIANT=""\n' in keyboard and 'BACKSPACE="guess"' in keyboard


def test_a_keymap_without_an_x11_layout_needs_one(fails):
    assert fails(keymap(keymap="no-such-map")).startswith(
        "keymap 'no-such-map' has no X11 layout in systemd's kbd-model-map")


def test_bad_options_are_refused(refused):
    refused("org.osbuild.keymap", {"keymap": "us\nXKBLAYOUT=x"}, "options.keymap")
    refused("org.osbuild.keymap", {"keymap": "us", "x11-keymap": {"layouts": ['us" ; x="']}},
            "options.x11-keymap.layouts[0]")
    refused("org.osbuild.keymap", {"keymap": "us", "x11-keymap": {"layouts": []}}, "options.x11-keymap.layouts")
    refused("org.osbuild.keymap", {"font": "eurlatgr"}, "options")
