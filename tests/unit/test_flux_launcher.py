"""Flux jobs without a Flux instance: a fake of the Flux side of ``FluxJobs`` (submit, kill,
cancel, the eventlog) feeds the real ``Job``; the one reading of events and exceptions into
exit statuses is checked as the Flux launcher and the cluster's Flux executor use it, and
the launcher's signals too."""

from __future__ import annotations

import queue
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fluxlite.cluster.flux_jobs import settle
from fluxlite.cluster.formats import Task
from fluxlite.cluster.records import Attempt
from fluxlite.execute.base import Launcher
from fluxlite.execute.timelimit import Schedule
from fluxlite.spec import Resources
from fluxlite.flux.jobs import Job
from fluxlite.flux.launcher import FluxLauncher
from tests.launcher_contract import LauncherContract


class FakeJobs:
    """The Flux side of :class:`FluxJobs`, faked: a job that behaves as ``behaviour`` says,
    its events fed to the real :class:`Job` from a thread of its own as a real one's would
    come (start, finish with a wait status, clean); ``script`` replaces them when given (an
    exception in it is a lost eventlog)."""

    def __init__(self, behaviour: str, script: list[Any] | None = None) -> None:
        self.behaviour = behaviour
        self.script = script
        self.q: queue.Queue[Any] = queue.Queue()
        self.calls: list[tuple[Any, ...]] = []
        self.ended = False

    def _ev(self, name: str, **context: Any) -> None:
        self.q.put(ev(name, **context))

    def _end(self, status: int) -> None:
        if not self.ended:
            self.ended = True
            self._ev("finish", status=status)
            self._ev("clean")

    @staticmethod
    def jobspec(argv: list[str], **kw: Any) -> dict[str, Any]:
        return {"argv": argv, **kw}

    def submit(self, js: Any, on_end: Any = None) -> Job:
        self.calls.append(("submit", js))
        job = Job(on_end)
        for item in self.script if self.script is not None else [ev("start")]:
            self.q.put(item)
        if self.script is None and self.behaviour == "exit3":
            self._end(3 << 8)
        threading.Thread(target=self._feed, args=(job,), daemon=True).start()
        return job

    def _feed(self, job: Job) -> None:
        while not job.ended:
            item = self.q.get(timeout=10)
            if isinstance(item, BaseException):
                job.lost(str(item))
            else:
                job.event(item)

    def wait_submitted(self, job: Job) -> None:
        job.identify(42, "ƒfake42")

    def kill(self, jobs: list[Job], signum: int) -> int:
        self.calls.append(("kill", jobs[0].jobid, signum))
        if self.behaviour == "waits" or signum == signal.SIGKILL:
            self._end(signum)  # a wait status: killed by signum
        return 1

    def cancel(self, jobs: list[Job], note: str) -> int:
        self.calls.append(("cancel", jobs[0].jobid, note))
        self._ev("exception", type="cancel", severity=0, note=note)
        self._end(signal.SIGTERM)
        return 1

    def close(self, wait: bool = True, abandon: bool = False) -> None:
        pass


def ev(name: str, **context: Any) -> SimpleNamespace:
    return SimpleNamespace(name=name, timestamp=time.time(), context=context)


def launcher(tmp_path: Path, fake: FakeJobs, nested: bool = False,
             **kw: Any) -> FluxLauncher:
    kw.setdefault("schedule", Schedule())
    return FluxLauncher(["/bin/true"], str(tmp_path), {"PATH": "/bin"}, stdin="/dev/null",
                        stdout=str(tmp_path / "out"), stderr=str(tmp_path / "err"),
                        ctx=SimpleNamespace(handle=None, uri="fake://"),
                        resources=Resources(), nested=nested, jobs=fake, **kw)


class TestFluxLauncherContract(LauncherContract):
    """The Flux launcher keeps the launcher contract."""

    def make(self, tmp_path: Path, behaviour: str, **kw: object) -> Launcher:
        return launcher(tmp_path, FakeJobs(behaviour), **kw)


def test_an_exception_before_the_job_ran_is_a_failure_to_start(tmp_path: Path) -> None:
    fake = FakeJobs("", [ev("exception", type="alloc", severity=0, note="unsatisfiable"),
                         ev("clean")])
    la = launcher(tmp_path, fake)
    la.start()
    res = la.wait()
    assert res.status.code == 127
    assert res.status.error == "flux job ƒfake42: alloc: unsatisfiable"
    assert la.flux_info["exception"] == {"type": "alloc", "note": "unsatisfiable"}


def test_a_non_fatal_exception_does_not_decide(tmp_path: Path) -> None:
    fake = FakeJobs("", [ev("start"), ev("exception", type="timeout", severity=1, note="x"),
                         ev("finish", status=0), ev("clean")])
    la = launcher(tmp_path, fake)
    la.start()
    res = la.wait()
    assert res.status.ok and "exception" not in la.flux_info and "t_run" in la.flux_info


def test_a_lost_eventlog_is_said(tmp_path: Path) -> None:
    fake = FakeJobs("", [ev("start"), OSError("connection reset")])
    la = launcher(tmp_path, fake)
    la.start()
    res = la.wait()
    assert res.status.error == "lost flux job ƒfake42: connection reset"


def test_submit_refused_is_an_exec_error(tmp_path: Path) -> None:
    from fluxlite.errors import ExecError

    fake = FakeJobs("exit3")

    def refuse(job: Job) -> None:
        raise OSError(22, "Invalid argument")

    fake.wait_submitted = refuse  # type: ignore[method-assign]
    with pytest.raises(ExecError, match="flux submit of true failed: Invalid argument"):
        launcher(tmp_path, fake).start()


def test_a_nested_instance_is_cancelled_not_killed(tmp_path: Path) -> None:
    fake = FakeJobs("ignores_term")
    la = launcher(tmp_path, fake, nested=True, kill_grace=0.2)
    la.start()
    la.on_signal(signal.SIGTERM)
    la.on_signal(signal.SIGTERM)  # the second one: no more grace
    res = la.wait()
    kinds = [c[0] for c in fake.calls]
    assert kinds == ["submit", "kill", "cancel"]  # TERM forwarded, then the cancel
    assert fake.calls[0][1]["kind"] == "nest"
    assert fake.calls[1][2] == signal.SIGTERM
    assert res.status.signal == signal.SIGTERM and res.terminated_by == signal.SIGTERM


# -- the same reading, as the cluster's Flux executor uses it --------------------------------
def cluster_job(*events: Any, error: str | None = None, jobid: bool = True
                ) -> tuple[Attempt, list[Attempt]]:
    """An attempt whose job sees ``events`` (then ``error``, a lost eventlog), settled as
    the cluster's executor settles it when the job is handed over; the hand-overs."""
    a = Attempt(task=Task(id="t"), number=1)
    handed: list[Attempt] = []
    job = Job(lambda j: handed.append(a))
    if jobid:
        job.identify(7, "ƒseven")
    for e in events:
        job.event(e)
    if error is not None:
        job.lost(error)
    if handed:
        settle(a, job.outcome())
    return a, handed


def test_cluster_a_finished_job_has_its_wait_status_and_run_time() -> None:
    t0 = time.time()
    start, finish = ev("start"), ev("finish", status=2 << 8)
    start.timestamp, finish.timestamp = t0, t0 + 1.5
    a, handed = cluster_job(start, finish, ev("clean"))
    assert handed == [a]  # once, at the finish: the clean after it changes nothing
    assert a.status.exitcode == 2 and a.start == t0 and a.duration == pytest.approx(1.5)
    assert a.flux_id == "ƒseven"


def test_cluster_a_job_cancelled_while_pending_ends_at_its_exception() -> None:
    a, handed = cluster_job(ev("exception", type="cancel", severity=0, note="time limit"))
    assert handed == [a] and a.status.code == 127
    assert a.status.error == "flux job ƒseven: cancel: time limit"


def test_cluster_a_running_job_cancelled_ends_at_its_finish() -> None:
    a, handed = cluster_job(ev("start"), ev("exception", type="cancel", severity=0))
    assert handed == []  # the finish event, with the wait status, follows
    a, handed = cluster_job(ev("start"), ev("exception", type="cancel", severity=0),
                            ev("finish", status=signal.SIGTERM))
    assert handed == [a] and a.status.signal == signal.SIGTERM


def test_cluster_a_lost_eventlog_and_a_refused_submission_are_said() -> None:
    a, _ = cluster_job(ev("start"), error="instance gone")
    assert a.status.error == "lost flux job ƒseven: instance gone"
    a, _ = cluster_job(error="Invalid argument", jobid=False)
    assert a.status.error == "flux submit failed: Invalid argument" and a.flux_id is None


class ClusterJobs:
    """The Flux side of the cluster's FluxJobs, faked: it keeps the jobs; the test plays
    their events; a cancel is a cancel's exception event."""

    jobspec = staticmethod(FakeJobs.jobspec)

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.calls: list[tuple[Any, ...]] = []

    def submit(self, js: Any, on_end: Any = None) -> Job:
        self.jobs.append(Job(on_end))
        return self.jobs[-1]

    def kill(self, jobs: list[Job], signum: int) -> int:
        self.calls.append(("kill", signum, len(jobs)))
        return len(jobs)

    def cancel(self, jobs: list[Job], note: str) -> int:
        self.calls.append(("cancel", note, len(jobs)))
        for job in jobs:
            job.event(ev("exception", type="cancel", severity=0, note=note))
        return len(jobs)

    def close(self, wait: bool = True, abandon: bool = False) -> None:
        pass


def test_the_cluster_executor_hands_each_job_over_once_as_it_ended(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fluxlite.cluster import flux_jobs
    from fluxlite.cluster.executors import TaskFiles

    fake = ClusterJobs()
    one_node = SimpleNamespace(all=SimpleNamespace(nnodes=1, ncores=4, ngpus=0))
    monkeypatch.setattr(flux_jobs.jobspec, "open_instance",
                        lambda uri, needs: ("fake://", None, one_node))
    monkeypatch.setattr(flux_jobs, "FluxJobs", lambda uri, h: fake)
    ex = flux_jobs.FluxJobsExecutor(TaskFiles(str(tmp_path), 1024), env={"PATH": "/bin"})
    ran, waits = (Attempt(task=Task(id=i, argv=["/bin/true"]), number=1) for i in "ab")
    assert ex.start(ran) is None and ex.start(waits) is None and ex.running() == 2
    job = fake.jobs[0]
    job.identify(5, "ƒfive")
    for e in (ev("start"), ev("finish", status=0), ev("clean")):
        job.event(e)
    assert ex.poll(1.0) == [ran] and ex.poll(0) == []  # once, at its finish
    assert ran.status.ok and ran.flux_id == "ƒfive"
    assert [sub.attempt for sub in ex.inflight.values()] == [waits]  # it holds ran no more
    fake.jobs[1].identify(6, "ƒsix")
    ex.signal_all(signal.SIGTERM, "time limit")  # a cancel: the job was still pending
    assert fake.calls == [("cancel", "time limit", 1)]
    assert ex.poll(1.0) == [waits] and ex.running() == 0
    assert waits.status.error == "flux job ƒsix: cancel: time limit"
    assert waits.stopped == "time limit"
    ex.close()
