"""A pool worker's guard on Flux: the process Flux starts for each worker, and the worker's
parent (the mechanism is :mod:`fluxlite.execute.guard`'s).

    flux-shell -> guard (a child subreaper) -> worker -> tasks -> what the tasks start

The guard forks the worker before it opens any Flux handle, then serves the pool's kill
request and watches the worker's end (a pidfd; the pipe's end on a kernel without them).
It reads the worker's lines every quarter second and before it acts on them (the worker's
end, a kill), never at each write: a task's start and end cost the guard no wake-up, and
the pipe holds far more than a quarter second of lines.

- The worker ends cleanly (``=`` on the pipe): the guard reaps it and exits with its status.
- The worker dies (killed, crashed): the guard kills every process below it at once, then
  tells the coordinator (``gone``: which attempts were killed, their pids and starts, and
  which waited in the worker's queue and never started), and exits.
- The coordinator gives up on the worker (it stopped answering: SIGSTOP, a hang) and asks
  the guard to ``kill``: the guard KILLs the worker and everything below it and answers only
  when none is left, so that a retry elsewhere never runs beside the first try.
- The guard dies: the worker gets its parent-death signal, kills its tasks and says
  ``gone`` itself (see ``worker``).
- A stop signal to the guard (TERM: Flux cancelling the pool) goes on to the worker.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
from collections.abc import Callable

from fluxlite.cluster.pool import messages as m
from fluxlite.execute.guard import Guard, GuardLink, fork_worker
from fluxlite.errors import FluxliteError
from fluxlite.flux import lean
from fluxlite.lazylog import get_logger
from fluxlite.signals import STOP_SIGNALS

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = get_logger(__name__)

_GONE_WAIT = 10.0  # seconds the coordinator has to take the guard's word
_READ_EVERY = 0.25  # seconds between two reads of the worker's lines


class PoolGuard(Guard):
    """The guard process of a pool worker (the module's doc)."""

    def __init__(self, service: str, coord_rank: int, index: int, rfd: int,
                 worker: int) -> None:
        super().__init__(index, rfd, worker)
        self.service, self.coord = service, coord_rank
        self.seal: m.Seal | None = None
        self.h: Any = None

    def take_secret(self, secret: bytes) -> None:
        """The pool's secret: what the guard seals its word and checks a kill with."""
        self.seal = m.Seal(secret)
        super().take_secret(secret)

    # -- the reactor ----------------------------------------------------------------------
    def run(self) -> int:
        """Watch the worker until it ends (or the coordinator has it killed); the exit code."""
        for sig in STOP_SIGNALS:
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

    def _serve(self) -> None:
        self.h = h = lean.Handle()
        name = m.guard_service(self.service, self.index)
        h.service_register(name).get()
        watchers = [
            h.msg_watcher_create(self._on_kill, lean.REQUEST, f"{name}.{m.KILL}"),
            *(h.signal_watcher_create(sig, self._on_signal) for sig in STOP_SIGNALS)]
        try:
            end = os.pidfd_open(self.worker)
        except (AttributeError, OSError):
            end = -1
        if end >= 0:
            # the worker's lines are read now and then, and to the last when it ends: not
            # a wake-up of the guard for each of its writes (a task's start and end)
            watchers += [h.fd_watcher_create(end, self._on_worker_end, events=lean.POLLIN),
                         h.timer_watcher_create(_READ_EVERY, self._on_timer,
                                                repeat=_READ_EVERY)]
        else:  # no pidfd (an old kernel): the pipe's end is the worker's
            watchers.append(h.fd_watcher_create(self.rfd, self._on_pipe, events=lean.POLLIN))
        for w in watchers:
            w.start()
        try:
            h.reactor_run()
        finally:
            for w in watchers:
                w.stop()
            if end >= 0:
                os.close(end)

    def _on_signal(self, _h: Any, _w: Any, signum: int, _arg: Any) -> None:
        self._forward(signum)

    def _on_pipe(self, *_args: Any) -> None:
        self._read()
        if self.eof:
            self.h.reactor_stop()

    def _on_timer(self, *_args: Any) -> None:
        self._drain()

    def _on_worker_end(self, *_args: Any) -> None:
        self._drain()  # all it said is in the pipe
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


def main(service: str, coord_rank: int, worker: Callable[[GuardLink], int]) -> int:
    """Fork the worker below a guard, and be the guard; the exit code. ``worker(link)`` is
    the worker's process, given its end of the pipe to the guard."""
    try:
        lean.bind()  # once, before the fork, for both (no handle is opened before it)
    except FluxliteError as err:
        sys.stderr.write(f"error: pool worker: {err}\n")
        return 1
    index = int(os.environ.get("FLUX_TASK_RANK", "0"))
    # what the start made lives as long as the process: frozen, the collections of the
    # guard and of its fork never scan it again (nor copy the pages they would touch)
    gc.freeze()
    gc.enable()
    pid, rfd = fork_worker(worker)
    return PoolGuard(service, coord_rank, index, rfd, pid).run()
