"""The cluster's Flux executor: every attempt a Flux job in an instance, submitted
asynchronously so that many submissions are in flight at once; Flux places them on the
instance's cores and GPUs. A nested instance (hierarchical scheduling) is
:class:`fluxlite.flux.instance.NestedInstance`."""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from fluxlite.cluster.executors import (
    Executor,
    TaskFiles,
    _unlink,
    forward_files,
    task_argv,
    task_env,
)
from fluxlite.cluster.formats import Task
from fluxlite.cluster.records import Attempt
from fluxlite.errors import FluxUnavailable
from fluxlite.execute.base import ExitStatus
from fluxlite.flux import jobspec
from fluxlite.flux.instance import NestedInstanceLost

logger = logging.getLogger(__name__)

# how often the flux executor asks whether its (nested) instance still runs
_LOST_INTERVAL = 1.0


class FluxExecutor(Executor):
    """Each attempt a Flux job; submissions pipelined through flux.job.FluxExecutor."""

    name = "flux"

    def __init__(self, files: TaskFiles, uri: str | None = None, max_inflight: int = 0,
                 env: dict[str, str] | None = None,
                 lost: Callable[[], str | None] | None = None) -> None:
        """``lost`` says why the instance is gone (None while it runs); asked about once a
        second while the cluster waits for tasks, it ends the cluster when the instance
        dies under it (a nested instance whose broker was killed)."""
        from fluxlite.flux import import_flux

        import_flux()  # one clear error when the bindings are missing
        import flux  # type: ignore[import-not-found]
        import flux.job  # type: ignore[import-not-found]
        import flux.resource  # type: ignore[import-not-found]

        self.flux = flux
        self.files = files
        self.uri = uri or os.environ.get("FLUX_URI")
        if not self.uri:
            raise FluxUnavailable("the flux executor needs a Flux instance (FLUX_URI is unset)")
        try:
            self.h = flux.Flux(self.uri)
            rl = flux.resource.resource_list(self.h).get()
        except OSError as err:
            raise FluxUnavailable(f"cannot connect to Flux at {self.uri}: {err}") from err
        self.nnodes = max(1, rl.all.nnodes)
        self.cores = max(1, rl.all.ncores // self.nnodes)  # a task runs on one node
        self.total_cores = rl.all.ncores
        self.gpus = rl.all.ngpus // self.nnodes
        self.where = "each node of the Flux instance"
        # enough in flight to keep every core busy and the submit pipeline full, few enough
        # that priorities and a time limit still act on tasks not yet handed to Flux
        self.max_inflight = max_inflight or max(64, 4 * self.total_cores)
        self.env = jobspec.environment(os.environ if env is None else env, drop=jobspec.JOB)
        self.cwd = os.getcwd()
        self.done: queue.SimpleQueue[Attempt] = queue.SimpleQueue()
        self.inflight: dict[int, Attempt] = {}
        self._seq = 0
        self._rfd, self._wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.ex = flux.job.FluxExecutor(poll_interval=0.01, handle_args=(self.uri,))
        self._lost = lost
        self._gone: str | None = None
        _quiet_executor_threads()
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
        js = jobspec.build(a.argv, cores=t.cores, gpus=t.gpus or None, cwd=self.cwd,
                           env=jobspec.environment(self.env, extra), name=t.name or t.id,
                           stdout=a.stdout_path, stderr=a.stderr_path)
        return js, jt, fwd

    def start(self, a: Attempt) -> Attempt | None:
        a.start = time.time()
        a.t0 = time.monotonic()
        try:
            js, jt, fwd = self._jobspec(a)
        except (ValueError, TypeError, OSError) as err:
            a.status = ExitStatus.failed_to_start(f"invalid Flux job: {err}")
            return a
        self._seq += 1
        key = self._seq
        h: dict[str, Any] = {"key": key, "jt": jt, "fwd": fwd, "fut": None, "jobid": None,
                             "started": False, "finish": None, "reported": False}
        a.handle = h
        self.inflight[key] = a
        fut = self.ex.submit(js)
        h["fut"] = fut
        fut.add_jobid_callback(lambda f, a=a, h=h: self._on_jobid(a, h, f))
        fut.add_event_callback("start", lambda f, ev, a=a, h=h: self._on_start(a, h, ev))
        fut.add_event_callback("finish", lambda f, ev, a=a, h=h: self._on_finish(a, h, ev))
        fut.add_done_callback(lambda f, a=a, h=h: self._on_done(a, h, f))
        return None

    # Callbacks run one at a time in the executor's thread: they record facts and hand the
    # attempt over through the queue once. A cancelled job's future is done at its exception
    # event, before the finish event that carries its wait status: a job that had started is
    # handed over at its finish event instead.
    def _on_jobid(self, a: Attempt, h: dict[str, Any], fut: Any) -> None:
        try:
            jid = fut.jobid()
        except Exception:  # noqa: BLE001 - submission failed; the done callback reports it
            return
        h["jobid"] = jid
        a.flux_id = self.flux.job.JobID(jid).f58

    @staticmethod
    def _on_start(a: Attempt, h: dict[str, Any], ev: Any) -> None:
        h["started"] = True
        a.start = ev.timestamp

    def _on_finish(self, a: Attempt, h: dict[str, Any], ev: Any) -> None:
        h["finish"] = (ev.timestamp, ev.context.get("status", 0))
        if h["fut"] is not None and h["fut"].done():
            self._hand_over(a, h)

    def _on_done(self, a: Attempt, h: dict[str, Any], fut: Any) -> None:
        if h["started"] and h["finish"] is None and not fut.cancelled():
            return  # the finish event follows
        self._hand_over(a, h)

    def _hand_over(self, a: Attempt, h: dict[str, Any]) -> None:
        if h["reported"]:
            return
        h["reported"] = True
        self.done.put(a)
        try:
            os.write(self._wfd, b"x")
        except OSError:
            pass  # the pipe is full: the reader wakes anyway

    def _check_lost(self) -> None:
        if self._lost is None or time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + _LOST_INTERVAL
        why = self._lost()
        if why:
            self._gone = why
            raise NestedInstanceLost(why)

    def poll(self, timeout: float) -> list[Attempt]:
        out: list[Attempt] = []
        end = time.monotonic() + max(0.0, timeout)
        while True:
            self._check_lost()
            left = end - time.monotonic()
            if self._lost is not None:
                left = min(left, _LOST_INTERVAL)
            try:
                out.append(self.done.get(timeout=left) if left > 0 else self.done.get_nowait())
                break
            except queue.Empty:
                if time.monotonic() >= end:
                    return []
        while True:
            try:
                out.append(self.done.get_nowait())
            except queue.Empty:
                break
        try:
            while os.read(self._rfd, 4096):
                pass
        except OSError:
            pass
        if self._lost is not None and any(a.handle["finish"] is None for a in out):
            self._check_reachable()
        return [self._finish(a) for a in out]

    def _check_reachable(self) -> None:
        """Jobs that ended without a finish event: when the instance died under them (its
        executor thread fails them all), that is the cluster's failure, not theirs."""
        try:
            self.flux.Flux(self.uri).rpc("broker.ping", {}).get()
            return
        except OSError as err:
            gone = f"the Flux instance at {self.uri} is gone: {err.strerror or err}"
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
        h = a.handle
        self.inflight.pop(h["key"], None)
        fut = h["fut"]
        fin = h["finish"]
        if fin is not None:
            a.duration = max(0.0, fin[0] - a.start)
            a.status = ExitStatus.from_wait(int(fin[1]))
        else:
            a.duration = time.monotonic() - a.t0
            err = None
            try:
                err = fut.exception(timeout=0)
            except BaseException as exc:  # noqa: BLE001 - cancelled futures raise
                err = exc
            a.status = ExitStatus.failed_to_start(_flux_error(err))
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
            _unlink(path)
        self.files.collect_job_records(a, h["jt"])
        if a.task.pipe_forward or a.task.file_forward:
            forward_files(a, h["fwd"])
        a.handle = None
        return a

    def signal_all(self, signum: int, reason: str) -> None:
        import flux.job  # type: ignore[import-not-found]

        futs = []
        for a in self.inflight.values():
            a.stopped = a.stopped or reason
            h = a.handle
            if h["fut"] is not None and h["fut"].cancel():
                continue  # never handed to Flux
            jid = h["jobid"]
            if jid is None:
                continue
            try:
                if signum == signal.SIGKILL:
                    futs.append(flux.job.kill_async(self.h, jid, signum))
                else:
                    # cancel: TERM now, KILL after Flux's own grace; a pending job never runs
                    futs.append(flux.job.cancel_async(self.h, jid, reason))
            except OSError as err:
                logger.debug("cannot signal flux job %s: %s", jid, err)
        for f in futs:
            try:
                f.get()
            except OSError:
                pass  # already gone

    def close(self) -> None:
        if self._gone is not None:
            # the instance is gone: nothing of its jobs is left to kill or to wait for
            self.ex.shutdown(wait=False, cancel_futures=True)
            self.inflight.clear()
            os.close(self._rfd)
            os.close(self._wfd)
            return
        if self.inflight:
            self.signal_all(signal.SIGKILL, "shutdown")
        self.ex.shutdown(wait=True)
        while self.inflight:
            self.poll(1.0)  # collect what the kills ended, for their files
        os.close(self._rfd)
        os.close(self._wfd)


def _quiet_executor_threads() -> None:
    """A FluxExecutor's thread raises when its instance goes away under it: that is told in
    one line by the cluster (NestedInstanceLost), not as the thread's traceback."""
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


def _flux_error(err: BaseException | None) -> str:
    if err is None:
        return "the Flux job ended without a finish event"
    text = str(err) or type(err).__name__
    return f"flux job failed: {text}"
