"""How sizes and times are read from and written for people: `20G` in, `1.5 GiB` and local dates out."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from .errors import UserError

_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str, option: str) -> int:
    """`20G`, `512M`, `1.5T`, `1000000`: binary units (G is 2^30 bytes), as BuildKit and du read them."""
    match = _SIZE.match(text)
    if not match:
        raise UserError(f"{option} {text!r}: give a size such as 20G, 512M or a number of bytes")
    return int(float(match[1]) * 1024 ** " kmgt".index(match[2].lower() or " "))


def human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def local_time(stamp: float | None) -> str:
    """A Unix time as this machine's local date and minute ("-" for none)."""
    return datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M") if stamp else "-"


def iso_time(stamp: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC, for JSON (None for none)."""
    return None if not stamp else datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")
