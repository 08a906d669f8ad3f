"""The task controller with real processes: schedule and signals, driven directly."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from fluxlite.execute.task import TaskController
from fluxlite.execute.timelimit import Schedule


def controller(tmp_path: Path, argv: list[str], **kw: object) -> TaskController:
    return TaskController(argv, str(tmp_path), {"PATH": "/usr/bin:/bin"}, stdin="/dev/null",
                          stdout=str(tmp_path / "out"), stderr=str(tmp_path / "err"),
                          schedule=kw.pop("schedule", Schedule()), **kw)  # type: ignore[arg-type]


def test_a_signal_before_the_task_exists_reaches_it_when_it_starts(tmp_path: Path) -> None:
    ctl = controller(tmp_path, ["/bin/sleep", "30"], kill_grace=30.0)
    ctl.on_signal(signal.SIGTERM)  # fluxlite was told to stop while setting the task up
    t0 = time.monotonic()
    ctl.start()
    res = ctl.wait()
    assert time.monotonic() - t0 < 5  # not the 30 s grace
    assert res.status.signal == signal.SIGTERM and res.terminated_by == signal.SIGTERM
    assert [e.signal for e in ctl.events if e.direction == "sent"] == ["SIGTERM"]


def test_schedule_term_then_kill(tmp_path: Path) -> None:
    ctl = controller(tmp_path, ["/bin/sh", "-c", "trap '' TERM; sleep 30 & wait; sleep 30"],
                     schedule=Schedule(0.3, 0.8, "spec", None))
    t0 = time.monotonic()
    ctl.start()
    res = ctl.wait()
    took = time.monotonic() - t0
    assert 0.7 <= took < 5
    assert res.timed_out == "kill" and res.status.signal == signal.SIGKILL
    sent = [e.signal for e in ctl.events if e.direction == "sent"]
    assert sent[0] == "SIGTERM" and "SIGKILL" in sent


def test_usr1_is_forwarded_not_terminating(tmp_path: Path) -> None:
    body = "trap 'echo got > usr1; exit 0' USR1; sleep 30 & wait"
    ctl = controller(tmp_path, ["/bin/sh", "-c", body])
    ctl.start()
    time.sleep(0.3)
    ctl.on_signal(signal.SIGUSR1)
    res = ctl.wait()
    assert res.status.exitcode == 0 and res.terminated_by is None
    assert (tmp_path / "usr1").read_text() == "got\n"
