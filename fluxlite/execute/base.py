"""The launcher contract: what starts a task, signals it, sees it end and cleans up after it.

A launcher runs one task description (argv, cwd, environment, stdio) to its end and
returns a :class:`TaskResult`. Where the task runs is the implementation's business:
:class:`fluxlite.execute.local.LocalLauncher` (a child process tree of fluxlite) and
:class:`fluxlite.flux.launcher.FluxLauncher` (a Flux job, or the initial program of a
sub-instance). What must be right every time is here, once: the checkpoint schedule, the
TERM/KILL escalation and what a signal fluxlite receives does to the task.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from fluxlite.errors import EXIT_CANNOT_EXEC, SIGNAL_BASE
from fluxlite.execute.timelimit import Schedule, from_limits
from fluxlite.lazylog import get_logger

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = get_logger(__name__)

#: no TERM and no KILL of fluxlite's own (a cluster's task: the cluster stops them)
NO_SCHEDULE = Schedule()


def signal_name(signum: int) -> str:
    """SIGTERM for 15; SIG<n> for a number that names no signal."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


@dataclass(slots=True)
class ExitStatus:
    """How a task ended: its wait status, decoded, or why it never started."""

    raw: int  # the wait status as waitpid gives it; -1 when the task never started
    exitcode: int | None = None
    signal: int | None = None
    core: bool = False
    error: str | None = None  # why the task could not be started

    @classmethod
    def from_wait(cls, status: int) -> ExitStatus:
        """The status a wait status (``waitpid``'s, or a Flux job's) tells: the one decoder
        of wait statuses in fluxlite."""
        if os.WIFSIGNALED(status):
            return cls(status, None, os.WTERMSIG(status), os.WCOREDUMP(status))
        return cls(status, os.WEXITSTATUS(status))

    @classmethod
    def failed_to_start(cls, error: str) -> ExitStatus:
        """The status of a task that never ran, and why (exit code 127)."""
        return cls(-1, None, None, False, error)

    @property
    def code(self) -> int:
        """The exit code a shell would report: N, 128+signal (a task killed is that, whatever
        else is said of it), or 127 when it never ran."""
        if self.signal is not None:
            return SIGNAL_BASE + self.signal
        if self.error is not None:
            return EXIT_CANNOT_EXEC
        return self.exitcode or 0

    @property
    def ok(self) -> bool:
        """Whether the task ran and exited 0."""
        return self.error is None and self.signal is None and self.exitcode == 0

    def describe(self, subject: str = "") -> str:
        """How it ended, in words: ``exited with code 3``, ``killed by SIGKILL``, ``could not
        start: why``; with a ``subject``, a sentence (``its broker was killed by SIGKILL``)."""
        if self.error is not None:
            text = f"could not start: {self.error}"
        elif self.signal is not None:
            text = ("was " if subject else "") + f"killed by {signal_name(self.signal)}"
        elif self.exitcode is not None:
            text = f"exited with code {self.exitcode}"
        else:
            text = "ended, its status unknown"
        return f"{subject} {text}" if subject else text


class Cause(Enum):
    """Why fluxlite sent a signal to a task (``reason`` says it in words, for people)."""

    STOP = "stop"  # told to stop: a signal fluxlite received (forwarded, or the KILL after
    # its grace or on a second one), a cluster's stop, an abandoned task
    TIME_LIMIT = "time limit"  # the checkpoint schedule: its TERM, or its KILL
    WARNING = "warning"  # a time-limit warning: forwarded, or the TERM it brought forward


@dataclass(slots=True)
class SignalEvent:
    """A signal fluxlite received or sent while a job ran, for the record."""

    time: float
    signal: str
    direction: str  # "received" (by fluxlite) or "sent" (to the task)
    target: str = ""
    reason: str = ""
    cause: Cause | None = None  # why it was sent (None: received); not in the record

    def as_dict(self) -> dict[str, object]:
        """The event as the JSON record keeps it."""
        return {"time": self.time, "signal": self.signal, "direction": self.direction,
                "target": self.target, "reason": self.reason}


@dataclass(slots=True)
class TaskResult:
    """What a launcher tells of a task that ended: status, rusage (where known), timings
    (``start`` epoch, ``duration`` seconds), its pid, and what fluxlite did to it."""

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


@dataclass(frozen=True, slots=True)
class TaskCommand:
    """What a task runs: its argv, in its directory, with its environment; ``inner`` is
    what the job sets of that environment on top of fluxlite's own (what a container
    carries inside)."""

    argv: list[str]
    cwd: str
    env: dict[str, str]
    inner: dict[str, str] = field(default_factory=dict)


RUSAGE_FIELDS = ("utime", "stime", "maxrss", "minflt", "majflt", "nswap", "inblock", "outblock",
                 "msgsnd", "msgrcv", "nsignals", "nvcsw", "nivcsw")


def rusage_dict(ru: Any) -> dict[str, float]:
    """A ``resource.struct_rusage`` (or ``os.wait4``'s) as the record's fields (in the order
    of :data:`RUSAGE_FIELDS`)."""
    return {"utime": round(ru.ru_utime, 3), "stime": round(ru.ru_stime, 3),
            "maxrss": int(ru.ru_maxrss), "minflt": int(ru.ru_minflt),
            "majflt": int(ru.ru_majflt), "nswap": int(ru.ru_nswap),
            "inblock": int(ru.ru_inblock), "outblock": int(ru.ru_oublock),
            "msgsnd": int(ru.ru_msgsnd), "msgrcv": int(ru.ru_msgrcv),
            "nsignals": int(ru.ru_nsignals), "nvcsw": int(ru.ru_nvcsw),
            "nivcsw": int(ru.ru_nivcsw)}


class Escalation:
    """The TERM/KILL escalation, its one copy: TERM when ``term_at`` comes or at a stop (a
    terminating signal), KILL ``grace`` seconds after that TERM or at ``kill_at`` when that
    is sooner, and KILL at once on a stop after the TERM. Times are ``time.monotonic()``.
    Each launcher keeps one for its task, the cluster's scheduler one for all of its tasks;
    what a TERM or KILL is (a signal to a group, a Flux kill, every task of a cluster) is
    theirs."""

    def __init__(self, grace: float) -> None:
        # a grace that is not a finite number (the spec refuses one) must not spin or hang
        self.grace = grace if math.isfinite(grace) and grace >= 0 else 5.0
        self.term_at: float | None = None
        self.kill_at: float | None = None
        self.kill_why: str | None = None  # set when the KILL ends a stop's grace
        self.termed = False
        self.killed = False
        self._lock = threading.Lock()

    def next(self) -> float | None:
        """When the next TERM or KILL is due (None: none is)."""
        with self._lock:
            cands = [t for t, done in ((self.term_at, self.termed), (self.kill_at, self.killed))
                     if t is not None and not done]
        return min(cands) if cands else None

    def due(self, now: float) -> str | None:
        """"kill" when the KILL is due (:meth:`kill_once` marks it done), else "term" when
        the TERM is (marked done, and the grace starts), else None."""
        with self._lock:
            if self.kill_at is not None and not self.killed and now >= self.kill_at:
                return "kill"
            if self.term_at is not None and not self.termed and now >= self.term_at:
                self.termed = True
                if self.kill_at is None:
                    self.kill_at = now + self.grace
                return "term"
        return None

    def stop(self, why: str) -> str:
        """A stop: "term" the first time (the KILL ``grace`` seconds later, never later than
        one already due, with ``why`` as its reason), "kill" once a TERM has gone."""
        with self._lock:
            if self.termed:
                return "kill"
            self.termed = True
            end = time.monotonic() + self.grace
            if self.kill_at is None or self.kill_at > end:
                self.kill_at, self.kill_why = end, why
        return "term"

    def sooner(self, term: float, kill: float | None = None) -> None:
        """Move the TERM and the KILL to ``term`` and ``kill`` where that is sooner."""
        with self._lock:
            self.term_at = term if self.term_at is None else min(self.term_at, term)
            if kill is not None and (self.kill_at is None or kill < self.kill_at):
                self.kill_at, self.kill_why = kill, None

    def left(self, now: float) -> float:
        """Seconds until the KILL once a TERM has gone: what the task may still take to end
        by itself (none before a TERM, or once the KILL has gone)."""
        with self._lock:
            if not self.termed or self.killed or self.kill_at is None:
                return 0.0
            return max(0.0, self.kill_at - now)

    def kill_once(self) -> bool:
        """True the first time only: the KILL is to be sent now."""
        with self._lock:
            if self.killed:
                return False
            self.killed = True
        return True


class Launcher(ABC):
    """Runs one task to its end: :meth:`start`, then :meth:`wait` for its
    :class:`TaskResult`; :meth:`on_signal` hands it a signal fluxlite received.

    Implementations provide :meth:`start`, :meth:`wait`, :meth:`send` (a signal to the
    whole task), :meth:`kill_tree` (SIGKILL to all of it) and :attr:`monitors_tree`, and
    call :meth:`_arm` once the task exists. This class owns the policy, the only copy of
    it: TERM at the checkpoint time, KILL at the kill time (or ``kill_grace`` after a TERM),
    a received terminating signal forwarded once, KILL ``kill_grace`` seconds after it and
    at once on a second one, and SIGUSR1 (Flux's time-limit warning) per ``usr1``:
    "schedule" keeps it fluxlite's own (the schedule is re-derived from ``timeleft()``, the
    time Flux says is left, and can only come sooner; without it and without a scheduled
    TERM, the warning is the TERM), "forward" sends it to the task, "term" makes it a TERM.
    """

    #: whether the task is the process tree below fluxlite (what the monitor samples)
    monitors_tree: bool = False

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], *, stdin: Any,
                 stdout: Any, stderr: Any, schedule: Schedule = NO_SCHEDULE,
                 kill_grace: float = 5.0,
                 usr1: str = "schedule", append: bool = False,
                 events: list[SignalEvent] | None = None) -> None:
        """``stdin``/``stdout``/``stderr`` are paths, or descriptors the caller keeps
        (shared by several tasks); ``append`` appends to the output files."""
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.append = append
        self.schedule = schedule
        self.escalation = Escalation(kill_grace)
        self.usr1 = usr1
        self.events = events if events is not None else []
        self.result = TaskResult(argv=list(argv), cwd=cwd)
        self._done = threading.Event()
        self._lock = threading.Lock()  # for what an implementation changes from a handler
        self._t0 = 0.0
        self._started = False
        self._warned: str | None = None  # why the schedule changed at a warning
        self._early: int | None = None  # a signal that came before the task existed
        self._pending: list[int] = []  # signals taken in the handler, acted on in wait()
        # seconds left before the enclosing job's time limit (Flux's), for "schedule"
        self.timeleft: Callable[[], float | None] | None = None

    @abstractmethod
    def start(self) -> None:
        """Start the task (and the schedule's clock); ExecError when it cannot start."""

    @abstractmethod
    def wait(self) -> TaskResult:
        """Block until the task has ended, applying the schedule and the signals taken by
        :meth:`on_signal`; then leave nothing of it behind and return its result."""

    @abstractmethod
    def send(self, signum: int, reason: str, cause: Cause = Cause.STOP) -> None:
        """Deliver ``signum`` to the whole task now (noted in ``events`` with ``reason``
        and ``cause``)."""

    @abstractmethod
    def kill_tree(self, reason: str, cause: Cause = Cause.STOP) -> None:
        """SIGKILL every process of the task, once."""

    @abstractmethod
    def job_ids(self) -> dict[str, str]:
        """The ids of the task's own job in a resource manager, by kind, for the record's
        ``jobids`` (``{}`` when the task has none)."""

    @abstractmethod
    def job_info(self) -> dict[str, Any]:
        """What the record keeps of the task's own job beside its id, filled in further as
        the task ends (``{}`` when the task has none)."""

    def close(self) -> None:  # noqa: B027 - nothing to release for most launchers
        """Release what the launcher holds; :meth:`wait` has released it already, so this
        is for a launcher that was started and is abandoned."""

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

    @property
    def kill_grace(self) -> float:
        """Seconds from a TERM to the KILL that follows it (the escalation's)."""
        return self.escalation.grace

    @property
    def helper_pids(self) -> tuple[int, ...]:
        """fluxlite's own processes below it that are not the task's (not monitored)."""
        return ()

    @abstractmethod
    def _interrupt_wait(self) -> None:
        """Make wait() look at the deadlines again (they just moved)."""

    def _handle_pending(self) -> None:
        while self._pending:
            self._apply_signal(self._pending.pop(0))

    def _arm(self) -> None:
        """Start the clock of the schedule: the task has just been started."""
        s, e = self.schedule, self.escalation
        if s.term_after is not None:
            e.term_at = self._t0 + s.term_after
        if s.kill_after is not None:
            e.kill_at = self._t0 + s.kill_after
        self._started = True
        if self._early is not None:
            # fluxlite was told to stop while the task was being started: tell the task now
            # rather than let it run until the KILL after the grace
            self.send(self._early, "received before the task started", Cause.STOP)

    def _next_deadline(self) -> float | None:
        return self.escalation.next()

    def _check_deadlines(self) -> None:
        e = self.escalation
        act = e.due(time.monotonic())
        if act == "kill":
            why = e.kill_why
            if why is None:  # the schedule's KILL, not a stop signal's grace
                self.result.timed_out = "kill"
            self.result.terminated_by = self.result.terminated_by or signal.SIGKILL
            if why is None:
                self.kill_tree("time limit: kill", Cause.TIME_LIMIT)
            else:
                self.kill_tree(why, Cause.STOP)
        elif act == "term":
            self.result.timed_out = self.result.timed_out or "term"
            self.result.terminated_by = self.result.terminated_by or signal.SIGTERM
            if self._warned:  # a schedule a time-limit warning brought forward
                self.send(signal.SIGTERM, self._warned, Cause.WARNING)
            else:
                self.send(signal.SIGTERM, "checkpoint time: terminate", Cause.TIME_LIMIT)

    def _apply_signal(self, signum: int) -> None:
        """What a signal fluxlite received does to the running task."""
        if self._done.is_set():
            return
        if signum == signal.SIGUSR1:
            if self.usr1 == "forward":
                self.send(signal.SIGUSR1, "checkpoint warning forwarded", Cause.WARNING)
                return
            if self.usr1 == "schedule":
                self._time_limit_warning()
                return
            signum = signal.SIGTERM
        why = f"{signal_name(signum)} not obeyed within {self.kill_grace:g} s"
        if self.escalation.stop(why) == "kill":
            # a second terminating signal: no more grace
            self.kill_tree(f"second {signal_name(signum)}", Cause.STOP)
            return
        self.result.terminated_by = self.result.terminated_by or signum
        if self._started:
            self.send(signum, "forwarded", Cause.STOP)
        else:
            self._early = signum
        self._interrupt_wait()

    def _time_limit_warning(self) -> None:
        """SIGUSR1 kept as fluxlite's own: the TERM and KILL move to what the time left
        allows (never later), or the TERM is now when there is no schedule to move."""
        left = self.timeleft() if self.timeleft is not None else None
        now = time.monotonic()
        e = self.escalation
        if e.termed:
            return
        if left is not None and math.isfinite(left):
            s = from_limits(kill_grace=self.kill_grace, timeleft=max(left, 0.0))
            e.sooner(now + (s.term_after or 0.0), now + (s.kill_after or 0.0))
            why = f"time-limit warning: {left:.0f} s left"
        elif e.term_at is None:
            e.sooner(now)
            why = "time-limit warning: no time left known, TERM now"
        else:
            why = "time-limit warning: the schedule stands"
        self._warned = why
        logger.info("%s (TERM in %.1f s)", why, max(0.0, (e.term_at or now) - now))
        self._interrupt_wait()

    def _note_received(self, signum: int) -> None:
        self.events.append(SignalEvent(time.time(), signal_name(signum), "received",
                                       "fluxlite"))


