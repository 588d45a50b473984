"""The stage storage's lock: commands on stores use it together, a writer waits for them, and a waiting writer
holds back new commands.  Each side is a real process holding the real lock files (in a tmp directory) until the
test lets it go."""

from __future__ import annotations

import select
import subprocess
import sys
import time
from pathlib import Path

from helpers import REPO

HOLDER = """
import sys, time
from pathlib import Path
from osbuild_oci.engine import localstorage as ls
root, how, name = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
ls.StageStorage.get = lambda: ls.StageStorage(root / "storage", root / "run", None)

def until(flag):
    while not (root / flag).exists():
        time.sleep(0.02)

if how == "adopt":  # a build that holds the storage in use, then writes it (a local image adopted)
    with ls.in_use():
        print("in", flush=True)
        until("go")
        with ls.changing():
            print("writing", flush=True)
else:
    with getattr(ls, how)():
        print("in", flush=True)
        until("release-" + name)
print("out", flush=True)
"""


def holder(root: Path, how: str, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, str(root), how, name], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def line(proc: subprocess.Popen) -> str:
    """Its next line, within 10 s: a deadlock fails the test instead of hanging it."""
    assert select.select([proc.stdout], [], [], 10)[0], "no line within 10 s: the lock holds it for good"
    return proc.stdout.readline().strip()


def blocked(proc: subprocess.Popen, seconds: float = 0.5) -> bool:
    """Still running, having printed nothing more."""
    time.sleep(seconds)
    return proc.poll() is None and not _readable(proc)


def _readable(proc: subprocess.Popen) -> bool:
    return bool(select.select([proc.stdout], [], [], 0)[0])


def test_a_writer_waits_for_the_commands_and_holds_back_new_ones(tmp_path):
    first = holder(tmp_path, "in_use", "first")
    assert line(first) == "in"
    writer = holder(tmp_path, "changing", "writer")
    assert blocked(writer), "the writer waits while a command uses the storage"
    late = holder(tmp_path, "in_use", "late")
    assert blocked(late), "a command that starts while a writer waits waits too"
    (tmp_path / "release-first").touch()
    assert line(first) == "out"
    assert line(writer) == "in"
    assert blocked(late), "and goes on only after the writer"
    (tmp_path / "release-writer").touch()
    assert line(writer) == "out"
    (tmp_path / "release-late").touch()
    assert (line(late), line(late)) == ("in", "out")
    assert "waiting for the osbuild-oci commands that use the stage images to end" in writer.stderr.read()
    for proc in (first, writer, late):
        assert proc.wait(10) == 0


def test_two_commands_writing_at_once_do_not_wait_for_each_other(tmp_path):
    builds = [holder(tmp_path, "adopt", str(n)) for n in range(2)]
    assert [line(proc) for proc in builds] == ["in", "in"]
    (tmp_path / "go").touch()
    assert [(line(proc), line(proc)) for proc in builds] == [("writing", "out")] * 2
    for proc in builds:
        assert proc.wait(10) == 0
