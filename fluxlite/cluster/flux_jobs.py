"""The cluster's Flux executor (``FluxJobsExecutor``, a name of its own beside flux-core's
``flux.job.FluxExecutor``, which :mod:`fluxlite.flux.jobs` submits through): every attempt
a Flux job in an instance, submitted asynchronously so that many submissions are in flight
at once; Flux places them on the instance's cores and GPUs. Submitting, following and
reading how each job ended are :class:`fluxlite.flux.jobs.FluxJobs`'s, as for the Flux
launcher. A nested instance (hierarchical scheduling) is
:class:`fluxlite.flux.instance.NestedInstance`."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from fluxlite.fsutil import unlink_quietly
from fluxlite.cluster.executors import (
    Executor,
    TaskFiles,
    forward_files,
    task_argv,
    task_env,
)
from fluxlite.cluster.formats import Task
from fluxlite.cluster.attempt import Attempt
from fluxlite.errors import FluxUnavailable
from fluxlite.execute.base import ExitStatus
from fluxlite.flux import jobspec
from fluxlite.flux.instance import NestedInstanceLost
from fluxlite.flux.jobs import FluxJobs, Job, Outcome

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)

# how often the flux executor asks whether its (nested) instance still runs
_LOST_INTERVAL = 1.0


class FluxJobsExecutor(Executor):
    """Each attempt a Flux job; submissions pipelined through :class:`FluxJobs`."""

    name = "flux"

    def __init__(self, files: TaskFiles, uri: str | None = None, max_inflight: int = 0,
                 env: dict[str, str] | None = None,
                 lost: Callable[[], str | None] | None = None) -> None:
        """``lost`` says why the instance is gone (None while it runs); asked about once a
        second while the cluster waits for tasks, it ends the cluster when the instance
        dies under it (a nested instance whose broker was killed)."""
        self.files = files
        self.uri, h, rl = jobspec.open_instance(uri, "the flux executor")
        self.jobs = FluxJobs(self.uri, h)
        self.nnodes = max(1, rl.all.nnodes)
        self.cores = max(1, rl.all.ncores // self.nnodes)  # a task runs on one node
        self.gpus = rl.all.ngpus // self.nnodes
        self.where = "each node of the Flux instance"
        # enough in flight to keep every core busy and the submit pipeline full, few enough
        # that priorities and a time limit still act on tasks not yet handed to Flux
        self.max_inflight = max_inflight or max(64, 4 * rl.all.ncores)
        self.env = jobspec.environment(os.environ if env is None else env, drop=jobspec.JOB)
        self.cwd = os.getcwd()
        self.done: queue.SimpleQueue[Attempt] = queue.SimpleQueue()
        self.inflight: dict[int, Submitted] = {}  # by id() of the attempt
        self._rfd, self._wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._lost = lost
        self._gone: str | None = None
        self._next_check = time.monotonic() + _LOST_INTERVAL

    def fits(self, task: Task) -> bool:
        return len(self.inflight) < self.max_inflight

    def running(self) -> int:
        return len(self.inflight)

    def wakeup_fd(self) -> int | None:
        return self._rfd

    def _jobspec(self, a: Attempt) -> Any:
        t = a.task
        jt = self.files.jobtask(a)
        a.argv = task_argv(a, jt)
        base = self.files.base(a)
        extra, fwd = task_env(a, base, "flux")
        a.stdout_path, a.stderr_path = base + ".out", base + ".err"
        js = self.jobs.jobspec(a.argv, **self._shape(t), cwd=self.cwd,
                               env=jobspec.environment(self.env, extra), name=t.name or t.id,
                               stdout=a.stdout_path, stderr=a.stderr_path)
        return js, jt, fwd

    @staticmethod
    def _shape(t: Task) -> dict[str, Any]:
        """The job's tasks, nodes, cores and GPUs, as :func:`jobspec.build` takes them."""
        return {"cores": t.cores, "gpus": t.gpus or None}

    def start(self, a: Attempt) -> Attempt | None:
        """Submit the attempt's job; the attempt itself when it cannot be a job."""
        a.start = time.time()
        a.t0 = time.monotonic()
        try:
            js, jt, fwd = self._jobspec(a)
        except (ValueError, TypeError, OSError) as err:
            a.status = ExitStatus.failed_to_start(f"invalid Flux job: {err}")
            return a
        # the job is handed over through the queue once, when it is over
        job = self.jobs.submit(js, lambda job, a=a: self._hand_over(a))
        self.inflight[id(a)] = Submitted(a, job, jt, fwd)
        return None

    def _hand_over(self, a: Attempt) -> None:
        self.done.put(a)
        with contextlib.suppress(OSError):  # the pipe is full: the reader wakes anyway
            os.write(self._wfd, b"x")

    def _check_lost(self) -> None:
        if self._lost is None or time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + _LOST_INTERVAL
        why = self._lost()
        if why:
            self._gone = why
            raise NestedInstanceLost(why)

    def poll(self, timeout: float) -> list[Attempt]:
        """The attempts whose jobs are over, waiting ``timeout`` seconds for one at most."""
        end = time.monotonic() + max(0.0, timeout)
        while True:
            self._check_lost()
            left = min(end - time.monotonic(), _LOST_INTERVAL if self._lost else math.inf)
            try:
                out = [self.done.get(timeout=left) if left > 0 else self.done.get_nowait()]
                break
            except queue.Empty:
                if time.monotonic() >= end:
                    return []
        while not self.done.empty():  # this thread is the only one to take from it
            out.append(self.done.get_nowait())
        with contextlib.suppress(OSError):  # the pipe is empty: every bell has been heard
            while os.read(self._rfd, 4096):
                pass
        if self._lost is not None and any(self.inflight[id(a)].job.status is None
                                          for a in out):
            self._check_reachable()
        return [self._finish(a) for a in out]

    def _check_reachable(self) -> None:
        """Jobs that ended without a finish event: when the instance died under them (its
        executor thread fails them all), that is the cluster's failure, not theirs."""
        try:
            jobspec.connect(self.uri, "Flux").rpc("broker.ping", {}).get()
            return
        except (FluxUnavailable, OSError) as err:  # connect()'s error: its cause says why
            why = err.__cause__ or err
            why = getattr(why, "strerror", None) or why
            gone = f"the Flux instance at {self.uri} is gone: {why}"
        # the parent tells why (the broker's end) once it has noticed: a moment at most
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            why = self._lost() if self._lost is not None else None
            if why:
                gone = why
                break
            time.sleep(0.1)
        self._gone = gone
        raise NestedInstanceLost(gone)

    def _finish(self, a: Attempt) -> Attempt:
        sub = self.inflight.pop(id(a))
        settle(a, sub.job.outcome())
        for path, attr in ((a.stdout_path, "stdout"), (a.stderr_path, "stderr")):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                data, trunc, size = self.files.read_tail(fd)
            finally:
                os.close(fd)
            setattr(a, attr, data)
            setattr(a, attr + "_info", (trunc, size))
            unlink_quietly(path)
        self.files.collect_job_records(a, sub.jobtask)
        if a.task.pipe_forward or a.task.file_forward:
            forward_files(a, sub.forward)
        return a

    def signal_all(self, signum: int, reason: str) -> None:
        """KILL every job, or for any other signal cancel it (Flux's TERM, then KILL)."""
        for sub in self.inflight.values():
            sub.attempt.stopped = sub.attempt.stopped or reason
        jobs = [sub.job for sub in self.inflight.values()]
        if signum == signal.SIGKILL:
            self.jobs.kill(jobs, signum)
        else:
            self.jobs.cancel(jobs, reason)

    def close(self) -> None:
        """Kill what still runs and collect it; nothing of a gone instance is waited for."""
        if self._gone is not None:
            # the instance is gone: nothing of its jobs is left to kill or to wait for
            self.jobs.close(wait=False, abandon=True)
            self.inflight.clear()
        else:
            self.signal_all(signal.SIGKILL, "shutdown")
            self.jobs.close(wait=True)
            while self.inflight:
                self.poll(1.0)  # collect what the kills ended, for their files
        os.close(self._rfd)
        os.close(self._wfd)


def settle(a: Attempt, out: Outcome) -> None:
    """An attempt's status, start, duration and Flux id, from how its job ended."""
    a.status, a.start, a.duration = out.status, out.start, out.duration
    a.flux_id = out.f58


@dataclass(slots=True, eq=False)
class Submitted:
    """What the flux executor holds for an attempt it submitted, until it is collected."""

    attempt: Attempt
    job: Job
    jobtask: tuple[str, str, str] | None  # a job task's files (TaskFiles.jobtask)
    forward: dict[str, str]  # PMC -f VAR=FILE: the file each VAR names
