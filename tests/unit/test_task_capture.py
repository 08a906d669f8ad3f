"""Where a local task's stdout and stderr go while it runs: unnamed files in the cluster's
directory where the filesystem makes them, named ones otherwise; nothing left either way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluxlite.cluster import executors
from fluxlite.cluster.attempt import Attempt
from fluxlite.cluster.formats import Task

# the task says what its stdout is, into its stdout, and writes a line to its stderr
_SAY = "readlink /proc/$$/fd/1; echo to-stderr >&2"


def _run_one(tmp: Path) -> tuple[Attempt, executors.TaskFiles]:
    files = executors.TaskFiles(str(tmp), 4096)
    ex = executors.LocalExecutor(files, jobs=1, memory_mb=0, gpus=0)
    try:
        a = Attempt(task=Task(id="t/1", argv=["/bin/sh", "-c", _SAY]), number=1)
        assert ex.start(a) is None
        done: list[Attempt] = []
        while not done:
            done = ex.poll(5.0)
        return done[0], files
    finally:
        ex.close()


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="no O_TMPFILE on this system")
def test_a_tasks_output_goes_to_unnamed_files(tmp_path: Path) -> None:
    a, files = _run_one(tmp_path)
    assert a.ok and files.unnamed
    seen = a.stdout.decode().strip()
    assert seen.startswith(f"{tmp_path}/#") and seen.endswith("(deleted)"), seen
    assert a.stderr == b"to-stderr\n"
    assert list(tmp_path.iterdir()) == []  # and nothing was ever named there


def test_without_unnamed_files_the_output_is_named_then_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a directory opened to write is refused (EISDIR), as by a kernel without O_TMPFILE
    monkeypatch.setattr(executors, "_UNNAMED", os.O_RDWR | os.O_CLOEXEC)
    a, files = _run_one(tmp_path)
    assert a.ok and not files.unnamed
    assert a.stdout.decode().strip() == a.stdout_path == f"{tmp_path}/0.t_1.1.out"
    assert a.stderr == b"to-stderr\n"
    assert list(tmp_path.iterdir()) == []


def test_a_directory_that_cannot_be_written_is_an_error_not_a_fallback(
        tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    files = executors.TaskFiles(str(gone), 4096)
    a = Attempt(task=Task(id="t", argv=["/bin/true"]), number=1)
    a.stdout_path, a.stderr_path = str(gone / "t.out"), str(gone / "t.err")
    with pytest.raises(FileNotFoundError):
        files.open_stdio(a)
    assert files.unnamed == hasattr(os, "O_TMPFILE")  # still tried first next time


def test_an_unnamed_file_gets_its_name_through_proc_without_ctypes(tmp_path: Path) -> None:
    """Staging links its unnamed files by /proc/self/fd (any user may): linkat(2) by the
    descriptor alone needs a privilege, and ctypes, which the common case never imports."""
    code = (
        "import os, sys\n"
        "from fluxlite.staging import base\n"
        f"d = {str(tmp_path)!r}\n"
        "fd = os.open(d, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)\n"
        "os.write(fd, b'data')\n"
        "base._link_fd(fd, d + '/f')\n"
        "try:\n"
        "    base._link_fd(fd, d + '/f')\n"
        "except FileExistsError:\n"
        "    pass\n"
        "try:\n"
        "    base._link_fd(fd, d + '/no/f')\n"
        "except FileNotFoundError:\n"
        "    pass\n"
        "print('ctypes' in sys.modules)\n")
    if not hasattr(os, "O_TMPFILE"):
        pytest.skip("no O_TMPFILE on this system")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True)
    assert r.stdout.strip() == "False"
    assert (tmp_path / "f").read_bytes() == b"data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


# -- capture files kept for the next attempt -----------------------------------------------
def _one_after_another(tmp: Path, first: list[str]) -> tuple[Attempt, Attempt, list[int]]:
    """``first``, then a task that prints what its stdout held when it started (its own
    file, read back through /proc): the two attempts, and how many pairs of files were
    kept after each."""
    files = executors.TaskFiles(str(tmp), 4096)
    ex = executors.LocalExecutor(files, jobs=1, memory_mb=0, gpus=0)
    try:
        out = []
        kept = []
        for i, argv in enumerate((first, ["/bin/sh", "-c", "sleep 0.3; cat /proc/$$/fd/1"])):
            a = Attempt(task=Task(id=f"t{i}", argv=argv, seq=i), number=1)
            assert ex.start(a) is None
            done: list[Attempt] = []
            while not done:
                done = ex.poll(5.0)
            out.append(done[0])
            kept.append(len(files._spare))
        return out[0], out[1], kept
    finally:
        ex.close()
        assert files._spare == []


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="no O_TMPFILE on this system")
def test_an_attempt_that_wrote_nothing_leaves_its_files_to_the_next(tmp_path: Path) -> None:
    first, second, kept = _one_after_another(tmp_path, ["/bin/true"])
    assert first.ok and second.ok and kept == [1, 1]
    assert second.stdout == b"" and second.stdout_info == (False, 0)


_PY = sys.executable


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="no O_TMPFILE on this system")
@pytest.mark.parametrize("what, argv", [
    ("wrote to stdout", ["/bin/echo", "hello"]),
    ("wrote to stderr", ["/bin/sh", "-c", "echo oops >&2"]),
    ("moved the offset", [_PY, "-c", "import os; os.lseek(1, 100, os.SEEK_SET)"]),
    ("set O_APPEND", [_PY, "-c", "import fcntl, os; "
                      "fcntl.fcntl(2, fcntl.F_SETFL, fcntl.fcntl(2, fcntl.F_GETFL) "
                      "| os.O_APPEND)"]),
    # linkat(2) through /proc, as open(2) says an unnamed file gets a name (a directory
    # descriptor makes os.link call linkat, which follows the link)
    ("gave it a name", [_PY, "-c", "import os; d = os.open('.', os.O_RDONLY); "
                        "os.link('/proc/self/fd/1', 'named', src_dir_fd=d, dst_dir_fd=d, "
                        "follow_symlinks=True)"]),
    # escaped its process group: re-parented here, it still holds the files
    ("left a process behind", ["/bin/sh", "-c", "setsid sleep 1 </dev/null & sleep 0.1"]),
])
def test_files_an_attempt_touched_or_left_held_are_not_given_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, what: str, argv: list[str]) -> None:
    (tmp_path / "files").mkdir()
    monkeypatch.chdir(tmp_path)  # where the named link lands, not the capture directory
    first, second, kept = _one_after_another(tmp_path / "files", argv)
    assert first.ok and second.ok, (first.status, second.status)
    # not the first's; the second's, which wrote nothing, in its turn (unless what the
    # first left behind still runs: then nothing is kept while it does)
    assert kept == ([0, 0] if what == "left a process behind" else [0, 1]), what
    assert second.stdout == b"" and second.stderr == b""
    if what == "gave it a name":
        assert (tmp_path / "named").exists()
