"""What a build tells the world: one method per event, for scripts (JSON lines) and for people.

Both monitors implement every method of `Monitor`, so a new event cannot be
reported to one audience and forgotten for the other.  JSON events go to
stdout, one object per line; progress and the stages' own output go to
stderr, so stdout stays machine-readable.  Text from users (pipeline names,
stage names, registry errors) is printed literally, never as markup.
"""

from __future__ import annotations

import abc
import inspect
import json
import os
import sys
import threading
import time

from ..units import human

# Control characters in users' text (names, registry errors) are shown, not obeyed by the terminal.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7f] if c != 0x09}
# Plain ANSI styles, not rich: rich costs 0.15 s to import, a third of a cached build.
_SGR = {"bold": "1", "dim": "2", "cyan": "36", "green": "32", "yellow": "33", "bold green": "1;32"}


def _color() -> bool:
    return sys.stderr.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _render(parts: tuple[str | tuple[str, str], ...], color: bool) -> str:
    """One line from plain and (text, style) parts; users' text shown literally."""
    out = []
    for part in parts:
        text, style = (part, None) if isinstance(part, str) else part
        text = text.translate(_CONTROL)
        out.append(f"\x1b[{_SGR[style]}m{text}\x1b[0m" if style and color else text)
    return "".join(out)


class Monitor(abc.ABC):
    """The events of a build, in the order they happen."""

    def output(self, fd: int, chunk: bytes) -> None:
        """A stage's own stdout/stderr, passed through to stderr as it arrives."""
        sys.stderr.buffer.write(chunk)
        sys.stderr.flush()

    def busy(self, label: str) -> None:
        """A step that may take a while began (a pull, a push); only a person at a terminal is told."""

    @abc.abstractmethod
    def pipeline_start(self, name: str, stages: int) -> None: ...

    @abc.abstractmethod
    def stage_start(self, stage: str, index: int, total: int, id: str) -> None: ...

    @abc.abstractmethod
    def stage_done(self, stage: str, index: int, total: int, id: str, cached: bool, source: str,
                   seconds: float, phases: dict[str, float]) -> None: ...

    @abc.abstractmethod
    def assembler_start(self, assembler: str) -> None: ...

    @abc.abstractmethod
    def assembler_done(self, assembler: str, seconds: float, output: str, files: list[str], id: str, cached: bool,
                       source: str) -> None: ...

    @abc.abstractmethod
    def cache_unavailable(self, registry: str, error: str) -> None: ...

    @abc.abstractmethod
    def cache_untrusted(self, image: str, reason: str) -> None:
        """A cached tree no trusted key signed: a miss, and the stage runs here.

        Both audiences get the warning line on stderr: a planted tree is news even to a script.
        """
        print(_render(((f"cache {image} not trusted, building the stage here:", "yellow"), f" {reason}"), _color()),
              file=sys.stderr, flush=True)

    @abc.abstractmethod
    def tree_pushed(self, stage: str, id: str, image: str, seconds: float) -> None: ...

    @abc.abstractmethod
    def output_pushed(self, assembler: str, id: str, image: str, seconds: float) -> None: ...

    @abc.abstractmethod
    def stage_failed(self, stage: str, index: int, total: int, id: str, seconds: float, error: str,
                     kept: str | None) -> None:
        """The stage's container exited non-zero; kept names where its partial tree is, if it was kept."""

    @abc.abstractmethod
    def build_done(self, tree: str | None, image: str | None, seconds: float) -> None: ...

    @abc.abstractmethod
    def build_failed(self, error: str, status: int, kept: str | None) -> None:
        """How a build ended when it did not succeed: the error line, the exit status, a kept partial tree."""

    @abc.abstractmethod
    def store_trimmed(self, removed: list[str], size: int, max_size: int) -> None: ...


def emitting(cls: type) -> type:
    """Give a monitor class every event it does not define itself as `self.emit(event, fields)`, the event named
    as in JSON (stage_start -> stage-start): a monitor for machines then hears every event there is."""
    for name in Monitor.__abstractmethods__:
        if name not in cls.__dict__:
            def method(self, _event: str = name.replace("_", "-"), **fields) -> None:
                self.emit(_event, fields)
            method.__name__ = name
            method.__signature__ = inspect.signature(getattr(Monitor, name))
            setattr(cls, name, method)
    cls.__abstractmethods__ = frozenset()
    return cls


@emitting
class JsonMonitor(Monitor):
    """One JSON object per event on stdout, `event` naming it."""

    def emit(self, event: str, fields: dict) -> None:
        print(json.dumps({"event": event, **fields}), flush=True)

    def cache_untrusted(self, image, reason):
        super().cache_untrusted(image, reason)
        self.emit("cache-untrusted", {"image": image, "reason": reason})


class _Elapsed:
    """The bottom line of a terminal: how long the running step has taken, once it takes a while.

    A thread redraws it every half second; the stage's own output and the
    monitor's lines clear it first (all under one lock), so it never mixes
    into them, and it is drawn only when the cursor is at the start of a line.
    """

    AFTER = 3.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.label: str | None = None
        self.started = 0.0
        self.shown = False
        self.line_start = True
        threading.Thread(target=self._run, daemon=True).start()

    def start(self, label: str) -> None:
        with self.lock:
            self.label, self.started = label, time.monotonic()

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False

    def write(self, chunk: bytes) -> None:
        with self.lock:
            self.clear()
            sys.stderr.buffer.write(chunk)
            sys.stderr.flush()
            self.line_start = chunk.endswith(b"\n")

    def _run(self) -> None:
        while True:
            time.sleep(0.5)
            with self.lock:
                elapsed = time.monotonic() - self.started
                if self.label and self.line_start and elapsed >= self.AFTER:
                    sys.stderr.write(f"\r\x1b[K  … {self.label}: {elapsed:.0f} s")
                    sys.stderr.flush()
                    self.shown = True


class ProgressMonitor(Monitor):
    """Readable lines on stderr, one when a step starts and one when it ends; on a terminal, a live
    elapsed time for a step that takes more than a few seconds."""

    def __init__(self) -> None:
        self.color = _color()
        self.elapsed = _Elapsed() if sys.stderr.isatty() else None

    def _line(self, *parts: str | tuple[str, str]) -> None:
        text = _render(parts, self.color)
        if self.elapsed is None:
            print(text, file=sys.stderr, flush=True)
            return
        with self.elapsed.lock:
            self.elapsed.clear()
            self.elapsed.label = None
            print(text, file=sys.stderr, flush=True)

    def output(self, fd, chunk):
        if self.elapsed is None:
            super().output(fd, chunk)
        else:
            self.elapsed.write(chunk)

    def busy(self, label):
        if self.elapsed is not None:
            self.elapsed.start(label)

    def pipeline_start(self, name, stages):
        self._line((f"Building {name}", "bold"), f" ({stages} stages)")

    def stage_start(self, stage, index, total, id):
        self._line((f"▶ [{index + 1}/{total}] {stage}", "cyan"), " ", (id[:12], "dim"))
        self.busy(f"[{index + 1}/{total}] {stage} running")

    def assembler_start(self, assembler):
        self._line((f"▶ assembler {assembler}", "cyan"))
        self.busy(f"assembler {assembler} running")

    def stage_done(self, stage, index, total, id, cached, source, seconds, phases):
        state = (f"cached ({source})", "dim") if cached else ("done", "green")
        took = "" if cached else f" in {seconds:.1f} s"
        self._line((f"■ [{index + 1}/{total}] {stage}", "cyan"), " ", state, took, " ", (id[:12], "dim"))

    def assembler_done(self, assembler, seconds, output, files, id, cached, source):
        state = (f"cached ({source})", "dim") if cached else ("done", "green")
        self._line((f"■ assembler {assembler}", "cyan"), " ", state,
                   f" in {seconds:.1f} s: " + ", ".join(f"{output}/{f}" for f in files))

    def cache_unavailable(self, registry, error):
        self._line((f"cache {registry} unavailable, building without it:", "yellow"), f" {error}")

    def cache_untrusted(self, image, reason):
        super().cache_untrusted(image, reason)

    def tree_pushed(self, stage, id, image, seconds):
        self._line((f"↑ {stage}", "cyan"), f" pushed to {image} in {seconds:.1f} s")

    def output_pushed(self, assembler, id, image, seconds):
        self._line((f"↑ output of {assembler}", "cyan"), f" pushed to {image} in {seconds:.1f} s")

    def stage_failed(self, stage, index, total, id, seconds, error, kept):
        self._line((f"✗ [{index + 1}/{total}] {stage}", "cyan"), " ", ("failed", "yellow"), f" after {seconds:.1f} s")

    def build_done(self, tree, image, seconds):
        self._line(("Built", "bold green"), f" in {seconds:.1f} s; final tree {image}")

    def build_failed(self, error, status, kept):
        """The error line itself is the command's last word (cli/__init__.py)."""

    def store_trimmed(self, removed, size, max_size):
        over = " (still over: the rest is in use)" if size > max_size else ""
        self._line(("Store", "cyan"), f" {human(size)} of {human(max_size)}{over}; "
                   f"{len(removed)} least recently used tree(s) and output(s) removed")
