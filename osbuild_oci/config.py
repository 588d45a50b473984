"""The user's settings file, `$XDG_CONFIG_HOME/osbuild-oci/config.toml` (else `~/.config/...`).

Only what a user sets once for every command lives here; a command-line
option always wins.  Keys: `store-max-size` (e.g. "20G"): every build ends
with `store gc --max-size` to it.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from .errors import UserError

KEYS = {"store-max-size": str}


def path() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "osbuild-oci" / "config.toml"


def load() -> dict:
    """The settings, checked: an unknown key or a wrong type is one line naming the file and the key."""
    file = path()
    try:
        settings = tomllib.loads(file.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise UserError(f"cannot read settings: {err}", str(file)) from None
    for key, value in settings.items():
        if key not in KEYS:
            raise UserError(f"unknown setting {key!r}; known: {', '.join(KEYS)}", str(file))
        if not isinstance(value, KEYS[key]):
            raise UserError(f"{key}: expected a string such as \"20G\", got {value!r}", str(file))
    return settings
