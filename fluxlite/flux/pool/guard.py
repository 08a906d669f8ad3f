"""A pool worker's guard: the process Flux starts for each worker, and the worker's parent.

    flux-shell -> guard (a child subreaper) -> worker -> tasks -> what the tasks start

Neither can be read by the tasks (see :func:`hide_memory`), which run as the same user.
The guard forks the worker before it opens any Flux handle, then only watches: the worker
tells it, through a pipe, the pool's secret, then each attempt it starts and reaps (process
group, key, start). Everything below the worker re-parents to the guard when its parent
dies (setsid and double-forked descendants too), so the guard can always find and kill it.

- The worker ends cleanly (``=`` on the pipe): the guard reaps it and exits with its status.
- The worker dies (killed, crashed): the guard kills every process below it at once, then
  tells the coordinator (``gone``: which attempts were killed, their pids and starts), and
  exits.
- The coordinator gives up on the worker (it stopped answering: SIGSTOP, a hang) and asks
  the guard to ``kill``: the guard KILLs the worker and everything below it and answers only
  when none is left, so that a retry elsewhere never runs beside the first try.
- The guard dies: the worker gets its parent-death signal, kills its tasks and says
  ``gone`` itself (see ``worker``).
- TERM, INT or HUP to the guard (Flux cancelling the pool) go on to the worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from fluxlite.execute import supervisor
from fluxlite.flux import jobspec
from fluxlite.flux.pool import messages as m

logger = logging.getLogger(__name__)

#: the worker's parent-death signal: its guard is gone
GUARD_LOST = signal.SIGUSR2
_FORWARD = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_KILL_WAIT = 30.0  # seconds to get every process below the worker killed and reaped
_GONE_WAIT = 10.0  # seconds the coordinator has to take the guard's word


def _prctl(option: int, arg: int) -> bool:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_parent_death_signal(signum: int) -> bool:
    """Have the kernel send ``signum`` to this process when its parent dies (Linux)."""
    return _prctl(1, int(signum))  # PR_SET_PDEATHSIG


def hide_memory() -> bool:
    """Keep processes of the same user (the tasks) from reading this one's memory, and so
    the pool's secret: no ptrace, no /proc/PID/mem or environ (Linux; a task's exec gives
    it back its own)."""
    return _prctl(4, 0)  # PR_SET_DUMPABLE


class Guard:
    """The guard process (the module's doc)."""

    def __init__(self, service: str, coord_rank: int, index: int, rfd: int,
                 worker: int) -> None:
        self.service, self.coord, self.index = service, coord_rank, index
        self.rfd, self.worker = rfd, worker
        self.groups: dict[int, tuple[int, float]] = {}  # pgid -> (key, start)
        self.buf = b""
        self.seal: m.Seal | None = None
        self.clean = False
        self.eof = False
        self.status: int | None = None  # the worker's wait status once reaped
        self.h: Any = None

    # -- the pipe -------------------------------------------------------------------------
    def _read(self) -> None:
        try:
            chunk = os.read(self.rfd, 65536)
        except InterruptedError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.eof = True
            return
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for ln in lines:
            self._line(ln.decode("ascii", "replace"))

    def _line(self, ln: str) -> None:
        try:
            if ln[:1] == "+":
                pgid, key, start = ln[1:].split()
                self.groups[int(pgid)] = (int(key), float(start))
            elif ln[:1] == "-":
                self.groups.pop(int(ln[1:]), None)
            elif ln[:1] == "k" and self.seal is None:
                self.seal = m.Seal(bytes.fromhex(ln[1:]))
            elif ln == "=":
                self.clean = True
        except (ValueError, m.BadMessage):
            logger.warning("pool guard %d: a line it does not know from its worker: %.40r",
                           self.index, ln)

    # -- ending ---------------------------------------------------------------------------
    def _reap_worker(self, kill: bool) -> None:
        if self.status is not None:
            return
        if kill:
            with contextlib.suppress(OSError):
                os.kill(self.worker, signal.SIGKILL)  # a stopped process dies of it too
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
        end = time.time()
        killed = [{"key": key, "pid": pgid, "start": start, "end": end}
                  for pgid, (key, start) in self.groups.items()]
        self.groups.clear()
        return {"worker": self.index, "by": "guard", "why": why, "killed": killed,
                "left": left}

    def _why(self) -> str:
        st = self.status if self.status is not None else -1
        if st >= 0 and os.WIFSIGNALED(st):
            return f"its process was killed by {signal.Signals(os.WTERMSIG(st)).name}"
        if st >= 0 and os.WIFEXITED(st):
            return f"its process exited {os.WEXITSTATUS(st)}"
        return "its process is gone"

    def _exit_code(self) -> int:
        st = self.status if self.status is not None else -1
        if st >= 0 and os.WIFEXITED(st):
            return os.WEXITSTATUS(st)
        return 1

    # -- the reactor ----------------------------------------------------------------------
    def run(self) -> int:
        """Watch the worker until it ends (or the coordinator has it killed); the exit code."""
        for sig in _FORWARD:
            signal.signal(sig, self._forward)
        while self.seal is None and not self.eof:  # no Flux handle before the secret
            self._read()
        if self.eof:
            return self._end()
        try:
            self._serve()
        except OSError as err:  # the broker is gone: so is the node, for the pool
            logger.error("error: pool guard %d: lost its broker: %s", self.index,
                         err.strerror or err)
        return self._end()

    def _forward(self, signum: int, _frame: Any = None) -> None:
        with contextlib.suppress(OSError):
            os.kill(self.worker, signum)

    def _serve(self) -> None:
        import flux  # type: ignore[import-not-found]

        self.h = h = jobspec.connect(what="the pool's instance")
        name = m.guard_service(self.service, self.index)
        h.service_register(name).get()
        watchers = [
            h.msg_watcher_create(self._on_kill, flux.constants.FLUX_MSGTYPE_REQUEST,
                                 f"{name}.{m.KILL}"),
            h.fd_watcher_create(self.rfd, self._on_pipe, events=flux.constants.FLUX_POLLIN),
            *(h.signal_watcher_create(sig, self._on_signal) for sig in _FORWARD)]
        for w in watchers:
            w.start()
        try:
            if h.reactor_run() < 0:
                raise OSError("the reactor failed")
        finally:
            for w in watchers:
                w.stop()
        type(h).raise_if_exception()

    def _on_signal(self, _h: Any, _w: Any, signum: int, _arg: Any) -> None:
        self._forward(signum)

    def _on_pipe(self, *_args: Any) -> None:
        self._read()
        if self.eof:
            self.h.reactor_stop()

    def _on_kill(self, h: Any, _t: Any, msg: Any, _arg: Any) -> None:
        try:
            if self.seal is None:  # not served before the secret: cannot happen
                raise m.BadMessage("the guard has no secret yet")
            doc = self.seal.open(f"{m.guard_service(self.service, self.index)}.{m.KILL}",
                                 m.payload(msg))
            why = m.check_kill(doc, self.index)
            if msg.userid != os.getuid():
                raise m.BadMessage(f"sent by user id {msg.userid}")
        except m.MALFORMED as err:
            logger.warning("pool guard %d: dropped a bad kill request: %s", self.index,
                           m.as_bad(err))
            m.refuse(h, msg, m.as_bad(err))
            return
        self._answer = self._gone(why)
        with contextlib.suppress(OSError):
            h.respond(msg, m.dumps(self._answer))
        self.clean = True  # the coordinator has the word: nothing more to tell it
        h.reactor_stop()

    def _end(self) -> int:
        """The worker is gone (or is to be): nothing below the guard survives it."""
        if self.status is None:
            self._reap_worker(kill=not self.eof)
        if self.clean:  # the worker killed and reaped its tasks itself (or was asked to)
            self._kill_below()  # what a task left outside its group, if anything
            return self._exit_code()
        doc = self._gone(self._why())
        if self.h is not None and self.seal is not None:
            topic = f"{self.service}.{m.GONE}"
            try:
                self.h.rpc(topic, self.seal.seal(topic, doc), nodeid=self.coord).wait_for(
                    _GONE_WAIT).get()
            except (OSError, TimeoutError) as err:
                logger.warning("pool guard %d: could not tell the coordinator: %s",
                               self.index, getattr(err, "strerror", None) or err)
        n = len(doc["killed"])
        logger.warning("pool guard %d: %s: killed %d task(s) and everything below them%s",
                       self.index, doc["why"], n,
                       f"; {doc['left']} process(es) would not die" if doc["left"] else "")
        return self._exit_code()


def main(service: str, coord_rank: int, worker: Callable[[int, int], int]) -> int:
    """Fork the worker below a guard, and be the guard; the exit code. ``worker(wfd,
    guard_pid)`` is the worker's process, told its end of the pipe to the guard."""
    supervisor.make_subreaper()
    hide_memory()  # the fork inherits it
    index = int(os.environ.get("FLUX_TASK_RANK", "0"))
    rfd, wfd = os.pipe()
    parent = os.getpid()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            os.close(rfd)
            set_parent_death_signal(GUARD_LOST)
            if os.getppid() == parent:
                code = worker(wfd, parent)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(wfd)
    os.set_inheritable(rfd, False)
    return Guard(service, coord_rank, index, rfd, pid).run()
