"""Every shell script of the checkout passes shellcheck (they run under dash: /bin/sh on Debian)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETUP_HOST = REPO / "scripts" / "setup-host"
SHELLS = ("sh", "bash", "dash")


def is_shell_script(path: Path) -> bool:
    """Whether the #! line names a shell, directly or through env."""
    with path.open("rb") as f:
        first = f.readline()
    words = first[2:].decode(errors="replace").split() if first.startswith(b"#!") else []
    if words[:1] == ["/usr/bin/env"]:
        words = words[1:]
    return bool(words) and Path(words[0]).name in SHELLS


def shell_scripts() -> list[Path]:
    """Every file of the checkout (tracked or new, not ignored) that is a shell script."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\0")
    return [REPO / name for name in names if name and (REPO / name).is_file() and is_shell_script(REPO / name)]


def test_shell_scripts_pass_shellcheck():
    assert shutil.which("shellcheck") and shutil.which("git"), "shellcheck or git missing: run scripts/setup-host"
    scripts = shell_scripts()
    assert SETUP_HOST in scripts and REPO / ".ci" / "run" in scripts
    proc = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
