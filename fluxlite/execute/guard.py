"""A guard: the parent a worker process is forked below, which outlives it, so that nothing
the worker started outlives the worker; and the pipe between them.

    (a Flux job shell) -> guard (a child subreaper) -> worker -> tasks -> what they start

The second of ``execute``'s two mechanisms by which a task dies with the process that
runs it:

- the supervisor (``supervisor``) is forked by fluxlite for one task, *between* fluxlite
  and the task: it ends the task, and everything below it, when fluxlite dies (its
  parent-death signal), even by SIGKILL;
- a guard forks a long-lived worker *below* itself (:func:`fork_worker`) and only watches:
  when the worker dies, the guard kills every process below it (it is a subreaper, so what
  the worker started re-parents to it, setsid and double-forked descendants too); when the
  guard dies, the worker gets ``GUARD_LOST`` (its parent-death signal) and ends its own
  tasks. A worker given up on (stopped, hung) is KILLed by its guard, with everything
  below it, on request (:meth:`Guard._gone`).

The guard forks the worker before it opens anything else; the worker then tells it,
through a pipe (:class:`GuardLink`, the worker's end), a secret once, then the process
group, key and start of each task it starts and reaps, and ``=`` at a clean end. Neither
can be read by the tasks, which run as the same user (``supervisor.hide_memory``). Every
fork and kill here is the supervisor's (``supervisor.fork``, ``kill``, ``kill_all``). Whom
the guard tells of an end, and how, is its subclass's: the pool's, over Flux, is
``fluxlite.cluster.pool.guard``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

from fluxlite.errors import FluxliteError
from fluxlite.execute import supervisor
from fluxlite.execute.base import ExitStatus
from fluxlite.lazylog import get_logger

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = get_logger(__name__)

#: the worker's parent-death signal: its guard is gone
GUARD_LOST = signal.SIGUSR2
_KILL_WAIT = 30.0  # seconds to get every process below the worker killed and reaped
PIPE_SIZE = 1 << 20  # bytes the pipe holds, where the system allows (else its 64 KiB)


class GuardLink:
    """The worker's end of the pipe to its guard (its parent): the secret once, then a line
    for each attempt that waits in its queue, that is about to start (having waited), that
    started and that was reaped, and ``=`` at a clean end. Lines are kept until
    :meth:`flush`, which the worker calls before it starts what waited, and after a round
    of starts: one write a round."""

    def __init__(self, fd: int, pid: int) -> None:
        self.fd, self.pid = fd, pid
        self.lines: list[str] = []

    def secret(self, secret: bytes) -> None:
        """The pool's secret, for the guard to seal what it says and check what it hears."""
        self._say(f"k{secret.hex()}\n")

    def queued(self, key: int) -> None:
        """An attempt waits in the worker's queue: not started."""
        self.lines.append(f"q{key}\n")

    def starting(self, key: int) -> None:
        """An attempt that waited is about to start (said before it does)."""
        self.lines.append(f"s{key}\n")

    def returned(self, key: int) -> None:
        """An attempt that waited went back to the coordinator."""
        self.lines.append(f"r{key}\n")

    def add(self, pgid: int, key: int, start: float) -> None:
        """An attempt started: its process group, its key, its start."""
        self.lines.append(f"+{pgid} {key} {start!r}\n")

    def remove(self, pgid: int) -> None:
        """A process group that is gone: not to be killed."""
        self.lines.append(f"-{pgid}\n")

    def flush(self) -> None:
        """Say the lines kept."""
        if self.lines:
            text, self.lines = "".join(self.lines), []
            self._say(text)

    def alive(self) -> bool:
        """Whether the guard is still this process's parent."""
        return os.getppid() == self.pid

    def _say(self, line: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self.fd, line.encode())

    def close(self, clean: bool) -> None:
        """The worker ends: ``clean`` when it killed and reaped everything itself."""
        self.flush()
        if clean:
            self._say("=\n")
        with contextlib.suppress(OSError):
            os.close(self.fd)


def fork_worker(run: Callable[[GuardLink], int]) -> tuple[int, int]:
    """Make this process a guard (a child subreaper whose memory the tasks cannot read) and
    fork the worker below it: ``run(link)`` in the worker, whose exit code it is, with
    ``GUARD_LOST`` as its parent-death signal. The worker's pid and the guard's end of the
    pipe."""
    supervisor.make_subreaper()
    supervisor.hide_memory()  # the fork inherits it
    rfd, wfd = os.pipe()
    with contextlib.suppress(OSError, AttributeError):
        # room for many seconds of lines, so that a guard which reads them now and then
        # (not at each one) never makes the worker wait
        import fcntl

        fcntl.fcntl(wfd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    parent = os.getpid()

    def worker() -> int:
        os.close(rfd)
        supervisor.set_parent_death_signal(GUARD_LOST)
        if os.getppid() != parent:  # the guard died before the signal was set
            return 1
        return run(GuardLink(wfd, parent))

    pid = supervisor.fork(worker)
    os.close(wfd)
    os.set_inheritable(rfd, False)
    return pid, rfd


class Guard:
    """The guard's side (the module's doc): what the worker says, the worker's end, and
    the kill of everything below it. A subclass serves it (:meth:`_forward` for a stop
    signal, :meth:`_read` when the pipe is readable) and tells of the end."""

    def __init__(self, index: int, rfd: int, worker: int) -> None:
        self.index, self.rfd, self.worker = index, rfd, worker
        self.groups: dict[int, tuple[int, float]] = {}  # pgid -> (key, start)
        self.queued: set[int] = set()  # keys of attempts that wait, never started
        self.buf = b""
        self.secret: bytes | None = None
        self.clean = False
        self.eof = False
        self.status: int | None = None  # the worker's wait status once reaped

    # -- the pipe -------------------------------------------------------------------------
    def _read(self) -> bool:
        """Take what the pipe holds now, in one read; whether it held anything. ``eof``
        once the worker's end is closed and everything in it read."""
        try:
            chunk = os.read(self.rfd, 65536)
        except (InterruptedError, BlockingIOError):
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for ln in lines:
            self._line(ln.decode("ascii", "replace"))
        return True

    def _drain(self) -> None:
        """Take every line written so far, without waiting for more (once the worker has
        ended: all it said, the worker being the pipe's one writer)."""
        os.set_blocking(self.rfd, False)
        while self._read():
            pass

    def _line(self, ln: str) -> None:
        try:
            if ln[:1] == "+":
                pgid, key, start = ln[1:].split()
                self.groups[int(pgid)] = (int(key), float(start))
                self.queued.discard(int(key))
            elif ln[:1] == "-":
                self.groups.pop(int(ln[1:]), None)
            elif ln[:1] == "q":
                self.queued.add(int(ln[1:]))
            elif ln[:1] in ("s", "r"):  # about to start (from now on it may run), or given back
                self.queued.discard(int(ln[1:]))
            elif ln[:1] == "k" and self.secret is None:
                self.take_secret(bytes.fromhex(ln[1:]))
            elif ln == "=":
                self.clean = True
        except (ValueError, FluxliteError):
            logger.warning("guard %d: a line it does not know from its worker: %.40r",
                           self.index, ln)

    def take_secret(self, secret: bytes) -> None:
        """The secret the worker told; a FluxliteError when it is not one."""
        self.secret = secret

    # -- ending ---------------------------------------------------------------------------
    def _forward(self, signum: int, _frame: Any = None) -> None:
        supervisor.kill(self.worker, signum)

    def _reap_worker(self, kill: bool) -> None:
        if self.status is not None:
            return
        if kill:
            supervisor.kill(self.worker, signal.SIGKILL)  # a stopped process dies of it too
        try:
            self.status = os.waitpid(self.worker, 0)[1]
        except ChildProcessError:
            self.status = -1

    def _kill_below(self) -> int:
        """KILL and reap every process below the guard; how many could not be."""
        supervisor.kill_all(_KILL_WAIT)
        return sum(1 for p in supervisor.descendants(os.getpid()) if supervisor.alive(p))

    def _gone(self, why: str) -> dict[str, Any]:
        """Kill the worker and everything below it; what was killed, for the coordinator."""
        self._reap_worker(kill=True)
        left = self._kill_below()
        self._drain()  # all the worker said, to its last line
        end = time.time()
        killed = [{"key": key, "pid": pgid, "start": start, "end": end}
                  for pgid, (key, start) in self.groups.items()]
        self.groups.clear()
        return {"worker": self.index, "by": "guard", "why": why, "killed": killed,
                "left": left, "queued": sorted(self.queued)}

    def _ended(self) -> ExitStatus | None:
        """How the worker ended, once reaped (None: it is gone, its status unknown)."""
        st = self.status if self.status is not None else -1
        return ExitStatus.from_wait(st) if st >= 0 else None

    def _why(self) -> str:
        st = self._ended()
        return "its process is gone" if st is None else st.describe("its process")

    def _exit_code(self) -> int:
        st = self._ended()
        return st.exitcode if st is not None and st.exitcode is not None else 1
