"""The build report for CI: one self-contained HTML page (`--report`) and a JUnit file (`--junit`), written from
the events the build told its monitor and a few facts read from the store and the output at its end.

A CI system shows the JUnit file's test cases (one per stage, one for the assembler) and keeps the page as an
artifact: the stage timeline (ran or cached, and where from), each tree's layer size, the cache misses with
their reasons, the output's size and digest, and the SBOM's package count with a link to the SPDX file.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

from ..units import human
from .monitor import Monitor, emitting


@emitting
class Recorder(Monitor):
    """Tells every event to another monitor and keeps it, with the seconds since the recorder began."""

    def __init__(self, inner: Monitor):
        self.inner, self.started, self.events = inner, time.monotonic(), []

    def emit(self, event: str, fields: dict) -> None:
        self.events.append({"event": event, "at": round(time.monotonic() - self.started, 3), **fields})
        getattr(self.inner, event.replace("-", "_"))(**fields)

    def output(self, fd: int, chunk: bytes) -> None:
        self.inner.output(fd, chunk)

    def busy(self, label: str) -> None:
        self.inner.busy(label)

    def of(self, event: str) -> list[dict]:
        return [e for e in self.events if e["event"] == event]


@dataclass
class Facts:
    """What the events do not say: read from the store and -o when the build ends."""

    layers: dict[str, int] = field(default_factory=dict)  # tree id -> bytes of its own layer
    files: list[tuple[str, int, str]] = field(default_factory=list)  # (name, bytes, sha256) in -o
    sbom: tuple[Path, int] | None = None  # the SPDX file in -o, its package count


def facts_of_output(output: Path | None, files: list[str]) -> tuple[list[tuple[str, int, str]], tuple | None]:
    found, sbom = [], None
    for name in files:
        path = output / name
        with open(path, "rb") as data:
            found.append((name, path.stat().st_size, hashlib.file_digest(data, "sha256").hexdigest()))
        if name.endswith(".spdx.json"):
            document = json.loads(path.read_text())
            sbom = (path, sum(1 for p in document.get("packages", []) if p.get("externalRefs")))
    return found, sbom


def _stages(recorder: Recorder) -> list[dict]:
    """One row a stage: started, ended, how (built, cached from where, failed)."""
    starts = {e["index"]: e for e in recorder.of("stage-start")}
    rows = []
    for end in recorder.of("stage-done") + recorder.of("stage-failed"):
        start = starts[end["index"]]
        state = "failed" if end["event"] == "stage-failed" else f"cached ({end['source']})" if end["cached"] \
            else "built"
        rows.append({"index": end["index"], "stage": end["stage"], "id": end["id"], "start": start["at"],
                     "seconds": end["seconds"], "state": state, "error": end.get("error")})
    return sorted(rows, key=lambda row: row["index"])


def write_html(recorder: Recorder, facts: Facts, path: Path) -> None:
    rows = _stages(recorder)
    ended = recorder.of("build-done") or recorder.of("build-failed")
    name = (recorder.of("pipeline-start") or [{"name": "(not started)"}])[0]["name"]
    total = max([r["start"] + r["seconds"] for r in rows] + [recorder.events[-1]["at"] if recorder.events else 0])
    verdict = "built" if recorder.of("build-done") else f"failed: {ended[0]['error']}" if ended else "unfinished"
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>osbuild-oci: {e(name)}</title><style>"
           "body{font:14px sans-serif;margin:2em}table{border-collapse:collapse}td,th{padding:2px 8px;"
           "border-bottom:1px solid #ddd;text-align:left}.bar{height:14px;background:#4a8}.cached{background:#bbb}"
           ".failed{background:#d44}.lane{width:400px;background:#f4f4f4}</style></head><body>",
           f"<h1>{e(name)}</h1><p id='verdict'>{e(verdict)} in {total:.1f} s</p>", "<h2>Stages</h2>",
           "<table id='timeline'><tr><th>#</th><th>stage</th><th>how</th><th>seconds</th><th>layer</th>"
           "<th>timeline</th></tr>"]
    for r in rows:
        kind = "failed" if r["state"] == "failed" else "cached" if r["state"].startswith("cached") else ""
        left, width = 100 * r["start"] / (total or 1), max(0.5, 100 * r["seconds"] / (total or 1))
        size = facts.layers.get(r["id"])
        out.append(f"<tr class='stage'><td>{r['index'] + 1}</td><td>{e(r['stage'])}</td><td>{e(r['state'])}</td>"
                   f"<td>{r['seconds']:.1f}</td><td>{human(size) if size is not None else '-'}</td>"
                   f"<td class='lane'><div class='bar {kind}' style='margin-left:{left:.1f}%;width:{width:.1f}%'>"
                   "</div></td></tr>")
    out.append("</table><h2>Cache</h2><ul id='cache'>")
    out += [f"<li>miss: {e(x['image'])} not trusted: {e(x['reason'])}</li>" for x in recorder.of("cache-untrusted")]
    out += [f"<li>unavailable: {e(x['registry'])}: {e(x['error'])}</li>" for x in recorder.of("cache-unavailable")]
    out += [f"<li>hit: {e(r['stage'])} {e(r['state'])}</li>" for r in rows if r["state"].startswith("cached")]
    out += [f"<li>miss: {e(r['stage'])} was in no store or registry, built here</li>"
            for r in rows if r["state"] == "built"]
    out.append("</ul><h2>Output</h2><table id='output'><tr><th>file</th><th>size</th><th>sha256</th></tr>")
    out += [f"<tr><td>{e(n)}</td><td>{human(s)}</td><td><code>{d}</code></td></tr>" for n, s, d in facts.files]
    out.append("</table>")
    if facts.sbom is not None:
        link = os.path.relpath(facts.sbom[0], path.parent)
        out.append(f"<p id='sbom'>SBOM: {facts.sbom[1]} packages, <a href='{e(link)}'>{e(facts.sbom[0].name)}</a></p>")
    out.append("</body></html>\n")
    path.write_text("\n".join(out), encoding="utf-8")


def write_junit(recorder: Recorder, path: Path) -> None:
    """One test case a stage (and the assembler): a failed stage is a failure, a cached one passes."""
    rows = _stages(recorder)
    name = (recorder.of("pipeline-start") or [{"name": "osbuild-oci"}])[0]["name"]
    suite = ElementTree.Element("testsuite", name=name, tests=str(len(rows)),
                                failures=str(sum(r["state"] == "failed" for r in rows)))
    for r in rows:
        case = ElementTree.SubElement(suite, "testcase", classname=name, name=f"{r['index'] + 1:02d} {r['stage']}",
                                      time=f"{r['seconds']:.3f}")
        if r["state"] == "failed":
            ElementTree.SubElement(case, "failure", message=r["error"].splitlines()[0]).text = r["error"]
        else:
            ElementTree.SubElement(case, "system-out").text = f"{r['state']}; tree {r['id']}"
    for done in recorder.of("assembler-done"):
        case = ElementTree.SubElement(suite, "testcase", classname=name, name=f"assembler {done['assembler']}",
                                      time=f"{done['seconds']:.3f}")
        ElementTree.SubElement(case, "system-out").text = f"{'cached' if done['cached'] else 'built'}; " \
                                                          f"{', '.join(done['files'])}"
    suite.set("tests", str(len(suite)))
    ElementTree.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
