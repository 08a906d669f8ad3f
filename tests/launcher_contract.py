"""What every launcher must do, whatever runs the task: a test base class (not collected on
its own) that each launcher's tests subclass with :meth:`LauncherContract.make`."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from fluxlite.execute.base import Launcher, TaskResult
from fluxlite.execute.timelimit import Schedule

#: the behaviours a subclass's task must have: exits 3; waits until a signal ends it;
#: ignores TERM (ends only on KILL)
BEHAVIOURS = ("exit3", "waits", "ignores_term")


class LauncherContract:
    """Subclass as ``Test...`` and implement :meth:`make`."""

    def make(self, tmp_path: Path, behaviour: str, **kw: object) -> Launcher:
        raise NotImplementedError

    def run(self, launcher: Launcher) -> tuple[TaskResult, float]:
        t0 = time.monotonic()
        launcher.start()
        res = launcher.wait()
        launcher.close()
        return res, time.monotonic() - t0

    def test_exit_status_is_kept(self, tmp_path: Path) -> None:
        res, _ = self.run(self.make(tmp_path, "exit3"))
        assert res.status.exitcode == 3 and res.status.code == 3 and not res.status.ok
        assert res.terminated_by is None and res.timed_out is None
        assert res.start > 0 and res.duration >= 0

    def test_a_received_term_is_forwarded(self, tmp_path: Path) -> None:
        la = self.make(tmp_path, "waits", kill_grace=30.0)
        la.start()
        la.on_signal(signal.SIGTERM)
        res = la.wait()
        assert res.status.signal == signal.SIGTERM and res.terminated_by == signal.SIGTERM
        assert [e.signal for e in la.events if e.direction == "sent"] == ["SIGTERM"]
        assert [e.signal for e in la.events if e.direction == "received"] == ["SIGTERM"]

    def test_an_ignored_term_is_followed_by_kill_after_the_grace(self, tmp_path: Path) -> None:
        la = self.make(tmp_path, "ignores_term", kill_grace=0.3)
        la.start()
        time.sleep(0.3)  # the task has set its trap
        la.on_signal(signal.SIGTERM)
        t0 = time.monotonic()
        res = la.wait()
        assert 0.25 <= time.monotonic() - t0 < 5
        assert res.status.signal == signal.SIGKILL and res.terminated_by == signal.SIGTERM
        assert res.timed_out is None  # a stop signal's grace, not the schedule

    def test_the_schedule_terms_at_the_checkpoint(self, tmp_path: Path) -> None:
        res, took = self.run(self.make(tmp_path, "waits",
                                       schedule=Schedule(0.2, None, "spec", None)))
        assert res.timed_out == "term" and res.status.signal == signal.SIGTERM
        assert took < 5

    def test_says_whether_tree_monitoring_applies(self, tmp_path: Path) -> None:
        assert isinstance(self.make(tmp_path, "exit3").monitors_tree, bool)
