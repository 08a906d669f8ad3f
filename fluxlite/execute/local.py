"""The local launcher: the task a child of fluxlite, no shell, its own process group (or
session), stdio to files, waited with its rusage.

One spawn path (:func:`fluxlite.execute.supervisor.spawn`, ``posix_spawn``) and one launcher
for a single job and for a cluster's tasks; what differs is the cleanup policy. A single job
(:data:`DESCENDANTS`) makes sure no process of the task outlives it: fluxlite is a child
subreaper, so even descendants that left the process group (setsid, double fork) are
re-parented to it and can be found, killed and reaped; a supervisor ends them if fluxlite
itself dies. A cluster's task (:data:`GROUP`) runs beside others, so only its own process
group is killed when it ends; what it left outside its group is the cluster's to reap
(:func:`reap_exited`, :func:`kill_descendants` at the end).

The launcher applies the checkpoint schedule (TERM, then KILL) and takes the signals that
fluxlite itself receives while the task runs (:class:`fluxlite.execute.base.Launcher`).
"""

from __future__ import annotations

import errno
import math
import os
import select
import signal
import time
from collections.abc import Callable, Container

from fluxlite.errors import ExecError, FluxliteError
from fluxlite.execute import supervisor
from fluxlite.execute.supervisor import kill_descendants
from fluxlite.execute.base import (
    Cause,
    ExitStatus,
    Launcher,
    SignalEvent,
    TaskResult,
    rusage_dict,
    signal_name,
)
from fluxlite.lazylog import get_logger

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any
    import subprocess

logger = get_logger(__name__)


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process (Linux); False where unsupported."""
    return supervisor.make_subreaper()


#: cleanup policies: every descendant of fluxlite (a single job: fluxlite is a subreaper and
#: the task runs under a supervisor), or the task's own process group only (a cluster's
#: tasks, which run beside each other)
DESCENDANTS, GROUP = "descendants", "group"


def which(exe: str, env: dict[str, str]) -> str | None:
    """The program ``exe`` names: itself when it has a slash, else found on ``env``'s PATH
    (None when not found)."""
    if "/" in exe:
        return exe
    import shutil  # a bare name only: shutil brings zlib, bz2 and lzma with it

    return shutil.which(exe, path=env.get("PATH", os.defpath))


class LocalLauncher(Launcher):
    """Starts the task as a child process tree and drives it to its end.

    ``cleanup`` is the policy: :data:`DESCENDANTS` (the default, a single job) runs the
    task under a supervisor (:mod:`fluxlite.execute.supervisor`) that ends it and every
    process it started if fluxlite itself dies (``on_orphaned`` is what the supervisor does
    then, after the kill: the worker directory's removal), and kills every descendant of
    fluxlite when the task ends. :data:`GROUP` (a cluster's task, beside others) spawns the
    task directly in fluxlite's current directory, in a process group of its own that is
    killed when its leader has exited; ``pass_fds`` are ``(fd, number)`` pairs it gets on
    top of its stdio. Both start the task through :func:`supervisor.spawn`.

    ``linger()``, when given, is asked once the task's leader has ended after a TERM and
    before what it left behind is killed: what the leader started may still be the task (a
    container whose runtime client returned before it), and ``linger`` starts a process
    that ends when that has ended (or returns None: nothing is left). The task then gets
    the rest of the grace, the signals fluxlite receives acted on as before.

    ``executable`` is argv[0] resolved already (else it is looked up on the env's PATH).
    :meth:`wait` blocks; :meth:`fileno` and :meth:`poll` let a caller wait for many.
    """

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], *,
                 cleanup: str = DESCENDANTS, executable: str | None = None,
                 pass_fds: tuple[tuple[int, int], ...] = (),
                 on_orphaned: Callable[[], None] | None = None,
                 linger: Callable[[], subprocess.Popen[bytes] | None] | None = None,
                 **kw: Any) -> None:
        super().__init__(argv, cwd, env, **kw)
        self.linger = linger
        self.cleanup = cleanup
        self.monitors_tree = cleanup == DESCENDANTS
        self.executable = executable
        self.pass_fds = pass_fds
        self.on_orphaned = on_orphaned
        self._task: supervisor.Supervised | None = None
        self._pid = 0
        self._fd = -1  # readable once the task has ended: the report pipe, or a pidfd
        self._wake_r = self._wake_w = -1  # wakes wait() when a signal moved the deadlines

    @property
    def helper_pids(self) -> tuple[int, ...]:
        """fluxlite's own processes below it (the supervisor): not the task's."""
        return (self._task.supervisor,) if self._task is not None else ()

    # -- start ------------------------------------------------------------------
    def start(self) -> None:
        """Open the stdio and spawn the task under the cleanup policy; ExecError when it
        cannot be started."""
        exe = self.executable or which(self.argv[0], self.env)
        if exe is None:
            raise ExecError(f"cannot execute {self.argv[0]}: "
                            f"{os.strerror(errno.ENOENT)}")
        if self.cleanup == GROUP and self.cwd != os.getcwd():
            raise ValueError("a task of the group policy starts in the current directory")
        out = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if self.append else os.O_TRUNC)
        mine: list[int] = []  # what is opened here (a descriptor given is the caller's)
        try:
            fin = _open("stdin", self.stdin, os.O_RDONLY, mine)
            fout = _open("stdout", self.stdout, out, mine)
            ferr = fout if self.stderr == self.stdout else _open("stderr", self.stderr, out, mine)
            self.result.start = time.time()
            self._t0 = time.monotonic()
            if self.cleanup == DESCENDANTS:
                become_subreaper()  # leftovers re-parent to fluxlite once the supervisor goes
                self._task = supervisor.start(exe, self.argv, self.cwd, self.env,
                                              (fin, fout, ferr), self.on_orphaned)
                self._pid, self._fd = self._task.pid, self._task.report
            else:
                self._pid = supervisor.spawn(exe, self.argv, self.env, (fin, fout, ferr),
                                             session=False, extra=self.pass_fds, sigmask=())
                self._fd = _pidfd(self._pid)
        except OSError as err:
            raise ExecError(f"cannot execute {exe}: {err.strerror or err}") from err
        except ValueError as err:  # a NUL in an argument or the environment
            raise ExecError(f"cannot execute {exe}: {err}") from err
        finally:
            for fd in mine:
                os.close(fd)
        self.result.pid = self._pid
        self._arm()

    # -- drive ---------------------------------------------------------------------
    def fileno(self) -> int:
        """A descriptor that becomes readable when the task has ended; -1 when there is
        none (then :meth:`ended` must be asked)."""
        return self._fd

    def ended(self) -> bool:
        """Whether the task has ended (its status not yet collected by :meth:`poll`)."""
        if self._done.is_set():
            return True
        if self._task is not None:
            p = select.poll()
            p.register(self._fd, select.POLLIN)
            return bool(p.poll(0))
        try:
            # WNOWAIT: look without reaping, so that the group is still there to be killed
            info = os.waitid(os.P_PID, self._pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def poll(self) -> TaskResult | None:
        """The task's result once it has ended (cleaned up as by :meth:`wait`), else None
        at once. The schedule is :meth:`wait`'s: a caller that polls has none."""
        if self._done.is_set():
            return self.result
        return self._collect() if self.ended() else None

    def wait(self) -> TaskResult:
        """Block until the task ends, applying the schedule and the signals fluxlite
        received; then clean up after it."""
        if self._done.is_set():
            return self.result
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        poller = select.poll()  # not select(): descriptors may be numbered above 1024
        if self._fd >= 0:
            poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            self._handle_pending()
            deadline = self._next_deadline()
            timeout = 3600.0 if deadline is None else max(0.0, deadline - time.monotonic())
            if self._fd < 0:
                timeout = min(timeout, 0.005)  # no descriptor to wait on: look again soon
            ready = {fd for fd, _ in poller.poll(math.ceil(min(timeout, 3600.0) * 1000))}
            if self._fd in ready or (self._fd < 0 and self.ended()):
                break
            if self._wake_r in ready:
                _drain(self._wake_r)
            self._check_deadlines()
        wake = (self._wake_r, self._wake_w)
        self._wake_r = self._wake_w = -1
        for fd in wake:
            os.close(fd)
        return self._collect()

    def _collect(self) -> TaskResult:
        """Reap the ended task, note its status and rusage, and clean up per the policy."""
        if self._task is not None:
            status, ru = self._task.wait()
        else:
            # the leader is a zombie still (not reaped): its pid cannot have been reused, so
            # the group it leads can be cleared of anything it left behind
            _killpg(self._pid, signal.SIGKILL)
            _, status, ru = os.wait4(self._pid, 0)  # EINTR is retried by Python itself
            if self._fd >= 0:
                os.close(self._fd)
        self._fd = -1
        if self._task is not None and self.linger is not None and has_children():
            self._linger(self.linger)
        self._done.set()
        res = self.result
        res.duration = time.monotonic() - self._t0
        res.status = (ExitStatus.from_wait(status) if status >= 0 else
                      ExitStatus(-1, error="the task's exit status was lost"))
        if ru is not None:
            res.rusage = rusage_dict(ru)
        if self._task is not None and has_children():
            # what the task left behind (none, as a rule: no process table scan then)
            self.result.killed.extend(kill_descendants("left behind: task ended"))
            reap_all()
        return res

    def _linger(self, linger: Callable[[], subprocess.Popen[bytes] | None]) -> None:
        """The rest of the grace for what outlived the task's leader after a TERM: until it
        ends, the KILL is due, or a second signal asks for it."""
        e = self.escalation
        if e.left(time.monotonic()) <= 0:
            return
        waiter = linger()
        if waiter is None:
            return
        try:
            while waiter.poll() is None and not e.killed:
                self._handle_pending()
                if e.left(time.monotonic()) <= 0:
                    break
                time.sleep(0.05)
        finally:
            if waiter.poll() is None:
                waiter.kill()
            waiter.wait()

    def close(self) -> None:
        """A task started and abandoned (never waited for): killed, reaped and cleaned up
        after. Nothing to do once it has been waited for."""
        if self._pid and not self._done.is_set():
            self.kill_tree("abandoned")
            self._collect()

    # -- signals --------------------------------------------------------------------
    def _interrupt_wait(self) -> None:
        if self._wake_w < 0:
            return
        try:
            os.write(self._wake_w, b"!")
        except OSError:
            pass  # full: already awake

    def send(self, signum: int, reason: str, cause: Cause = Cause.STOP) -> None:
        """TERM (or any signal) to the task's process group."""
        if not self._pid or self._done.is_set() or not _killpg(self._pid, signum):
            return
        self.events.append(SignalEvent(time.time(), signal_name(signum), "sent",
                                       f"process group {self._pid}", reason, cause))

    def kill_tree(self, reason: str, cause: Cause = Cause.STOP) -> None:
        """SIGKILL the task's process group and, under the descendants policy, every
        descendant of fluxlite."""
        if not self.escalation.kill_once():
            return
        if self.cleanup == DESCENDANTS:
            # every process below us, one by one so that the record can name them; the
            # task's process group is among them (fluxlite and the supervisor are subreapers)
            self.result.killed.extend(kill_descendants(reason, spare=self.helper_pids))
        if self._pid and not self._done.is_set():
            _killpg(self._pid, signal.SIGKILL)  # in case one escaped the scan
        self.events.append(SignalEvent(time.time(), "SIGKILL", "sent",
                                       "the task's process tree", reason, cause))

    def job_ids(self) -> dict[str, str]:
        """``{}``: the task is a process tree of fluxlite, not a job of its own."""
        return {}

    def job_info(self) -> dict[str, Any]:
        """``{}``: the task is a process tree of fluxlite, not a job of its own."""
        return {}


def _killpg(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _pidfd(pid: int) -> int:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return -1  # an older kernel: poll() looks with waitid instead


def reap_exited(spare: Container[int] = ()) -> None:
    """Reap the children of this process that have exited, but ``spare`` (tasks whose
    status their launcher is still to collect): what a cluster's tasks left behind,
    re-parented here (a subreaper), would otherwise stay zombies until the cluster ends."""
    try:
        kids = supervisor.children(os.getpid())
    except (OSError, ValueError):
        return  # the kernel does not list children: they are reaped when the cluster ends
    for pid in kids:
        if pid not in spare and not supervisor.alive(pid):
            try:
                os.waitpid(pid, os.WNOHANG)
            except OSError:
                pass


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


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _open(name: str, target: str | int, flags: int, mine: list[int]) -> int:
    """The descriptor for the task's ``name`` (stdin, stdout, stderr): ``target`` when it is
    one already, else the file opened (noted in ``mine``). An I/O failure is not a missing
    executable (127): FluxliteError."""
    if isinstance(target, int):
        return target
    try:
        fd = os.open(target, flags | os.O_CLOEXEC, 0o666)
    except OSError as err:
        raise FluxliteError(f"cannot open {name} {target}: {err.strerror}") from err
    mine.append(fd)
    return fd
