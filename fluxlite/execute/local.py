"""The local launcher: the task a child of fluxlite, no shell, its own process group, stdio
to files, waited with its rusage.

The launcher applies the checkpoint schedule (TERM, then KILL), takes the signals that
fluxlite itself receives while the task runs, and makes sure no process of the task outlives
it: fluxlite is a child subreaper, so even descendants that left the process group (setsid,
double fork) are re-parented to it and can be found, killed and reaped.
"""

from __future__ import annotations

import logging
import math
import os
import select
import signal
import time
from collections.abc import Callable
from typing import Any

from fluxlite.errors import ExecError, FluxliteError
from fluxlite.execute import supervisor
from fluxlite.execute.base import (
    ExitStatus,
    Launcher,
    SignalEvent,
    TaskResult,
    rusage_dict,
    signal_name,
)

logger = logging.getLogger(__name__)


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux); False where unsupported."""
    return supervisor.make_subreaper()


class LocalLauncher(Launcher):
    """Starts the task as a child process tree and drives it to its end.

    The task runs under a supervisor (:mod:`fluxlite.execute.supervisor`) that ends it and
    every process it started if fluxlite itself dies; ``on_orphaned`` is what the supervisor
    does then, after the kill (the worker directory's removal).
    """

    monitors_tree = True

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], *,
                 on_orphaned: Callable[[], None] | None = None, **kw: Any) -> None:
        super().__init__(argv, cwd, env, **kw)
        self.on_orphaned = on_orphaned
        self._task: supervisor.Supervised | None = None
        self._wake_r = self._wake_w = -1  # wakes wait() when a signal moved the deadlines

    @property
    def helper_pids(self) -> tuple[int, ...]:
        """fluxlite's own processes below it (the supervisor): not the task's."""
        return (self._task.supervisor,) if self._task is not None else ()

    # -- start ------------------------------------------------------------------
    def start(self) -> None:
        become_subreaper()  # leftovers re-parent to fluxlite once the supervisor has gone
        mode = "ab" if self.append else "wb"
        try:
            # an int is a descriptor the caller opened and keeps (shared by several tasks)
            fin = self.stdin if isinstance(self.stdin, int) else open(  # noqa: SIM115
                self.stdin, "rb")
        except OSError as err:
            # an I/O failure, not a missing executable (127)
            raise FluxliteError(f"cannot open stdin {self.stdin}: {err.strerror}") from err
        fout = ferr = None
        try:
            fout = _open_out("stdout", self.stdout, mode)
            ferr = fout if self.stderr == self.stdout else _open_out("stderr", self.stderr, mode)
            self.result.start = time.time()
            self._t0 = time.monotonic()
            self._task = supervisor.start(self.argv, self.cwd, self.env,
                                          (_fd(fin), _fd(fout), _fd(ferr)), self.on_orphaned)
        except OSError as err:
            why = err.strerror or str(err)
            raise ExecError(f"cannot execute {self.argv[0]}: {why}") from err
        finally:
            for f in {id(x): x for x in (fin, fout, ferr) if x is not None}.values():
                if hasattr(f, "close"):
                    f.close()
        self.result.pid = self._task.pid
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._arm()

    # -- drive ---------------------------------------------------------------------
    def wait(self) -> TaskResult:
        """Block until the task ends, applying the schedule and the signals fluxlite
        received; then clean up its tree."""
        assert self._task is not None
        report = self._task.report
        poller = select.poll()  # not select(): descriptors may be numbered above 1024
        poller.register(report, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            self._handle_pending()
            deadline = self._next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = {fd for fd, _ in poller.poll(
                None if timeout is None else math.ceil(min(timeout, 3600.0) * 1000))}
            if report in ready:
                break
            if self._wake_r in ready:
                _drain(self._wake_r)
            self._check_deadlines()
        status, ru = self._task.wait()
        self._done.set()
        wake = (self._wake_r, self._wake_w)
        self._wake_r = self._wake_w = -1
        for fd in wake:
            os.close(fd)
        res = self.result
        res.duration = time.monotonic() - self._t0
        res.status = (ExitStatus.from_wait(status) if status >= 0 else
                      ExitStatus(-1, error="the task's exit status was lost"))
        if ru is not None:
            res.rusage = rusage_dict(ru)
        self._cleanup_tree("task ended")
        return res

    # -- signals --------------------------------------------------------------------
    def _interrupt_wait(self) -> None:
        if self._wake_w < 0:
            return
        try:
            os.write(self._wake_w, b"!")
        except OSError:
            pass  # full: already awake

    def send(self, signum: int, reason: str) -> None:
        """TERM (or any signal) to the task's process group."""
        if self._task is None or self._done.is_set():
            return
        pgid = self._task.pid
        try:
            os.killpg(pgid, signum)
        except ProcessLookupError:
            return
        self.events.append(SignalEvent(time.time(), signal_name(signum), "sent",
                                       f"process group {pgid}", reason))

    def kill_tree(self, reason: str) -> None:
        """SIGKILL the task's process group and every descendant of fluxlite."""
        with self._lock:
            if self._killed:
                return
            self._killed = True
        # every process below us, one by one so that the record can name them; the task's
        # process group is among them (fluxlite and the supervisor are subreapers)
        self.result.killed.extend(kill_descendants(reason, spare=self.helper_pids))
        if self._task is not None and not self._done.is_set():
            try:
                os.killpg(self._task.pid, signal.SIGKILL)  # in case one escaped the scan
            except ProcessLookupError:
                pass
        self.events.append(SignalEvent(time.time(), "SIGKILL", "sent",
                                       "the task's process tree", reason))

    def _cleanup_tree(self, reason: str) -> None:
        if not has_children():
            return  # the common case: nothing below us, no process table scan needed
        self.result.killed.extend(kill_descendants(f"left behind: {reason}"))
        reap_all()


def kill_descendants(reason: str, spare: tuple[int, ...] = ()) -> list[dict[str, object]]:
    """SIGKILL every process below this one but ``spare``; return what was killed. Reaps
    nothing."""
    import psutil

    me = psutil.Process(os.getpid())
    killed: list[dict[str, object]] = []
    seen: set[int] = set(spare)
    for _ in range(5):  # new children may appear while we kill (a fork in flight)
        try:
            procs = [p for p in me.children(recursive=True) if p.pid not in seen]
        except psutil.Error:
            break
        live = []
        for p in procs:
            seen.add(p.pid)
            try:
                if p.status() == psutil.STATUS_ZOMBIE:
                    continue
                info = {"pid": p.pid, "name": p.name(), "signal": "SIGKILL", "reason": reason}
                p.kill()
                killed.append(info)
                live.append(p)
            except psutil.Error:
                continue
        if not live:
            break
    return killed


#: the name the runner and the tests knew the local launcher by
TaskController = LocalLauncher


def has_children() -> bool:
    """True when any process is below this one.

    fluxlite is a subreaper, so a live descendant either has a live parent chain up to us or
    has been re-parented to us: no child at all means no descendant at all.
    """
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


def reap_all(timeout: float = 2.0) -> None:
    """Reap every child of this process (the task has been reaped already), waiting a little
    for killed grandchildren that are re-parented to us as they die."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.005)


def _fd(f: object) -> int:
    return f if isinstance(f, int) else f.fileno()  # type: ignore[attr-defined]


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _open_out(name: str, path: str | int, mode: str):  # noqa: ANN202
    if isinstance(path, int):
        return path  # the caller's descriptor: not ours to close
    try:
        return open(path, mode)  # noqa: SIM115
    except OSError as err:
        # an I/O failure, not a missing executable (127)
        raise FluxliteError(f"cannot open {name} {path}: {err.strerror}") from err
