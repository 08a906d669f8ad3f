"""fluxlite.cli.exit_now: a command's process ends without the interpreter's teardown, yet
as a normal exit would: its exit functions run, its output is flushed, its code is kept,
and a thread still running is waited for."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def _run(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)


def test_the_exit_functions_run_and_the_output_is_flushed(tmp_path: Path) -> None:
    p = _run(tmp_path, """
        import atexit, logging, sys
        from fluxlite.cli import exit_now

        class Finalized:
            def __del__(self):
                open("teardown", "w").close()  # the teardown that is skipped

        kept = Finalized()
        atexit.register(lambda: open("atexit-ran", "w").close())
        handler = logging.FileHandler("log.txt", delay=False)
        logging.getLogger().addHandler(handler)
        logging.getLogger().warning("a warning")
        sys.stdout.write("partial line, no newline")
        sys.stderr.write("an error line")
        exit_now(3)
        open("after", "w").close()
    """)
    assert (p.returncode, p.stdout, p.stderr) == (3, "partial line, no newline",
                                                  "an error line")
    assert (tmp_path / "atexit-ran").exists()
    assert (tmp_path / "log.txt").read_text() == "a warning\n"
    assert not (tmp_path / "after").exists()
    assert not (tmp_path / "teardown").exists()


def test_a_running_thread_makes_it_a_normal_exit(tmp_path: Path) -> None:
    p = _run(tmp_path, """
        import threading, time
        from fluxlite.cli import exit_now

        def late():
            time.sleep(0.3)
            open("thread-done", "w").close()

        threading.Thread(target=late).start()
        exit_now(5)
    """)
    assert p.returncode == 5
    assert (tmp_path / "thread-done").exists()


@pytest.mark.parametrize("argv", [["-m", "fluxlite", "--version"], ["-m", "fluxlite", "nope"]])
def test_the_command_keeps_its_exit_code(argv: list[str]) -> None:
    p = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=60)
    if argv[-1] == "nope":
        assert p.returncode == 2 and "unknown command 'nope'" in p.stderr
    else:
        assert p.returncode == 0 and p.stdout.startswith("fluxlite ")


def test_a_closed_standard_output_is_no_error_at_the_end(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text("import sys\nfrom fluxlite.cli import exit_now\n"
                      "assert sys.stdout is None\nexit_now(4)\n")
    p = subprocess.run(["/bin/sh", "-c", 'exec "$@" >&-', "sh", sys.executable, str(script)],
                       capture_output=False, stderr=subprocess.PIPE, text=True, timeout=60)
    assert (p.returncode, p.stderr) == (4, "")


def test_under_a_profiler_the_end_is_a_normal_one(tmp_path: Path) -> None:
    """`python -m cProfile -m fluxlite ...` writes its profile after the command returns."""
    out = tmp_path / "prof.out"
    p = subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "fluxlite",
                        "--version"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("fluxlite ")
    assert out.stat().st_size > 0
