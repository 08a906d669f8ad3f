"""The Flux launcher: the task through Flux instead of as a child process.

- ``"placement": "flux"``: the task is a Flux job of the instance fluxlite runs in, with the
  spec's tasks, nodes, cores and GPUs, so an MPI task spans the allocation's nodes;
- ``"placement": "nested"``: the task is the initial program of a new Flux sub-instance of
  that size (what ``flux batch``/``flux alloc`` create), so a task that submits work of its
  own gets a scheduler of its own; the sub-instance ends with the task.

:class:`FluxLauncher` implements :class:`fluxlite.execute.base.Launcher` on one job of
:mod:`fluxlite.flux.jobs` (submitted, followed and read as the cluster's are); the schedule
and fluxlite's own signals reach it through ``flux.job.kill`` (then cancel).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

from fluxlite.errors import ExecError, FluxUnavailable
from fluxlite.execute.base import (
    Cause,
    Launcher,
    SignalEvent,
    TaskCommand,
    TaskResult,
    signal_name,
)
from fluxlite.execute.local import LocalLauncher
from fluxlite.spec import Resources

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)

# Waiting for the eventlog after a cancel: Flux kills what is left after its own kill-timeout,
# so a job that has not ended well past that is lost (its broker or our connection).
_LOST_AFTER = 120.0
_CANCEL_AFTER_KILL = 2.0


def launcher_for(cmd: TaskCommand, stdio: tuple[Any, Any, Any], *, placement: str = "local",
                 ctx: Any = None, resources: Resources | None = None, name: str = "",
                 on_orphaned: Callable[[], None] | None = None,
                 linger: Callable[[], Any] | None = None, **kw: Any) -> Launcher:
    """The launcher of a task, the one way one is made for a job: a :class:`LocalLauncher`
    for ``placement`` "local" (given ``on_orphaned`` and ``linger``), a
    :class:`FluxLauncher` for "flux" and "nested" (given ``resources`` and ``name``) when
    ``ctx``, the Flux context, is there, else a local one with a warning. ``stdio`` is the
    task's stdin, stdout and stderr; ``kw`` the contract's own (``schedule``,
    ``kill_grace``, ``usr1``, ``events``). With a Flux context, the launcher re-derives its
    schedule from the time Flux says is left (``usr1`` "schedule")."""
    stdin, stdout, stderr = stdio
    la: Launcher
    if placement != "local" and ctx is None:
        logger.warning("placement '%s' needs a flux instance (FLUX_URI and the flux python "
                       "bindings); running the task locally", placement)
    elif placement != "local" and placement not in ("flux", "nested"):
        raise FluxUnavailable(f"placement: unknown placement '{placement}'")
    if placement == "local" or ctx is None:
        la = LocalLauncher(cmd.argv, cmd.cwd, cmd.env, stdin=stdin, stdout=stdout,
                           stderr=stderr, on_orphaned=on_orphaned, linger=linger, **kw)
    else:
        la = FluxLauncher(cmd.argv, cmd.cwd, cmd.env, stdin=stdin, stdout=stdout,
                          stderr=stderr, ctx=ctx, resources=resources or Resources(),
                          nested=placement == "nested", name=name, **kw)
    if ctx is not None:
        la.timeleft = ctx.timeleft
    return la


class FluxLauncher(Launcher):
    """Starts the task as a Flux job and drives it to its end (see module docstring).

    The task is not below fluxlite: process-tree monitoring does not apply to it."""

    monitors_tree = False

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], *, ctx: Any,
                 resources: Resources, nested: bool = False, name: str = "",
                 jobs: Any = None, **kw: Any) -> None:
        """``ctx`` is the Flux context (its handle and uri); ``jobs`` what reaches Flux
        (a :class:`FluxJobs` on ``ctx``, made at :meth:`start`, unless given)."""
        kw.setdefault("usr1", "forward")
        super().__init__(argv, cwd, env, **kw)
        self.ctx = ctx
        self.jobs = jobs
        self.job: Any = None  # the Job, once submitted
        self.resources = resources
        self.nested = nested
        self.name = name
        self.flux_jobid: str | None = None  # F58, for the record's jobids
        self.flux_info: dict[str, Any] = {}
        self._wake = threading.Event()
        self._cancelled_at: float | None = None
        self._cancel_at: tuple[float, str] | None = None

    # -- start ------------------------------------------------------------------
    def start(self) -> None:
        """Submit the task's job (ExecError when Flux refuses it) and follow its eventlog."""
        # Flux's own limit is a safety net for the case fluxlite itself is killed: it never
        # fires first, since the schedule kills the task before it
        kill_after = self.schedule.kill_after
        duration = None if kill_after is None else kill_after + self.kill_grace + 60.0
        res = self.resources
        if self.jobs is None:
            from fluxlite.flux.jobs import FluxJobs  # only a task placed on Flux needs it

            self.jobs = FluxJobs(self.ctx.uri, self.ctx.handle)
        tasks = max(res.tasks, res.nodes or 1)
        try:
            js = self.jobs.jobspec(self.argv, kind="nest" if self.nested else "command",
                                   count=tasks, cores=res.cores_per_task,
                                   gpus=res.gpus_per_task or None, nodes=res.nodes,
                                   cwd=self.cwd, env=self.env,
                                   name=self.name or os.path.basename(self.argv[0]),
                                   stdin=self.stdin, stdout=self.stdout, stderr=self.stderr,
                                   duration=duration, append=self.append)
        except ValueError as err:
            raise ExecError(f"resources: {err}") from err
        self.result.start = time.time()
        self._t0 = time.monotonic()
        # the job is over (in the thread that follows it): wait() returns
        self.job = self.jobs.submit(js, lambda _job: (self._done.set(), self._wake.set()))
        try:
            self.jobs.wait_submitted(self.job)
        except Exception as err:  # noqa: BLE001 - the submission's own error, in one line
            self.jobs.close(wait=False)
            why = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise ExecError(f"flux submit of {os.path.basename(self.argv[0])} failed: "
                            f"{why}") from err
        self.flux_jobid = self.job.f58
        self.flux_info = {"jobid": self.job.f58, "jobid_int": self.job.jobid,
                          "placement": "nested" if self.nested else "flux", "tasks": tasks,
                          "nodes": res.nodes, "cores_per_task": res.cores_per_task,
                          "gpus_per_task": res.gpus_per_task}
        logger.info("task submitted to flux as job %s (%s)", self.job.f58,
                    "in a sub-instance of its own" if self.nested else "in this instance")
        self._arm()

    def job_ids(self) -> dict[str, str]:
        """The job's F58 id as ``flux-task``, once it is submitted."""
        return {"flux-task": self.flux_jobid} if self.flux_jobid else {}

    def job_info(self) -> dict[str, Any]:
        """The job's ids, placement and size; its exception and start as it ends."""
        return self.flux_info

    # -- drive ---------------------------------------------------------------------
    def wait(self) -> TaskResult:
        """Until the job is over, applying the schedule and the signals; its result."""
        while not self._done.is_set():
            deadline = self._next_deadline()
            timeout = 3600.0 if deadline is None else max(0.0, deadline - time.monotonic())
            self._wake.wait(min(timeout, 3600.0))
            self._wake.clear()
            self._handle_pending()
            self._check_deadlines()
        return self._finish()

    def _finish(self) -> TaskResult:
        out = self.job.outcome()
        self.jobs.close(wait=False)
        res = self.result
        res.status = out.status
        res.start, res.duration = out.start, out.duration
        if out.exception is not None:
            self.flux_info["exception"] = out.exception
        if self.job.started is not None:
            self.flux_info["t_run"] = self.job.started
        return res

    def _next_deadline(self) -> float | None:
        lost = None if self._cancelled_at is None else self._cancelled_at + _LOST_AFTER
        cancel = self._cancel_at  # read once: kill_tree and _cancel change it
        cands = (super()._next_deadline(), lost, None if cancel is None else cancel[0])
        return min((d for d in cands if d is not None), default=None)

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        if self._cancelled_at is not None and now >= self._cancelled_at + _LOST_AFTER:
            self.job.lost("did not end after it was cancelled")
            return
        pending_cancel = self._cancel_at
        if pending_cancel is not None and now >= pending_cancel[0]:
            self._cancel(pending_cancel[1])
        super()._check_deadlines()

    # -- signals --------------------------------------------------------------------
    def _interrupt_wait(self) -> None:
        self._wake.set()

    def send(self, signum: int, reason: str, cause: Cause = Cause.STOP) -> None:
        """``flux job kill`` of the job with ``signum``."""
        # the job may have ended between the check and the RPC: then nothing was sent
        if self.job is None or self._done.is_set() or not self.jobs.kill([self.job], signum):
            return
        self.events.append(SignalEvent(time.time(), signal_name(signum), "sent",
                                       f"flux job {self.flux_jobid}", reason, cause))

    def kill_tree(self, reason: str, cause: Cause = Cause.STOP) -> None:
        """SIGKILL every task of the job, then cancel it, so Flux reaps what is left."""
        if not self.escalation.kill_once():
            return
        if self.job is None or self._done.is_set():
            return
        if self.nested:
            # a sub-instance is cancelled, not killed: its broker then takes down the jobs
            # of its own (a SIGKILL would orphan them); Flux sends SIGKILL after its
            # kill-timeout
            self._cancel(reason)
            return
        self.send(signal.SIGKILL, reason, cause)
        # the cancel follows a moment later: sent at once, it would have the job shell
        # TERMed before it has delivered the KILL
        with self._lock:
            self._cancel_at = (time.monotonic() + _CANCEL_AFTER_KILL, reason)
        self._wake.set()

    def _cancel(self, reason: str) -> None:
        with self._lock:
            self._cancel_at = None
        if self._cancelled_at is not None or self._done.is_set():
            return
        self.jobs.cancel([self.job], f"fluxlite: {reason}")
        self._cancelled_at = time.monotonic()
