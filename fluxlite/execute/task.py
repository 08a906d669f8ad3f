"""Run the task: no shell, its own process group, stdio to files, waited with its rusage.

The controller applies the checkpoint schedule (TERM, then KILL), takes the signals that
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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fluxlite.errors import ExecError, FluxliteError
from fluxlite.execute import supervisor
from fluxlite.execute.timelimit import Schedule, from_limits
from fluxlite.spec import Limits

logger = logging.getLogger(__name__)

def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux); False where unsupported."""
    return supervisor.make_subreaper()


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


@dataclass(slots=True)
class ExitStatus:
    raw: int  # the wait status as waitpid gives it; -1 when the task never started
    exitcode: int | None = None
    signal: int | None = None
    core: bool = False
    error: str | None = None  # why the task could not be started

    @classmethod
    def from_wait(cls, status: int) -> ExitStatus:
        if os.WIFSIGNALED(status):
            return cls(status, None, os.WTERMSIG(status), os.WCOREDUMP(status))
        return cls(status, os.WEXITSTATUS(status))

    @classmethod
    def failed_to_start(cls, error: str) -> ExitStatus:
        return cls(-1, None, None, False, error)

    @property
    def code(self) -> int:
        """The exit code a shell would report: N, 128+signal, or 127 when it never ran."""
        if self.error is not None:
            return 127
        if self.signal is not None:
            return 128 + self.signal
        return self.exitcode or 0

    @property
    def ok(self) -> bool:
        return self.error is None and self.signal is None and self.exitcode == 0


@dataclass(slots=True)
class SignalEvent:
    time: float
    signal: str
    direction: str  # "received" (by fluxlite) or "sent" (to the task)
    target: str = ""
    reason: str = ""

    def as_dict(self) -> dict[str, object]:
        return {"time": self.time, "signal": self.signal, "direction": self.direction,
                "target": self.target, "reason": self.reason}


@dataclass(slots=True)
class TaskResult:
    argv: list[str]
    cwd: str
    start: float = 0.0
    duration: float = 0.0
    pid: int = 0
    status: ExitStatus = field(default_factory=lambda: ExitStatus(-1))
    rusage: dict[str, float] = field(default_factory=dict)
    timed_out: str | None = None  # "term" or "kill" when the schedule fired
    terminated_by: int | None = None  # the first terminating signal sent to the task, if any
    killed: list[dict[str, object]] = field(default_factory=list)


RUSAGE_FIELDS = ("utime", "stime", "maxrss", "minflt", "majflt", "nswap", "inblock", "outblock",
                 "msgsnd", "msgrcv", "nsignals", "nvcsw", "nivcsw")


def rusage_dict(ru: object) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in RUSAGE_FIELDS:
        val = getattr(ru, "ru_oublock" if name == "outblock" else "ru_" + name)
        out[name] = round(val, 3) if name in ("utime", "stime") else int(val)
    return out


class ScheduledController:
    """The schedule and the signal policy every task controller shares.

    Subclasses start the task and set ``_t0`` / ``_term_at`` / ``_kill_at`` with
    :meth:`_arm`, and provide ``_send(signum, reason)`` (to the whole task) and
    ``kill_tree(reason)``; this class decides when and what: TERM at the checkpoint time,
    KILL at the kill time (or ``kill_grace`` after a TERM), a received terminating signal
    forwarded once, KILL ``kill_grace`` seconds after it and at once on a second one, and
    SIGUSR1 (Flux's time-limit warning) per ``usr1``: "schedule" keeps it fluxlite's own
    (the schedule is re-derived from ``timeleft()``, the time Flux says is left, and can only
    come sooner; without it and without a scheduled TERM, the warning is the TERM),
    "forward" sends it to the task, "term" makes it a TERM.
    """

    def __init__(self, argv: list[str], cwd: str, *, schedule: Schedule, kill_grace: float,
                 usr1: str, events: list[SignalEvent] | None) -> None:
        self.argv = argv
        self.cwd = cwd
        self.schedule = schedule
        # a grace that is not a finite number (the spec refuses one) must not spin or hang
        self.kill_grace = kill_grace if math.isfinite(kill_grace) and kill_grace >= 0 else 5.0
        self.usr1 = usr1
        self.events = events if events is not None else []
        self.result = TaskResult(argv=list(argv), cwd=cwd)
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._t0 = 0.0
        self._term_at: float | None = None
        self._kill_at: float | None = None
        self._kill_why: str | None = None  # a KILL set by a stop signal's grace, not the schedule
        self._termed = False
        self._killed = False
        self._started = False
        self._warned: str | None = None  # why the schedule changed at a warning
        self._early: int | None = None  # a signal that came before the task existed
        self._pending: list[int] = []  # signals taken in the handler, acted on in wait()
        # seconds left before the enclosing job's time limit (Flux's), for "schedule"
        self.timeleft: Callable[[], float | None] | None = None

    def _send(self, signum: int, reason: str) -> None:
        raise NotImplementedError

    def kill_tree(self, reason: str) -> None:
        raise NotImplementedError

    @property
    def helper_pids(self) -> tuple[int, ...]:
        """fluxlite's own processes below it that are not the task's (not monitored)."""
        return ()

    def _interrupt_wait(self) -> None:
        """Make wait() look at the deadlines again (they just moved)."""

    def _handle_pending(self) -> None:
        while self._pending:
            self._apply_signal(self._pending.pop(0))

    def _arm(self) -> None:
        """Start the clock of the schedule: the task has just been started."""
        s = self.schedule
        if s.term_after is not None:
            self._term_at = self._t0 + s.term_after
        if s.kill_after is not None:
            self._kill_at = self._t0 + s.kill_after
        self._started = True
        if self._early is not None:
            # fluxlite was told to stop while the task was being started: tell the task now
            # rather than let it run until the KILL after the grace
            self._send(self._early, "received before the task started")

    def _next_deadline(self) -> float | None:
        with self._lock:
            cands = []
            if self._term_at is not None and not self._termed:
                cands.append(self._term_at)
            if self._kill_at is not None and not self._killed:
                cands.append(self._kill_at)
            return min(cands) if cands else None

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        with self._lock:
            term_due = self._term_at is not None and not self._termed and now >= self._term_at
            kill_due = self._kill_at is not None and not self._killed and now >= self._kill_at
        if kill_due:
            if self._kill_why is None:  # the schedule's KILL, not a stop signal's grace
                self.result.timed_out = "kill"
            self.result.terminated_by = self.result.terminated_by or signal.SIGKILL
            self.kill_tree(self._kill_why or "time limit: kill")
        elif term_due:
            self.result.timed_out = self.result.timed_out or "term"
            self.result.terminated_by = self.result.terminated_by or signal.SIGTERM
            self._send(signal.SIGTERM, self._warned or "checkpoint time: terminate")
            with self._lock:
                self._termed = True
                if self._kill_at is None:
                    self._kill_at = now + self.kill_grace

    def _apply_signal(self, signum: int) -> None:
        """What a signal fluxlite received does to the running task."""
        if self._done.is_set():
            return
        if signum == signal.SIGUSR1:
            if self.usr1 == "forward":
                self._send(signal.SIGUSR1, "checkpoint warning forwarded")
                return
            if self.usr1 == "schedule":
                self._time_limit_warning()
                return
            signum = signal.SIGTERM
        if self._termed:
            # a second terminating signal: no more grace
            self.kill_tree(f"second {signal_name(signum)}")
            return
        self.result.terminated_by = self.result.terminated_by or signum
        if self._started:
            self._send(signum, "forwarded")
        else:
            self._early = signum
        with self._lock:
            self._termed = True
            grace_end = time.monotonic() + self.kill_grace
            if self._kill_at is None or self._kill_at > grace_end:
                self._kill_at = grace_end
                self._kill_why = f"{signal_name(signum)} not obeyed within {self.kill_grace:g} s"
        self._interrupt_wait()

    def _time_limit_warning(self) -> None:
        """SIGUSR1 kept as fluxlite's own: the TERM and KILL move to what the time left
        allows (never later), or the TERM is now when there is no schedule to move."""
        left = self.timeleft() if self.timeleft is not None else None
        now = time.monotonic()
        with self._lock:
            if self._termed:
                return
            if left is not None and math.isfinite(left):
                s = from_limits(Limits(kill_grace=self.kill_grace), max(left, 0.0))
                term, kill = now + (s.term_after or 0.0), now + (s.kill_after or 0.0)
                self._term_at = term if self._term_at is None else min(self._term_at, term)
                if self._kill_at is None or kill < self._kill_at:
                    self._kill_at, self._kill_why = kill, None
                why = f"time-limit warning: {left:.0f} s left"
            elif self._term_at is None:
                self._term_at = now
                why = "time-limit warning: no time left known, TERM now"
            else:
                why = "time-limit warning: the schedule stands"
            self._warned = why
        logger.info("%s (TERM in %.1f s)", why, max(0.0, (self._term_at or now) - now))
        self._interrupt_wait()

    def _note_received(self, signum: int) -> None:
        self.events.append(SignalEvent(time.time(), signal_name(signum), "received",
                                       "fluxlite"))


class TaskController(ScheduledController):
    """Starts the task and drives it to its end; ``on_signal()`` for fluxlite's own.

    The task runs under a supervisor (:mod:`fluxlite.execute.supervisor`) that ends it and
    every process it started if fluxlite itself dies; ``on_orphaned`` is what the supervisor
    does then, after the kill (the worker directory's removal).
    """

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], *, stdin: str | int,
                 stdout: str | int, stderr: str | int, schedule: Schedule,
                 kill_grace: float = 5.0,
                 usr1: str = "schedule", append: bool = False,
                 events: list[SignalEvent] | None = None,
                 on_orphaned: Callable[[], None] | None = None) -> None:
        super().__init__(argv, cwd, schedule=schedule, kill_grace=kill_grace, usr1=usr1,
                         events=events)
        self.env = env
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.append = append
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
    def on_signal(self, signum: int) -> None:
        """fluxlite received signum (called from the signal handler): noted here, acted on
        by wait() (or at once when the task is not started yet)."""
        self._note_received(signum)
        if self._done.is_set():
            return
        if not self._started:
            self._apply_signal(signum)
            return
        self._pending.append(signum)
        self._interrupt_wait()

    def _interrupt_wait(self) -> None:
        if self._wake_w < 0:
            return
        try:
            os.write(self._wake_w, b"!")
        except OSError:
            pass  # full: already awake

    def _send(self, signum: int, reason: str) -> None:
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
