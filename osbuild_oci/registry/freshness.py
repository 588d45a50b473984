"""The newest signature a store accepted for each reference, so that an older one is refused (no rollback).

A signature binds a tag to a digest, and whoever can push can point the tag back
at an older manifest that is still validly signed, undoing security updates.  So
every signature osbuild-oci writes carries, in its signed payload's `optional`,
the time it was made and, for a tree, the date of the Release file its packages
came from (docs/decisions/026-signatures-are-refused-when-older-than-what-was-accepted.md).  A store remembers the
newest of both it accepted per reference in `STORE/signatures.json`, written
atomically and only by a command holding the store's lock, and a signature
older than either is refused, naming both dates.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

SIGNED = "org.osbuild-oci.signed"
RELEASE = "org.osbuild-oci.release-date"
# What each date means, for a refusal.
_WHAT = {SIGNED: "it was signed {found}, before the signature of {newest} this store already accepted for it",
         RELEASE: "its packages are of {found}, older than those of {newest} this store already accepted for it"}
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
FILE = "signatures.json"


def dates(optional: object) -> dict[str, str]:
    """The well-formed freshness dates of a signed payload's `optional` (none for cosign's own or older ones)."""
    if not isinstance(optional, dict):
        return {}
    return {key: value for key in (SIGNED, RELEASE)
            if isinstance(value := optional.get(key), str) and _TIME.fullmatch(value)}


def newest(candidates: list[dict[str, str]]) -> dict[str, str]:
    """Of several valid signatures' dates, the freshest signature's."""
    return max(candidates, key=lambda found: (found.get(SIGNED, ""), found.get(RELEASE, "")), default={})


class Accepted:
    """What one store accepted; a record it cannot read counts as none (it only ever narrows what is taken)."""

    def __init__(self, store: Path):
        self.path = store / FILE
        try:
            records = json.loads(self.path.read_text())
        except (OSError, ValueError):
            records = {}
        self._records = {ref: dates(found) for ref, found in records.items()} if isinstance(records, dict) else {}

    def refusal(self, reference: str, found: dict[str, str]) -> str:
        """Why a signature with these dates would roll reference back; "" when it would not.

        Once a date is recorded for reference, a signature without that date cannot prove it is newer.
        """
        for key, recorded in self._records.get(reference, {}).items():
            if found.get(key, "") < recorded:
                return _WHAT[key].format(found=found.get(key) or "at an unknown time", newest=recorded) + \
                    " (a rollback?)"
        return ""

    def accept(self, reference: str, found: dict[str, str]) -> None:
        """Remember the dates of a signature just taken, where they are newer than what is recorded."""
        merged = {**self._records.get(reference, {}),
                  **{key: value for key, value in found.items()
                     if value > self._records.get(reference, {}).get(key, "")}}
        if not merged or merged == self._records.get(reference):
            return
        records = {**self._records, reference: merged}
        tmp = self.path.with_name(f".{FILE}.{os.getpid()}")
        tmp.write_text(json.dumps(records, indent=1, sort_keys=True))
        os.replace(tmp, self.path)
        self._records = records
