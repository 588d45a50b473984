"""org.osbuild.users' ssh keys: osbuild's keys and key, appended to the user's authorized_keys."""

from __future__ import annotations

KEYS = [f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{n}xJdNlMEl6F0pZ0Wj0mH3jQKx8bT alice-{n}@example" for n in "abcd"]


def test_keys_are_added_with_the_users_owner_and_modes(on_debian):
    run = on_debian(
        {"name": "org.osbuild.users", "options": {"users": {"alice": {"keys": KEYS[:2], "key": KEYS[2]}}}},
        # A later run adds to the file; a key it already has is not repeated.
        {"name": "org.osbuild.users", "options": {"users": {"alice": {"keys": [KEYS[1], KEYS[3]]}}}})
    assert run("cat", "/home/alice/.ssh/authorized_keys") == "".join(key + "\n" for key in KEYS)
    assert run("stat", "-c", "%a %U %G", "/home/alice/.ssh", "/home/alice/.ssh/authorized_keys") == \
        "700 alice alice\n600 alice alice\n"


def test_bad_keys_are_refused(refused):
    refused("org.osbuild.users", {"users": {"alice": {"keys": [KEYS[0] + "\nssh-rsa AAAA evil"]}}},
            "options.users.alice.keys[0]")
    refused("org.osbuild.users", {"users": {"alice": {"keys": KEYS[0]}}}, "options.users.alice.keys")
