"""The Flux launcher: the task through Flux instead of as a child process.

- ``"placement": "flux"``: the task is a Flux job of the instance fluxlite runs in, with the
  spec's tasks, nodes, cores and GPUs, so an MPI task spans the allocation's nodes;
- ``"placement": "nested"``: the task is the initial program of a new Flux sub-instance of
  that size (what ``flux batch``/``flux alloc`` create), so a task that submits work of its
  own gets a scheduler of its own; the sub-instance ends with the task.

:class:`FluxLauncher` implements :class:`fluxlite.execute.base.Launcher`. The task is
watched through its eventlog; the checkpoint schedule and fluxlite's own signals reach it
through ``flux.job.kill`` (then cancel), since it is not a child of fluxlite.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from fluxlite.errors import ExecError, FluxUnavailable
from fluxlite.execute.base import ExitStatus, Launcher, SignalEvent, TaskResult, signal_name
from fluxlite.execute.local import LocalLauncher
from fluxlite.flux import jobspec
from fluxlite.spec import JobSpec, Resources

logger = logging.getLogger(__name__)

# Waiting for the eventlog after a cancel: Flux kills what is left after its own kill-timeout,
# so a job that has not ended well past that is lost (its broker or our connection).
_LOST_AFTER = 120.0
_CANCEL_AFTER_KILL = 2.0


def launcher_for(spec: JobSpec, ctx: Any) -> Any:
    """A launcher class for ``spec.placement``, called like LocalLauncher."""
    if spec.placement == "local":
        return LocalLauncher
    if ctx is None:
        logger.warning("placement '%s' needs a flux instance (FLUX_URI and the flux python "
                       "bindings); running the task locally", spec.placement)
        return LocalLauncher
    if spec.placement not in ("flux", "nested"):
        raise FluxUnavailable(f"placement: unknown placement '{spec.placement}'")
    return functools.partial(FluxLauncher, ctx=ctx, resources=spec.resources,
                             nested=spec.placement == "nested", name=spec.name)


class FluxCalls:
    """The Flux calls a launcher makes, on one instance: submit, kill, cancel, and a job's
    eventlog (followed on a handle of its own: handles are not shared between threads)."""

    #: the jobspec of a job (:func:`fluxlite.flux.jobspec.build`)
    jobspec = staticmethod(jobspec.build)

    def __init__(self, handle: Any, uri: str) -> None:
        self.handle, self.uri = handle, uri

    def submit(self, js: Any) -> int:
        """Submit the jobspec; the job's id. OSError when Flux refuses it."""
        import flux.job  # type: ignore[import-not-found]

        return flux.job.submit(self.handle, js)

    def jobid(self, jid: int) -> Any:
        """The id as a ``flux.job.JobID`` (its ``f58`` and ``int()``)."""
        import flux.job  # type: ignore[import-not-found]

        return flux.job.JobID(jid)

    def kill(self, jid: int, signum: int) -> None:
        """Send ``signum`` to every task of the job."""
        import flux.job  # type: ignore[import-not-found]

        flux.job.kill(self.handle, jid, signum)

    def cancel(self, jid: int, note: str) -> None:
        """Cancel the job (Flux TERMs it, then KILLs after its kill-timeout)."""
        import flux.job  # type: ignore[import-not-found]

        flux.job.cancel(self.handle, jid, note)

    def events(self, jid: int) -> Iterator[Any]:
        """The job's eventlog events (``name``, ``timestamp``, ``context``), as they come."""
        import flux.job  # type: ignore[import-not-found]

        return flux.job.event_watch(jobspec.connect(self.uri), jid)


class FluxLauncher(Launcher):
    """Starts the task as a Flux job and drives it to its end (see module docstring).

    The task is not below fluxlite: process-tree monitoring does not apply to it."""

    monitors_tree = False

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], *, ctx: Any,
                 resources: Resources, nested: bool = False, name: str = "",
                 calls: FluxCalls | None = None, **kw: Any) -> None:
        """``ctx`` is the Flux context (its handle and uri); ``calls`` what reaches Flux
        (:class:`FluxCalls` on ``ctx`` unless given)."""
        kw.setdefault("usr1", "forward")
        super().__init__(argv, cwd, env, **kw)
        self.ctx = ctx
        self.calls = calls if calls is not None else FluxCalls(ctx.handle, ctx.uri)
        self.resources = resources
        self.nested = nested
        self.name = name
        self.flux_jobid: str | None = None  # F58, for the record's jobids
        self.flux_jobid_int: int | None = None
        self.flux_info: dict[str, Any] = {}
        self._wake = threading.Event()
        self._cancelled_at: float | None = None
        self._cancel_at: tuple[float, str] | None = None
        self._events: dict[str, float] = {}
        self._status: int | None = None
        self._exception: dict[str, Any] | None = None
        self._watch_error: str | None = None

    @property
    def _target(self) -> str:
        return f"flux job {self.flux_jobid}"

    # -- start ------------------------------------------------------------------
    def start(self) -> None:
        """Submit the task's job (ExecError when Flux refuses it) and follow its eventlog."""
        s = self.schedule
        # Flux's own limit is a safety net for the case fluxlite itself is killed: it never
        # fires first, since the schedule kills the task before it
        duration = None
        if s.kill_after is not None:
            duration = s.kill_after + self.kill_grace + 60.0
        res = self.resources
        try:
            js = self.calls.jobspec(self.argv, kind="nest" if self.nested else "command",
                                    count=max(res.tasks, res.nodes or 1),
                                    cores=res.cores_per_task, gpus=res.gpus_per_task or None,
                                    nodes=res.nodes, cwd=self.cwd, env=self.env,
                                    name=self.name or os.path.basename(self.argv[0]),
                                    stdin=self.stdin, stdout=self.stdout, stderr=self.stderr,
                                    duration=duration, append=self.append)
        except ValueError as err:
            raise ExecError(f"resources: {err}") from err
        self.result.start = time.time()
        self._t0 = time.monotonic()
        try:
            jid = self.calls.submit(js)
        except OSError as err:
            raise ExecError(f"flux submit of {os.path.basename(self.argv[0])} failed: "
                            f"{err.strerror or err}") from err
        jid = self.calls.jobid(jid)
        self.flux_jobid, self.flux_jobid_int = jid.f58, int(jid)
        self.flux_info = {"jobid": jid.f58, "jobid_int": int(jid),
                          "placement": "nested" if self.nested else "flux",
                          "tasks": max(self.resources.tasks, self.resources.nodes or 1),
                          "nodes": self.resources.nodes,
                          "cores_per_task": self.resources.cores_per_task,
                          "gpus_per_task": self.resources.gpus_per_task}
        logger.info("task submitted to flux as job %s (%s)", jid.f58,
                    "in a sub-instance of its own" if self.nested else "in this instance")
        self._arm()
        threading.Thread(target=self._watch, name="fluxlite-flux-watch", daemon=True).start()

    def _watch(self) -> None:
        """Follow the job's eventlog to its end, on a handle of its own (handles are not
        shared between threads)."""
        try:
            for ev in self.calls.events(self.flux_jobid_int):
                self._events.setdefault(ev.name, ev.timestamp)
                if ev.name == "finish":
                    self._status = int(ev.context.get("status", 0))
                elif ev.name == "exception" and self._exception is None:
                    ctx = ev.context
                    if int(ctx.get("severity", 0)) == 0:
                        self._exception = {"type": ctx.get("type"), "note": ctx.get("note")}
                elif ev.name == "clean":
                    break
        except Exception as err:  # noqa: BLE001 - reported as the task's failure
            self._watch_error = str(err) or type(err).__name__
        finally:
            self._done.set()
            self._wake.set()

    # -- drive ---------------------------------------------------------------------
    def wait(self) -> TaskResult:
        while not self._done.is_set():
            deadline = self._next_deadline()
            timeout = 3600.0 if deadline is None else max(0.0, deadline - time.monotonic())
            self._wake.wait(min(timeout, 3600.0))
            self._wake.clear()
            self._handle_pending()
            self._check_deadlines()
        return self._finish()

    def _finish(self) -> TaskResult:
        res = self.result
        ev = self._events
        if "start" in ev:
            res.start = ev["start"]
            res.duration = ev.get("finish", ev.get("clean", time.time())) - ev["start"]
        else:
            res.duration = time.monotonic() - self._t0
        if self._status is not None:
            res.status = ExitStatus.from_wait(self._status)
        elif self._watch_error is not None:
            res.status = ExitStatus.failed_to_start(f"lost flux job {self.flux_jobid}: "
                                                    f"{self._watch_error}")
        else:
            exc = self._exception or {}
            why = f"flux job {self.flux_jobid}: {exc.get('type', 'exception')}"
            if exc.get("note"):
                why += f": {exc['note']}"
            res.status = ExitStatus.failed_to_start(why)
        if self._exception is not None:
            self.flux_info["exception"] = self._exception
        if "start" in ev:
            self.flux_info["t_run"] = ev["start"]
        return res

    def _next_deadline(self) -> float | None:
        cands = [d for d in (super()._next_deadline(),) if d is not None]
        with self._lock:
            if self._cancelled_at is not None:
                cands.append(self._cancelled_at + _LOST_AFTER)
            if self._cancel_at is not None:
                cands.append(self._cancel_at[0])
        return min(cands) if cands else None

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        if self._cancelled_at is not None and now >= self._cancelled_at + _LOST_AFTER:
            self._watch_error = "did not end after it was cancelled"
            self._done.set()
            return
        pending_cancel = self._cancel_at
        if pending_cancel is not None and now >= pending_cancel[0]:
            self._cancel(pending_cancel[1])
        super()._check_deadlines()

    # -- signals --------------------------------------------------------------------
    def _interrupt_wait(self) -> None:
        self._wake.set()

    def send(self, signum: int, reason: str) -> None:
        """``flux job kill`` of the job with ``signum``."""
        if self.flux_jobid_int is None or self._done.is_set():
            return
        try:
            self.calls.kill(self.flux_jobid_int, signum)
        except OSError as err:
            # the job may have ended between the check and the RPC
            logger.debug("flux job kill %s: %s", self.flux_jobid, err)
            return
        self.events.append(SignalEvent(time.time(), signal_name(signum), "sent",
                                       self._target, reason))

    def kill_tree(self, reason: str) -> None:
        """SIGKILL every task of the job, then cancel it, so Flux reaps what is left."""
        if not self.escalation.kill_once():
            return
        if self.flux_jobid_int is None or self._done.is_set():
            return
        if self.nested:
            # a sub-instance is cancelled, not killed: its broker then takes down the jobs
            # of its own (a SIGKILL would orphan them); Flux sends SIGKILL after its
            # kill-timeout
            self._cancel(reason)
            return
        self.send(signal.SIGKILL, reason)
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
        try:
            self.calls.cancel(self.flux_jobid_int, f"fluxlite: {reason}")
        except OSError as err:
            logger.debug("flux job cancel %s: %s", self.flux_jobid, err)
        self._cancelled_at = time.monotonic()
