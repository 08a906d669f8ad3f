"""The one way fluxlite submits and follows Flux jobs, and the one reading of how they ended,
for the Flux launcher (one placed task) and the cluster's Flux executor (many).

:class:`Job` is a job as its eventlog tells it, and the one translation of that into an
:class:`Outcome`. :class:`FluxJobs` submits through ``flux.job.FluxExecutor`` (pipelined:
many jobs in flight from one thread), feeds each job's events to its Job, kills and cancels.
A job is over at its finish event (its wait status), at a fatal exception before it started
(no finish follows), at its clean event, or when its eventlog or submission is lost: its
``on_end`` is called then, once, in the executor's thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fluxlite.execute.base import ExitStatus
from fluxlite.flux import import_flux, jobspec

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Outcome:
    """How a job ended: ``start`` is its start event (epoch), or its submission when it
    never started; ``exception`` the first fatal one (its type and note), if any."""

    status: ExitStatus
    start: float
    duration: float
    exception: dict[str, Any] | None
    f58: str | None


@dataclass(slots=True, eq=False)
class Job:
    """One Flux job, as its events tell it: fed by :class:`FluxJobs` (or a test's fake)
    through :meth:`identify`, :meth:`event` and :meth:`lost`; ``on_end(job)`` is called
    once, when it is over (module docstring). Times are epoch seconds."""

    on_end: Callable[[Job], None] | None = None
    jobid: int | None = None
    f58: str | None = None
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    status: int | None = None  # the wait status of the finish event
    exception: dict[str, Any] | None = None
    error: str | None = None  # why its eventlog (or its submission) was lost
    ended: float | None = None  # when it was over
    fut: Any = None  # what the submitter tracks the job by

    def identify(self, jobid: int, f58: str) -> None:
        """The id Flux gave the job."""
        self.jobid, self.f58 = int(jobid), f58

    def event(self, ev: Any) -> None:
        """An eventlog event (``name``, ``timestamp``, ``context``)."""
        name, ctx = ev.name, ev.context
        if name == "start":
            self.started = ev.timestamp
        elif name == "finish":
            self.finished = ev.timestamp
            self.status = int(ctx.get("status", 0))
            self._end()
        elif (name == "exception" and self.exception is None
              and int(ctx.get("severity", 0)) == 0):
            self.exception = {"type": ctx.get("type"), "note": ctx.get("note")}
            if self.started is None:
                self._end()
        elif name == "clean":
            self._end()

    def lost(self, error: str) -> None:
        """The job's eventlog (or its submission) failed: it is over, for fluxlite."""
        if self.ended is None:
            self.error = error
            self._end()

    def _end(self) -> None:
        if self.ended is not None:
            return
        self.ended = time.time()
        if self.on_end is not None:
            self.on_end(self)

    def outcome(self) -> Outcome:
        """The one translation of the job's events into how it ended."""
        what = f"flux job {self.f58}"
        if self.status is not None:
            status = ExitStatus.from_wait(self.status)
        elif self.error is not None:
            status = ExitStatus.failed_to_start(
                f"lost {what}: {self.error}" if self.f58 else f"flux submit failed: {self.error}")
        elif self.exception is not None:
            kind, note = self.exception.get("type") or "exception", self.exception.get("note")
            status = ExitStatus.failed_to_start(f"{what}: {kind}" + (f": {note}" if note else ""))
        else:
            status = ExitStatus.failed_to_start(f"{what} ended without a finish event")
        start = self.started if self.started is not None else self.submitted
        end = self.finished or self.ended or time.time()
        return Outcome(status, start, max(0.0, end - start), self.exception, self.f58)


class FluxJobs:
    """Submits and follows jobs of the instance at ``uri``; kills and cancels them, on
    ``handle`` (a handle of the calling thread; :func:`jobspec.connect`'s when None)."""

    #: the jobspec of a job (:func:`fluxlite.flux.jobspec.build`)
    jobspec = staticmethod(jobspec.build)

    def __init__(self, uri: str, handle: Any = None) -> None:
        flux = import_flux()
        self.uri = uri
        self.h = handle if handle is not None else jobspec.connect(uri, "Flux")
        self._job = flux.job
        self._fatal = flux.job.event.JobException
        self._ex = flux.job.FluxExecutor(poll_interval=0.01, handle_args=(uri,))
        _quiet_executor_threads()

    def submit(self, js: Any, on_end: Callable[[Job], None] | None = None) -> Job:
        """Hand the jobspec to the executor's thread (it does not wait for Flux)."""
        job = Job(on_end)
        job.fut = fut = self._ex.submit(js)
        fut.add_jobid_callback(lambda f: self._on_jobid(job))
        for name in ("start", "exception", "finish", "clean"):  # what a Job reads
            fut.add_event_callback(name, lambda f, ev: job.event(ev))
        fut.add_done_callback(lambda f: self._on_done(job, f))
        return job

    def wait_submitted(self, job: Job) -> None:
        """Until Flux has accepted the job (its id known); the submission's error if not."""
        jid = job.fut.jobid()
        job.identify(jid, self._job.JobID(jid).f58)

    def _on_jobid(self, job: Job) -> None:
        with contextlib.suppress(Exception):  # a refused submission: _on_done says it
            self.wait_submitted(job)

    def _on_done(self, job: Job, fut: Any) -> None:
        # done at the finish or a fatal exception (both events), or lost, or never submitted
        if fut.cancelled():
            job.lost("cancelled before it was submitted")
            return
        err = fut.exception()
        if err is not None and not isinstance(err, self._fatal):
            job.lost(str(err) or type(err).__name__)

    def kill(self, jobs: Iterable[Job], signum: int) -> int:
        """``signum`` to every task of each job (one not yet Flux's is dropped); how many."""
        return self._each(jobs, lambda jid: self._job.kill_async(self.h, jid, signum))

    def cancel(self, jobs: Iterable[Job], note: str) -> int:
        """Cancel each job (TERM, KILL after Flux's kill-timeout; pending, it never runs)."""
        return self._each(jobs, lambda jid: self._job.cancel_async(self.h, jid, note))

    def _each(self, jobs: Iterable[Job], call: Callable[[int], Any]) -> int:
        reached = 0
        futs = []
        for job in jobs:
            if job.ended is not None:
                continue
            if job.jobid is None:
                reached += bool(job.fut is not None and job.fut.cancel())
                continue
            try:
                futs.append((job, call(job.jobid)))
            except OSError as err:
                logger.debug("flux job %s: %s", job.f58, err.strerror or err)
        for job, f in futs:
            try:
                f.get()
                reached += 1
            except OSError as err:  # it may have ended meanwhile
                logger.debug("flux job %s: %s", job.f58, err.strerror or err)
        return reached

    def close(self, wait: bool = True, abandon: bool = False) -> None:
        """Stop the executor: ``wait`` for the jobs' events to end; ``abandon`` what was
        not handed to Flux yet (an instance that is gone)."""
        self._ex.shutdown(wait=wait, cancel_futures=abandon)


def _quiet_executor_threads() -> None:
    """A FluxExecutor's thread raises when its instance goes away under it: that is told in
    one line by its user (a lost job, NestedInstanceLost), not as the thread's traceback."""
    if getattr(threading.excepthook, "fluxlite", False):
        return
    previous = threading.excepthook

    def hook(args: Any) -> None:
        if args.thread is not None and args.thread.name.startswith("FluxExecutor"):
            logger.debug("%s ended: %s", args.thread.name, args.exc_value)
            return
        previous(args)

    hook.fluxlite = True  # type: ignore[attr-defined]
    threading.excepthook = hook
