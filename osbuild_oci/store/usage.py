"""When each tree of a store was last used, so that gc removes the least recently used first.

One small JSON file per store (`STORE/usage.json`: tree id -> Unix time of
its last use).  Only a command holding the store's lock writes it, and it is
replaced atomically, so a killed command leaves the old or the new record,
never half of one.  A tree without a record counts from its creation.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterable


class Usage:
    """The last-use records of one store."""

    def __init__(self, store: Path):
        self.path = store / "usage.json"
        try:
            records = json.loads(self.path.read_text())
        except (OSError, ValueError):
            records = {}
        self._records = {k: float(v) for k, v in records.items() if isinstance(v, (int, float))} \
            if isinstance(records, dict) else {}

    def last_used(self, tree_id: str) -> float | None:
        return self._records.get(tree_id)

    def touch(self, tree_ids: Iterable[str]) -> None:
        """Record a use of these trees now."""
        now = time.time()
        self._write({**self._records, **{tree_id: now for tree_id in tree_ids}})

    def forget(self, tree_ids: Iterable[str]) -> None:
        gone = set(tree_ids)
        self._write({k: v for k, v in self._records.items() if k not in gone})

    def _write(self, records: dict[str, float]) -> None:
        if records == self._records:
            return
        tmp = self.path.with_name(f".usage.{os.getpid()}.json")
        tmp.write_text(json.dumps(records, sort_keys=True))
        os.replace(tmp, self.path)
        self._records = records
