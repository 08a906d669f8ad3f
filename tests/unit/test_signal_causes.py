"""Why fluxlite sent a signal is a typed field of the event (``SignalEvent.cause``), with
real processes: the schedule's TERM and KILL, a warning's TERM, what fluxlite forwards."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from fluxlite.execute.base import Cause
from fluxlite.execute.local import LocalLauncher
from fluxlite.execute.timelimit import Schedule


def launcher(tmp_path: Path, body: str, **kw: object) -> LocalLauncher:
    return LocalLauncher(["/bin/sh", "-c", body], str(tmp_path), {"PATH": "/usr/bin:/bin"},
                         stdin="/dev/null", stdout=str(tmp_path / "out"),
                         stderr=str(tmp_path / "err"), **kw)  # type: ignore[arg-type]


def sent(la: LocalLauncher) -> list[tuple[str, Cause | None]]:
    return [(e.signal, e.cause) for e in la.events if e.direction == "sent"]


def test_the_schedules_term_and_kill_are_the_time_limit(tmp_path: Path) -> None:
    # a second before the TERM: the shell has set its trap by then, even on a loaded machine
    la = launcher(tmp_path, "trap '' TERM; sleep 30", schedule=Schedule(1.0, 1.5, "spec"))
    la.start()
    la.wait()
    assert sent(la) == [("SIGTERM", Cause.TIME_LIMIT), ("SIGKILL", Cause.TIME_LIMIT)]


def test_what_fluxlite_was_told_is_a_stop(tmp_path: Path) -> None:
    la = launcher(tmp_path, "trap '' TERM; touch ready; sleep 30", kill_grace=0.3,
                  schedule=Schedule(30, 60, "spec"))
    la.start()
    deadline = time.monotonic() + 10
    while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # the TERM must find its trap set
    la.on_signal(signal.SIGTERM)
    la.wait()
    # the KILL that ends the grace is the stop's, even with a schedule that has not fired
    assert sent(la) == [("SIGTERM", Cause.STOP), ("SIGKILL", Cause.STOP)]


def test_a_time_limit_warning(tmp_path: Path) -> None:
    fwd = launcher(tmp_path, "trap 'exit 0' USR1; sleep 30 & wait", usr1="forward")
    fwd.start()
    time.sleep(0.2)
    fwd.on_signal(signal.SIGUSR1)
    fwd.wait()
    assert sent(fwd)[0] == ("SIGUSR1", Cause.WARNING)
    own = launcher(tmp_path, "sleep 30", usr1="schedule", kill_grace=5.0)
    own.timeleft = lambda: 0.0  # no time left: the TERM the warning brings is now
    own.start()
    own.on_signal(signal.SIGUSR1)
    own.wait()
    assert sent(own) == [("SIGTERM", Cause.WARNING)]
