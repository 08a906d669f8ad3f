"""The task's supervisor: a fork of fluxlite that starts the task and ends it with fluxlite.

    fluxlite -> supervisor -> task (a session of its own) -> the task's descendants

The supervisor is a child subreaper, so a descendant of the task that leaves its process
group or session (setsid, double fork) is re-parented to it, never to init. Its parent-death
signal is tied to fluxlite: when fluxlite dies, by SIGKILL too, the kernel signals the
supervisor, which kills every process it holds, runs the caller's ``on_orphaned`` (the worker
directory's removal) and exits. It sits in a process group of its own, so that a signal to
fluxlite's group (a batch system's kill, a terminal's ^C) does not take it down with fluxlite.

While fluxlite lives, the supervisor only waits: it reports the task's pid, then its wait
status and rusage, through a pipe, and exits as soon as the task has been reaped. What the
task left behind is then re-parented to fluxlite (a subreaper as well), which kills it as
before. It is a fork, not a new interpreter: starting it costs about a millisecond.

This module also holds the primitives every local fork and kill of fluxlite goes through
(:func:`fork`, :func:`kill`, :func:`kill_descendants`, :func:`kill_all`, the ``prctl``
settings), for the supervisor and for a guard (``guard``, the other mechanism: a parent
that outlives the worker it forked below itself).
"""

from __future__ import annotations

import errno
import gc
import os
import resource
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from fluxlite.lazylog import get_logger
from fluxlite.signals import HANDLED_SIGNALS

logger = get_logger(__name__)

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
# the supervisor's parent-death signal; the handler checks that fluxlite is really gone
DEATH_SIGNAL = signal.SIGTERM
# fluxlite's own handlers are Python functions: they mean nothing in the supervisor
_RESET = tuple(s for s in (*HANDLED_SIGNALS, signal.SIGUSR2) if s != DEATH_SIGNAL)
_libc = None
_subreaper = False


class _Orphaned(BaseException):
    """fluxlite died: end everything (a BaseException, so that no handler swallows it)."""


@dataclass(slots=True)
class Supervised:
    """A task started under a supervisor: the pids and the end of the report pipe."""

    pid: int  # the task's (also its process group's and session's id)
    supervisor: int
    report: int  # read end: one "S status rusage..." line when the task has been reaped

    def wait(self) -> tuple[int, resource.struct_rusage | None]:
        """Block until the task ends; its wait status (-1 when lost) and rusage."""
        data = _read_all(self.report)
        os.close(self.report)
        try:
            os.waitpid(self.supervisor, 0)
        except ChildProcessError:
            pass
        for line in data.decode("ascii", "replace").splitlines():
            words = line.split()
            if words and words[0] == "S" and len(words) == 2 + resource.struct_rusage.n_fields:
                vals = [float(w) if i < 2 else int(w) for i, w in enumerate(words[2:])]
                return int(words[1]), resource.struct_rusage(vals)
        return -1, None  # the supervisor died without a report


def _prctl(option: int, arg: int) -> bool:
    global _libc
    try:
        if _libc is None:
            import ctypes

            _libc = ctypes.CDLL(None, use_errno=True)
        return _libc.prctl(option, arg, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_parent_death_signal(signum: int) -> bool:
    """Have the kernel send ``signum`` to this process when its parent dies (Linux)."""
    return _prctl(_PR_SET_PDEATHSIG, int(signum))


def hide_memory() -> bool:
    """Keep processes of the same user (the tasks) from reading this one's memory: no
    ptrace, no /proc/PID/mem or environ (Linux; a task's exec gives it back its own)."""
    return _prctl(_PR_SET_DUMPABLE, 0)


def fork(child: Callable[[], int]) -> int:
    """The one fork of fluxlite: the child runs ``child()`` and exits with the code it
    returns, 1 when it raises (nothing escapes into a copy of fluxlite; it never returns).
    What Python holds buffered for stdout and stderr is written first, so that the child
    does not write it a second time. The child's pid; OSError when it cannot fork."""
    _flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        code = child()
    except BaseException:  # noqa: BLE001 - a copy of fluxlite must not go on running
        code = 1
    finally:
        try:
            _flush()
        finally:
            os._exit(code)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):  # none, or closed
            pass


def kill(pid: int, signum: int) -> bool:
    """``signum`` to one process; False when it is gone (or not this user's)."""
    try:
        os.kill(pid, signum)
    except OSError:
        return False
    return True


def make_subreaper() -> bool:
    """Make this process a child subreaper (Linux); False where unsupported. Also loads
    libc for the forked supervisor, which then loads nothing."""
    global _subreaper
    if not _subreaper:
        _subreaper = _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    return _subreaper


def start(exe: str, argv: list[str], cwd: str, env: dict[str, str],
          stdio: tuple[int, int, int],
          on_orphaned: Callable[[], None] | None = None) -> Supervised:
    """Fork the supervisor, which starts ``exe`` (argv) in ``cwd``, in a session of its own,
    with the given descriptors as its stdin, stdout and stderr and no other descriptor.
    Call from the main thread (the parent-death signal follows the thread that forks).
    Raises OSError when the task cannot be started."""
    parent = os.getpid()
    r, w = os.pipe()
    # no signal may reach the fork before it has handlers of its own (it would run
    # fluxlite's): held back from the fork until then, and in fluxlite until it has forked
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, (*_RESET, DEATH_SIGNAL))
    try:
        pid = fork(lambda: _supervise(parent, (exe, argv, cwd, env, stdio), (r, w),
                                      on_orphaned, mask))
    except OSError:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(r)
        os.close(w)
        raise
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    os.close(w)
    first = _read_line(r)
    words = first.split(maxsplit=2)
    if len(words) >= 2 and words[0] == "P":
        return Supervised(int(words[1]), pid, r)
    os.close(r)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    if len(words) >= 2 and words[0] == "E":
        code = int(words[1])
        raise OSError(code, words[2].strip() if len(words) > 2 else os.strerror(code))
    raise OSError(errno.ECHILD, "the task's supervisor ended before starting it")


def _supervise(parent: int, task: tuple[str, list[str], str, dict[str, str],
                                       tuple[int, int, int]],
               pipe: tuple[int, int], on_orphaned: Callable[[], None] | None,
               mask: set[signal.Signals]) -> int:
    """The supervisor, in the fork: start the task, report it, end it if orphaned."""
    exe, argv, cwd, env, stdio = task
    gc.disable()  # a collection here would write to, and so copy, much of fluxlite's heap
    os.close(pipe[0])
    report = pipe[1]
    try:
        os.setpgid(0, 0)
        for sig in _RESET:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(DEATH_SIGNAL, _on_death(parent))
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        set_parent_death_signal(DEATH_SIGNAL)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # the task gets fluxlite's mask
        if os.getppid() != parent:
            raise _Orphaned
        try:
            os.chdir(cwd)
            _close_fds_but(report, *stdio)
            pid = spawn(exe, argv, env, stdio, session=True)
        except (OSError, ValueError) as err:  # ValueError: a NUL in argv or env
            no = err.errno if isinstance(err, OSError) and err.errno else errno.EINVAL
            why = (err.strerror if isinstance(err, OSError) and err.strerror
                   else str(err)).replace("\n", " ")
            _write(report, f"E {no} {why}\n")
            return 0
        _write(report, f"P {pid}\n")
        while True:
            got, status, ru = os.wait4(-1, 0)
            if got == pid:
                vals = " ".join(str(v) for v in ru)  # struct_rusage, in order
                _write(report, f"S {status} {vals}\n")
                return 0
    except _Orphaned:
        signal.signal(DEATH_SIGNAL, signal.SIG_IGN)
        kill_all()
        if on_orphaned is not None:
            on_orphaned()
    return 0


def _close_fds_but(*keep: int) -> None:
    """Close every descriptor above 2 but ``keep`` (the task inherits none of fluxlite's),
    and make the kept ones close-on-exec (the task gets them as 0, 1 and 2 only)."""
    low = 3
    for fd in sorted({k for k in keep if k >= 3}):
        os.closerange(low, fd)
        os.set_inheritable(fd, False)
        low = fd + 1
    os.closerange(low, max(low, os.sysconf("SC_OPEN_MAX")))


#: the signals Python changes for itself that a task must get back at their defaults
SIGDEF = tuple(s for s in (signal.SIGPIPE, getattr(signal, "SIGXFSZ", None),
                           getattr(signal, "SIGXFZ", None)) if s is not None)


def spawn(exe: str, argv: list[str], env: dict[str, str], stdio: tuple[int, int, int], *,
          session: bool, extra: tuple[tuple[int, int], ...] = (),
          sigmask: tuple[int, ...] | None = None) -> int:
    """The one way fluxlite starts a local task: ``posix_spawn`` (no shell, no interpreter
    between), ``stdio`` as its descriptors 0-2 and each ``(fd, number)`` of ``extra`` at that
    number, in a session of its own (``session``) or a process group of its own, its signal
    dispositions at their defaults and its signal mask ``sigmask`` (None: this process's).
    The task's pid; OSError when it cannot be started, ValueError for a NUL in argv or env."""
    actions = [(os.POSIX_SPAWN_DUP2, fd, n) for n, fd in enumerate(stdio)]
    actions += [(os.POSIX_SPAWN_DUP2, fd, n) for fd, n in extra]
    kw: dict[str, object] = {"setsid": True} if session else {"setpgroup": 0}
    if sigmask is not None:
        kw["setsigmask"] = sigmask
    return os.posix_spawn(exe, argv, env, file_actions=actions, setsigdef=SIGDEF, **kw)


def _on_death(parent: int) -> Callable[[int, object], None]:
    def handler(signum: int, frame: object) -> None:
        if os.getppid() != parent:
            raise _Orphaned
        # a stray DEATH_SIGNAL while fluxlite lives: the task is fluxlite's to stop
    return handler


def kill_all(timeout: float = 5.0) -> None:
    """SIGKILL every descendant of this process and reap them, until none is left.

    This process is a subreaper: a descendant whose parent dies is re-parented here, so
    "no child left" means "no descendant left"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kill_descendants("fluxlite died")
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        time.sleep(0.001)  # children being re-parented or dying


def kill_descendants(reason: str, spare: tuple[int, ...] = ()) -> list[dict[str, object]]:
    """SIGKILL every process below this one but ``spare``; return what was killed (pid,
    name, signal, reason). Reaps nothing."""
    killed: list[dict[str, object]] = []
    seen: set[int] = set(spare)
    for _ in range(5):  # new children may appear while we kill (a fork in flight)
        found = [p for p in descendants(os.getpid()) if p not in seen]
        seen.update(found)
        for pid in found:
            st = proc_state(pid)
            if st is None or st[1] == "Z":
                continue
            if not kill(pid, signal.SIGKILL):
                continue
            killed.append({"pid": pid, "name": st[0], "signal": "SIGKILL", "reason": reason})
        if not found:
            break
    return killed


def children(pid: int) -> list[int]:
    """The children of every thread of ``pid``, from /proc/PID/task/TID/children (cheap: no
    scan of every process). OSError when the kernel does not tell them."""
    kids: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        kids += thread_children(pid, int(tid))
    return kids


def thread_children(pid: int, tid: int) -> list[int]:
    """The children of thread ``tid`` of ``pid`` (those it started, and those re-parented
    to it), from /proc/PID/task/TID/children in a few plain reads (a local executor asks
    after each task). OSError when the kernel does not tell them."""
    fd = os.open(f"/proc/{pid}/task/{tid}/children", os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
    finally:
        os.close(fd)
    return [int(x) for x in data.split()]


def proc_state(pid: int) -> tuple[str, str] | None:
    """A process's name and state letter ("Z" a zombie) from /proc/PID/stat; None when it
    is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            head, tail = fh.read().rsplit(b")", 1)
    except (OSError, ValueError):
        return None
    return head.split(b"(", 1)[-1].decode("utf-8", "replace"), tail.split()[0].decode()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has)."""
    st = proc_state(pid)
    return st is not None and st[1] != "Z"


def descendants(pid: int) -> list[int]:
    """Every process below pid (the ones it can still see)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        try:
            kids = children(todo.pop())
        except (OSError, ValueError):
            continue
        out.extend(kids)
        todo.extend(kids)
    return out


def _write(fd: int, text: str) -> None:
    view = memoryview(text.encode("ascii", "replace"))
    while view:
        view = view[os.write(fd, view):]


def _read_line(fd: int) -> str:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        buf += chunk
    return buf.decode("ascii", "replace")


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)
