"""The one decoder of wait statuses: ``ExitStatus.from_wait`` and ``describe``, on the
statuses of real processes."""

from __future__ import annotations

import os
import signal
import subprocess

from fluxlite.execute.base import ExitStatus


def _wait_status(argv: list[str], kill: int | None = None) -> int:
    """The raw wait status of a real child process."""
    p = subprocess.Popen(argv)
    if kill is not None:
        os.kill(p.pid, kill)
    _, status = os.waitpid(p.pid, 0)
    p.returncode = 0  # reaped here: Popen must not wait for it again
    return status


def test_an_exit_code_is_decoded_and_said() -> None:
    st = ExitStatus.from_wait(_wait_status(["/bin/sh", "-c", "exit 3"]))
    assert (st.exitcode, st.signal, st.code, st.ok) == (3, None, 3, False)
    assert st.describe() == "exited with code 3"
    assert st.describe("it") == "it exited with code 3"
    assert ExitStatus.from_wait(_wait_status(["/bin/true"])).ok


def test_a_signal_is_decoded_and_said() -> None:
    st = ExitStatus.from_wait(_wait_status(["/bin/sleep", "30"], kill=signal.SIGKILL))
    assert (st.exitcode, st.signal, st.code) == (None, signal.SIGKILL, 128 + signal.SIGKILL)
    assert st.describe() == "killed by SIGKILL"
    assert st.describe("its broker") == "its broker was killed by SIGKILL"


def test_a_task_that_never_started_and_one_of_unknown_end() -> None:
    st = ExitStatus.failed_to_start("no such file")
    assert st.code == 127
    assert st.describe() == "could not start: no such file"
    assert st.describe("the hook") == "the hook could not start: no such file"
    assert ExitStatus(-1).describe() == "ended, its status unknown"
    assert ExitStatus(0, None, 99).describe() == "killed by SIG99"
