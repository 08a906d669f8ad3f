"""The one way fluxlite submits and follows Flux jobs, and the one reading of how they ended,
for the Flux launcher (one placed task), the cluster's Flux executor (many), the pool's job,
a nested instance and ``fluxlite submit``'s batch job: no other module calls the job verbs of
``flux.job`` (submit, the eventlog watches, kill, cancel, the result, job-list). The pool's
job alone is submitted before the ``flux`` package is imported, over flux-core's C API
(:mod:`fluxlite.cluster.pool.launch`, which cancels it only until the coordinator takes
it over), and followed here from its id (:meth:`FluxJobs.by_id`).

:class:`Job` is a job as its eventlog tells it, and the one translation of that into an
:class:`Outcome`. :class:`FluxJobs` submits through ``flux.job.FluxExecutor`` (pipelined:
many jobs in flight from one thread), feeds each job's events to its Job, kills and cancels.
A job is over at its finish event (its wait status), at a fatal exception before it started
(no finish follows), at its clean event, or when its eventlog or submission is lost: its
``on_end`` is called then, once, in the executor's thread.

A job of its own kind — the pool's workers, a nested instance, a batch job — is submitted
at once from the calling thread (:meth:`FluxJobs.submit_sync`) and followed by its caller:
its eventlogs watched in the handle's reactor (:meth:`FluxJobs.watch`) or read to their end
(:meth:`FluxJobs.events`), its state asked of job-list (:meth:`FluxJobs.info`), its result
waited for (:meth:`FluxJobs.result`); it is cancelled, with a reason, as any other.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from fluxlite.execute.base import ExitStatus
from fluxlite.flux import import_flux, jobspec

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

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


@dataclass(slots=True)
class Watch:
    """One eventlog of a job followed in a handle's reactor (:meth:`FluxJobs.watch`)."""

    fut: Any

    def stop(self) -> None:
        """Stop following it (nothing when it has ended, or its instance is gone)."""
        with contextlib.suppress(OSError):
            self.fut.cancel()


class FluxJobs:
    """Submits and follows jobs of the instance at ``uri``; kills and cancels them, on
    ``handle`` (a handle of the calling thread; :func:`jobspec.connect`'s when None)."""

    #: the jobspec of a job (:func:`fluxlite.flux.jobspec.build`)
    jobspec = staticmethod(jobspec.build)

    def __init__(self, uri: str | None, handle: Any = None) -> None:
        flux = import_flux()
        self.uri = uri
        self.h = handle if handle is not None else jobspec.connect(uri, "Flux")
        self._job = flux.job
        self._fatal = flux.job.event.JobException
        self._executor: Any = None

    @property
    def _ex(self) -> Any:
        """The executor of :meth:`submit`, started with the first job handed to it."""
        if self._executor is None:
            self._executor = import_flux().job.FluxExecutor(poll_interval=0.01,
                                                            handle_args=(self.uri,))
            _quiet_executor_threads()
        return self._executor

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

    # -- one job, from the calling thread: the pool's job, a nested instance, a batch job ----
    def submit_sync(self, js: Any) -> Job:
        """Submit a prebuilt jobspec now and wait until Flux has accepted it: its Job, with
        its id (OSError when Flux refuses it). Its events are its caller's to follow."""
        job = Job()
        job.identify(*self._ids(self._job.submit(self.h, js)))
        return job

    def by_id(self, jobid: int | str) -> Job:
        """The Job of an id Flux gave, in any form Flux writes one (a number, F58...)."""
        job = Job()
        job.identify(*self._ids(jobid))
        return job

    def _ids(self, jobid: int | str) -> tuple[int, str]:
        jid = self._job.JobID(jobid)
        return int(jid), jid.f58

    def watch(self, job: Job, eventlog: str, on_event: Callable[[Any], None]) -> Watch:
        """Follow one of the job's eventlogs (``eventlog``, ``guest.exec.eventlog``,
        ``guest.output``) in the handle's reactor: ``on_event(entry)`` for each entry (its
        ``name``, ``timestamp``, ``context``), ``on_event(None)`` at its end or when it
        cannot be read."""
        def got(fut: Any) -> None:
            try:
                ev = fut.get_event()
            except OSError:
                ev = None
            on_event(ev)

        return Watch(self._job.event_watch_async(self.h, job.jobid, eventlog=eventlog)
                     .then(got))

    def events(self, job: Job, eventlog: str) -> Iterator[Any]:
        """Every entry of one of the job's eventlogs, read now to its end (the job's, for
        an eventlog that is complete); OSError when it cannot be read."""
        return iter(self._job.event_watch(self.h, job.jobid, eventlog))

    def info(self, job: Job, attrs: Iterable[str]) -> Any:
        """The job as job-list lists it, with ``attrs``; None while job-list has not seen
        it yet. OSError when the instance cannot be asked."""
        try:
            return self._job.job_list_id(self.h, job.jobid, attrs=list(attrs)).get_jobinfo()
        except FileNotFoundError:
            return None

    def result(self, job: Job) -> dict[str, Any]:
        """Wait until the job is over: Flux's summary of it (``waitstatus``, ``t_run``,
        ``result``, ``exception_type`` and ``exception_note``)."""
        return dict(self._job.result_async(self.h, job.jobid).get_dict())

    def critical_ranks(self, job: Job, ranks: str) -> None:
        """Only the job's shells on ``ranks`` are critical: the loss of another node ends
        its tasks there, not the job. OSError when Flux refuses it."""
        self.h.rpc("job-exec.critical-ranks", {"id": job.jobid, "ranks": ranks}).get()

    # -- signals, for a job of either kind ------------------------------------------------
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
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=abandon)


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
