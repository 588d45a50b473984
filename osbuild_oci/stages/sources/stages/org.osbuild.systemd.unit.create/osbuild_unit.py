"""systemd unit files and drop-ins from osbuild's options: sections of KEY=VALUE lines.

Shared by org.osbuild.systemd.unit.create and org.osbuild.systemd.unit (whose image
is built FROM this one).  osbuild writes them with configparser; this writes the
same lines, except booleans as yes/no (systemd reads both) and the key osbuild's
schema names ListenFifo as systemd's ListenFIFO.
"""
from __future__ import annotations

import os

import osbuild_stage

# osbuild's option name -> systemd's key, where they differ.
KEYS = {"ListenFifo": "ListenFIFO"}


def value_text(value: object) -> str:
    """An Environment item {"key", "value"} is quoted whole, as systemd reads "KEY=VALUE"."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return f'"{value["key"]}={value["value"]}"'
    return str(value)


def unit_text(config: dict) -> str:
    """The file: each section, each key once per item of a list, a blank line after each section."""
    lines = []
    for section, settings in config.items():
        lines.append(f"[{section}]")
        for key, value in settings.items():
            items = value if isinstance(value, list) else [value]
            lines += [f"{KEYS.get(key, key)}={value_text(item)}" for item in items]
        lines.append("")
    return "\n".join(lines) + "\n"


def write_unit(tree: str, path: str, config: dict) -> None:
    """Write the unit or drop-in at path inside the tree, its folders made as needed."""
    place = osbuild_stage.in_tree(tree, path)
    os.makedirs(os.path.dirname(place), mode=0o755, exist_ok=True)
    with open(place, "w", encoding="utf-8") as f:
        f.write(unit_text(config))
