"""What a build tells the world: JSON lines for scripts, readable progress for people.

Events go to stdout in --json mode (one object per line); progress lines and
the stages' own output go to stderr, so stdout stays machine-readable.
"""

from __future__ import annotations

import json
import sys

from rich.console import Console


class Reporter:
    def __init__(self, json_mode: bool):
        self.json_mode = json_mode
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)

    def event(self, kind: str, **fields) -> None:
        if self.json_mode:
            print(json.dumps({"event": kind, **fields}), flush=True)
            return
        render = getattr(self, "_" + kind.replace("-", "_"), None)
        if render is not None:
            render(**fields)

    def output(self, fd: int, chunk: bytes) -> None:
        """A stage's own stdout/stderr, passed through as it arrives."""
        sys.stderr.buffer.write(chunk)
        sys.stderr.flush()

    def _pipeline_start(self, name: str, stages: int, **_) -> None:
        self.console.print(f"[bold]Building {name}[/] ({stages} stages)")

    def _stage_start(self, stage: str, index: int, total: int, id: str, **_) -> None:
        self.console.print(f"[cyan]▶ [{index + 1}/{total}] {stage}[/] [dim]{id[:12]}[/]")

    def _stage_done(self, stage: str, index: int, total: int, id: str, cached: bool, seconds: float, source: str,
                    **_) -> None:
        state = f"[dim]cached ({source})[/]" if cached else f"[green]done[/] in {seconds:.1f} s"
        self.console.print(f"[cyan]■ [{index + 1}/{total}] {stage}[/] {state} [dim]{id[:12]}[/]")

    def _assembler_start(self, assembler: str, **_) -> None:
        self.console.print(f"[cyan]▶ assembler {assembler}[/]")

    def _assembler_done(self, assembler: str, seconds: float, output: str, files: list[str], **_) -> None:
        self.console.print(f"[cyan]■ assembler {assembler}[/] [green]done[/] in {seconds:.1f} s: "
                           + ", ".join(f"{output}/{f}" for f in files))

    def _cache_unavailable(self, registry: str, error: str, **_) -> None:
        self.console.print(f"[yellow]cache {registry} unavailable, building without it:[/] {error}")

    def _tree_pushed(self, stage: str, image: str, seconds: float, **_) -> None:
        self.console.print(f"[cyan]↑ {stage}[/] pushed to {image} in {seconds:.1f} s")

    def _build_done(self, tree: str, image: str, seconds: float, **_) -> None:
        self.console.print(f"[bold green]Built[/] in {seconds:.1f} s; final tree {image}")
