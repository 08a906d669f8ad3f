"""The cluster scheduler against a fake executor: which task starts when, retries, rescue,
and how a time limit stops the cluster. No process runs; the fake ends its attempts after a
number of polls and records what the scheduler asked of it."""

from __future__ import annotations

import io
import signal
import time
from pathlib import Path

from fluxlite.cluster.executors import Executor
from fluxlite.cluster.formats import Task, parse
from fluxlite.cluster.records import Attempt, RecordWriter
from fluxlite.cluster.scheduler import Options, Scheduler
from fluxlite.errors import EXIT_OK, EXIT_TASK_FAILED, EXIT_TIME_LIMIT
from fluxlite.execute.base import ExitStatus


class FakeExecutor(Executor):
    """``cores`` slots; a task ends after ``ticks[id]`` polls (1 by default) with the exit
    code ``codes[id][try - 1]`` (the last one repeats); a task in ``hang`` ends only when
    signalled, killed by that signal."""

    name = "fake"
    where = "the fake executor"

    def __init__(self, cores: int = 1, ticks: dict[str, int] | None = None,
                 codes: dict[str, list[int]] | None = None, hang: tuple[str, ...] = ()) -> None:
        self.cores = self.free = cores
        self.ticks = ticks or {}
        self.codes = codes or {}
        self.hang = set(hang)
        self.started: list[str] = []
        self.signals: list[int] = []
        self.inflight: dict[int, tuple[Attempt, int]] = {}

    def fits(self, task: Task) -> bool:
        return task.cores <= self.free

    def start(self, a: Attempt) -> Attempt | None:
        self.started.append(a.task.id)
        self.free -= a.task.cores
        self.inflight[id(a)] = (a, self.ticks.get(a.task.id, 1))
        return None

    def poll(self, timeout: float) -> list[Attempt]:
        done = []
        for key, (a, left) in list(self.inflight.items()):
            if a.task.id in self.hang and not self.signals:
                continue
            if left > 1 and not self.signals:
                self.inflight[key] = (a, left - 1)
                continue
            del self.inflight[key]
            self.free += a.task.cores
            if self.signals:
                a.status = ExitStatus.from_wait(self.signals[-1])  # killed by it
            else:
                codes = self.codes.get(a.task.id, [0])
                a.status = ExitStatus.from_wait(codes[min(a.number, len(codes)) - 1] << 8)
            done.append(a)
        return done

    def running(self) -> int:
        return len(self.inflight)

    def signal_all(self, signum: int, reason: str) -> None:
        self.signals.append(signum)
        for a, _ in self.inflight.values():
            a.stopped = a.stopped or reason

    def close(self) -> None:
        self.inflight.clear()  # nothing runs: nothing to kill


def run(text: str, ex: FakeExecutor, **opts: object) -> tuple[Scheduler, dict, int]:
    g = parse(text, "t.dag", "pmc")
    sched = Scheduler(g, ex, RecordWriter(), io.BytesIO(), Options(**opts))  # type: ignore[arg-type]
    summary = sched.run()
    return sched, summary, sched.exit_code(summary)


def test_priorities_then_input_order() -> None:
    ex = FakeExecutor()
    text = "TASK a /bin/true\nTASK b -p 5 /bin/true\nTASK c -p 5 /bin/true\nTASK d /bin/true\n"
    _, summary, code = run(text, ex)
    assert ex.started == ["b", "c", "a", "d"]
    assert code == EXIT_OK and summary["succeeded"] == 4


def test_backfill_lets_smaller_tasks_past_one_that_does_not_fit() -> None:
    ex = FakeExecutor(cores=2, ticks={"long": 3})
    text = ("TASK long /bin/true\nTASK big -c 2 /bin/true\nTASK small1 /bin/true\n"
            "TASK small2 /bin/true\n")
    _, summary, _ = run(text, ex)
    # big waits for both cores; the small ones run beside long meanwhile
    assert ex.started.index("small1") < ex.started.index("big")
    assert ex.started.index("small2") < ex.started.index("big")
    assert summary["succeeded"] == 4


def test_retries_then_final_failure_leaves_children_unrun() -> None:
    ex = FakeExecutor(codes={"flaky": [1, 0], "bad": [3]})
    text = ("TASK flaky -t 2 /bin/true\nTASK bad -t 3 /bin/true\nTASK child /bin/true\n"
            "TASK other /bin/true\nEDGE bad child\n")
    sched, summary, code = run(text, ex)
    assert ex.started.count("flaky") == 2 and ex.started.count("bad") == 3
    assert "child" not in ex.started and "other" in ex.started
    assert summary["retries"] == 3 and summary["failed"] == 1
    assert sched.states["child"].reason == "parent 'bad' failed"
    assert code == EXIT_TASK_FAILED


def test_fail_fast_starts_nothing_more() -> None:
    ex = FakeExecutor(codes={"a": [1]})
    _, summary, code = run("TASK a /bin/true\nTASK b /bin/true\n", ex, fail_fast=True)
    assert ex.started == ["a"] and summary["not_run"] == 1 and code == EXIT_TASK_FAILED


def test_rescue_file_skips_done_tasks_and_records_new_ones(tmp_path: Path) -> None:
    rescue = tmp_path / "t.rescue"
    rescue.write_text("DONE a\n")
    ex = FakeExecutor()
    _, summary, code = run("TASK a /bin/true\nTASK b /bin/true\nEDGE a b\n", ex,
                           rescue=str(rescue))
    assert ex.started == ["b"] and summary["rescued"] == 1 and code == EXIT_OK
    assert rescue.read_text().splitlines() == ["DONE a", "DONE b"]


def test_time_limit_terms_running_tasks_and_starts_nothing_more(tmp_path: Path) -> None:
    ex = FakeExecutor(hang=("sleeper",))
    rescue = tmp_path / "r"
    sched, summary, code = run("TASK sleeper /bin/true\nTASK next /bin/true\n"
                               "EDGE sleeper next\n", ex, max_wall_time=0.3,
                               time_margin=0.1, kill_grace=0.5, rescue=str(rescue))
    assert ex.signals[0] == signal.SIGTERM
    assert ex.started == ["sleeper"] and summary["stopped"] == "time limit"
    # stopped, not failed: it did not run to its end, and a rerun runs it
    assert sched.states["sleeper"].state == "not-run"
    assert sched.states["sleeper"].reason == "stopped (time limit)"
    assert code == EXIT_TIME_LIMIT
    assert "DONE" not in rescue.read_text()  # nothing succeeded


class StubbornExecutor(FakeExecutor):
    """Its tasks ignore TERM and end only on KILL; ``signals_at[n]`` is a signal the
    scheduler receives (as from its handler) at the n-th poll."""

    def __init__(self, sched_signals: dict[int, int], **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.signals_at = sched_signals
        self.sched: Scheduler | None = None
        self.polls = 0
        self.times: list[float] = []

    def poll(self, timeout: float) -> list[Attempt]:
        self.polls += 1
        if self.polls in self.signals_at and self.sched is not None:
            self.sched._on_signal(self.signals_at[self.polls])
        if signal.SIGKILL not in self.signals:
            time.sleep(min(timeout, 0.01))
            return []
        return super().poll(timeout)

    def signal_all(self, signum: int, reason: str) -> None:
        self.times.append(time.monotonic())
        super().signal_all(signum, reason)


def run_stubborn(ex: StubbornExecutor, **opts: object) -> tuple[dict, int]:
    g = parse("TASK a /bin/true\n", "t.dag", "pmc")
    ex.sched = Scheduler(g, ex, RecordWriter(), io.BytesIO(), Options(**opts))  # type: ignore[arg-type]
    summary = ex.sched.run()
    return summary, ex.sched.exit_code(summary)


def test_a_stop_signal_terms_then_kills_after_the_grace() -> None:
    ex = StubbornExecutor({2: signal.SIGTERM})
    summary, code = run_stubborn(ex, kill_grace=0.3)
    assert ex.signals == [signal.SIGTERM, signal.SIGKILL]
    assert 0.25 <= ex.times[1] - ex.times[0] < 5
    assert summary["stopped"] == "interrupted" and code == 128 + signal.SIGTERM


def test_a_second_stop_signal_kills_at_once() -> None:
    ex = StubbornExecutor({2: signal.SIGINT, 4: signal.SIGTERM})
    summary, code = run_stubborn(ex, kill_grace=30.0)
    assert ex.signals == [signal.SIGTERM, signal.SIGKILL]  # the tasks get TERM for any stop
    assert ex.times[1] - ex.times[0] < 5  # not the 30 s grace
    assert code == 128 + signal.SIGINT  # the first signal is the one told


def test_a_stop_signal_after_the_time_limits_term_kills_at_once() -> None:
    ex = StubbornExecutor({30: signal.SIGTERM})
    summary, code = run_stubborn(ex, max_wall_time=0.2, time_margin=0.1, kill_grace=30.0)
    assert ex.signals == [signal.SIGTERM, signal.SIGKILL]
    assert ex.times[1] - ex.times[0] < 5
    assert code == 128 + signal.SIGTERM


class Signalled(FakeExecutor):
    """Its first poll brings a TERM, as the system hands it to the handler installed."""

    handed = False

    def poll(self, timeout: float) -> list[Attempt]:
        if not self.signals and not self.handed:
            self.handed = True
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # type: ignore[operator]
        return super().poll(timeout)


def test_the_scheduler_takes_over_the_policy_of_the_commands_one_set_of_handlers() -> None:
    import logging

    from fluxlite.cluster.scheduler import HANDLED_SIGNALS, finishing
    from fluxlite.signals import Handlers

    startup: list[int] = []
    handlers = Handlers(HANDLED_SIGNALS, startup.append)
    ex = Signalled(hang=("a",))
    g = parse("TASK a /bin/true\nTASK b /bin/true\nEDGE a b\n", "t.dag", "pmc")
    said: list[logging.LogRecord] = []
    log = logging.getLogger("fluxlite.cluster.scheduler")
    catch = logging.Handler(logging.WARNING)
    catch.emit = said.append  # type: ignore[method-assign]
    log.addHandler(catch)
    outside = signal.getsignal(signal.SIGTERM)
    try:
        with handlers:
            installed = signal.getsignal(signal.SIGTERM)
            sched = Scheduler(g, ex, RecordWriter(), io.BytesIO(), Options(kill_grace=0.1),
                              handlers=handlers)
            summary = sched.run(pending=lambda: [])
            # the same handlers stay installed, with the shutdown's policy: a signal now is
            # said, and ends nothing
            assert signal.getsignal(signal.SIGTERM) == installed
            assert handlers.policy is finishing
            installed(signal.SIGINT, None)  # type: ignore[operator]
    finally:
        log.removeHandler(catch)
    assert signal.getsignal(signal.SIGTERM) == outside
    assert startup == []  # every signal went to the policy of the part that ran
    assert summary["signal"] == "SIGTERM" and sched.exit_code(summary) == 128 + signal.SIGTERM
    # the TERM stopped the cluster: its running task TERMed, its child never started
    assert ex.started == ["a"] and ex.signals == [signal.SIGTERM]
    assert "SIGINT during the cluster's shutdown: finishing it first" in [
        r.getMessage() for r in said]
