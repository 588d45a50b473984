"""The user's settings file, for what CI jobs should not repeat on every command line.

`$OSBUILD_OCI_CONFIG`, else `$XDG_CONFIG_HOME/osbuild-oci/config.toml`
(`~/.config/...`).  It holds `trust-keys = ["team.pub", ...]`, paths relative
to the file.  A command line that names any `--trust-key` replaces the file's
list rather than adding to it, so a build never trusts more than it says.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from .errors import UserError

KNOWN = {"trust-keys"}


def path() -> Path:
    if os.environ.get("OSBUILD_OCI_CONFIG"):
        return Path(os.environ["OSBUILD_OCI_CONFIG"])
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "osbuild-oci" / "config.toml"


def trust_keys(given: list[Path]) -> list[Path]:
    """The --trust-key files, or the config file's `trust-keys` when none is given."""
    if given:
        return given
    file = path()
    try:
        doc = tomllib.loads(file.read_text())
    except FileNotFoundError:
        if os.environ.get("OSBUILD_OCI_CONFIG"):
            raise UserError(f"OSBUILD_OCI_CONFIG names {file}, which does not exist") from None
        return []
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise UserError(f"{file}: not a readable TOML file: {err}") from None
    unknown = sorted(set(doc) - KNOWN)
    if unknown:
        raise UserError(f"{file}: unknown setting {unknown[0]!r}; known: {', '.join(sorted(KNOWN))}")
    keys = doc.get("trust-keys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise UserError(f"{file}: trust-keys: expected an array of file names, e.g. trust-keys = [\"team.pub\"]")
    return [file.parent / k for k in keys]
