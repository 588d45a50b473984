"""The user's settings file, for what a user or a CI job sets once rather than on every command line.

`$OSBUILD_OCI_CONFIG`, else `$XDG_CONFIG_HOME/osbuild-oci/config.toml`
(`~/.config/...`).  Keys:
- `store-max-size = "20G"`: every build ends with `store gc --max-size` to it;
- `trust-keys = ["team.pub", ...]`: paths relative to the file.
A command-line option always wins: one `--trust-key` replaces the file's list
rather than adding to it, so a build never trusts more than it says.
"""

from __future__ import annotations

import os
import pwd
import sys
import tomllib
from pathlib import Path

from ..errors import UserError

KEYS = {"store-max-size": (str, 'a string such as "20G"'),
        "trust-keys": (list, 'an array of file names, e.g. trust-keys = ["team.pub"]')}


def path() -> Path:
    if os.environ.get("OSBUILD_OCI_CONFIG"):
        return Path(os.environ["OSBUILD_OCI_CONFIG"])
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "osbuild-oci" / "config.toml"


def load() -> dict:
    """The settings, checked: an unknown key or a wrong type is one line naming the file and the key."""
    file = path()
    try:
        settings = tomllib.loads(file.read_text())
    except FileNotFoundError:
        if os.environ.get("OSBUILD_OCI_CONFIG"):
            raise UserError(f"OSBUILD_OCI_CONFIG names {file}, which does not exist") from None
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise UserError(f"cannot read settings: {err}", str(file)) from None
    except RecursionError:
        raise UserError("cannot read settings: nested without end", str(file)) from None
    for key, value in settings.items():
        if key not in KEYS:
            raise UserError(f"unknown setting {key!r}; known: {', '.join(KEYS)}", str(file))
        kind, example = KEYS[key]
        if not isinstance(value, kind) or (kind is list and not all(isinstance(v, str) for v in value)):
            raise UserError(f"{key}: expected {example}, got {value!r}", str(file))
    return settings


def trust_keys(given: "list[Path] | tuple[Path, ...]") -> list[Path]:
    """The --trust-key files, or the settings file's `trust-keys` when none is given."""
    if given:
        return list(given)
    keys = load().get("trust-keys", [])
    if not keys:
        _warn_if_left_behind()
    return [path().parent / key for key in keys]


def _warn_if_left_behind() -> None:
    """Say so when sudo changed HOME away from a settings file that names trust keys: without it, this
    command trusts whatever a registry serves, which the user set out to prevent."""
    user = os.environ.get("SUDO_USER")
    if not user or os.environ.get("OSBUILD_OCI_CONFIG") or path().exists():
        return
    try:
        theirs = Path(pwd.getpwnam(user).pw_dir) / ".config" / "osbuild-oci" / "config.toml"
        named = tomllib.loads(theirs.read_text()).get("trust-keys")
    except (KeyError, OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return
    if named:
        print(f"warning: {theirs} of {user} names trust-keys, but under sudo this command reads {path()}, "
              f"which does not exist, so no signature is checked; run it as {user}, or pass "
              f"OSBUILD_OCI_CONFIG={theirs} or --trust-key", file=sys.stderr)
