"""The trees and output a pipeline's last plan in a store looked up, so that the next plan asks for them early.

Planning asks podman about the stage images, then (once their digests give the
stage ids) about the trees and the output: two podman processes, 0.15 s each,
most of a fully cached build.  With the last plan's answers as a guess, the
first question carries the trees and output too, and when nothing changed the
second is never asked.  A wrong guess costs nothing but a few refs inspected:
podman's answer about each ref is a fact at that moment, whichever ids the new
plan turns out to have.

One small JSON file per store (`STORE/last-plans.json`: pipeline name -> refs),
replaced atomically; the newest MAX_PIPELINES names are kept.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

MAX_PIPELINES = 64


def _path(store: Path) -> Path:
    return store / "last-plans.json"


def _read(store: Path) -> dict[str, list[str]]:
    try:
        found = json.loads(_path(store).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {name: refs for name, refs in found.items()
            if isinstance(refs, list) and all(isinstance(ref, str) for ref in refs)}


def guess(store: Path, name: str) -> list[str]:
    """The refs the last plan of this pipeline name looked up in this store; none the first time."""
    return _read(store).get(name, [])


def remember(store: Path, name: str, refs: list[str]) -> None:
    """Keep this plan's refs for the next plan of the same name; a store that cannot be written keeps none."""
    plans = _read(store)
    if plans.get(name) == refs:
        return
    plans.pop(name, None)
    plans[name] = refs
    kept = dict(list(plans.items())[-MAX_PIPELINES:])
    tmp = _path(store).with_name(f".last-plans.{os.getpid()}.json")
    try:
        tmp.write_text(json.dumps(kept))
        os.replace(tmp, _path(store))
    except OSError:
        tmp.unlink(missing_ok=True)
