"""A pool worker: one task of the pool's Flux job, on one node (or a share of one).

``python -m fluxlite.flux.pool.worker SERVICE RANK STDIO_BYTES`` says hello to the
coordinator's service on broker RANK, then runs the tasks it is given with the local
executor's semantics (slots, memory, GPUs, process groups, forwarding, stdio captured) and
sends their results back, many a message. Everything is driven by the Flux reactor: the
executor's process descriptors, the RPC answers and the coordinator's requests.

A guard process, forked first, holds the read end of a pipe on which the worker names the
process group of each task it starts and reaps: when the worker dies (killed, its node's
broker gone) the pipe ends and the guard kills the groups that were still running, so a
task never outlives its worker and never runs twice at once when it is retried elsewhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from typing import Any

from fluxlite.cluster.records import Attempt
from fluxlite.execute.base import ExitStatus
from fluxlite.flux import jobspec
from fluxlite.flux.pool import messages as m

logger = logging.getLogger(__name__)

_TICK = 0.5  # seconds: reaping of leftovers, and the fallback when pidfds are missing


class LocalRunner:
    """The one place a worker meets the local launcher: start attempts, collect those that
    ended, signal them, and the descriptor that becomes readable when one may have ended."""

    def __init__(self, tmpdir: str, stdio_bytes: int, slots: int, memory_mb: int,
                 gpus: int) -> None:
        local = self._launcher()
        self.ex = local.LocalExecutor(local.TaskFiles(tmpdir, stdio_bytes), jobs=slots,
                                      memory_mb=memory_mb, gpus=gpus)

    @staticmethod
    def _launcher() -> Any:
        from fluxlite.cluster import executors  # the local launcher

        return executors

    @classmethod
    def node_memory_mb(cls) -> int:
        """This node's memory, as the local launcher counts it (0: not accounted)."""
        return int(cls._launcher().local_capacity(1, None, 0)[2])

    def start(self, a: Attempt) -> Attempt | None:
        """Start an attempt; it back at once when it could not be started."""
        return self.ex.start(a)

    def collect(self) -> list[Attempt]:
        """The attempts that have ended, without waiting."""
        return self.ex.poll(0)

    def free_slots(self) -> int:
        """Cores not taken by a running attempt."""
        return int(self.ex.free_cores)

    def running(self) -> int:
        """How many attempts run."""
        return self.ex.running()

    def fileno(self) -> int | None:
        """Readable when an attempt may have ended (None: collect on the tick instead)."""
        return self.ex.wakeup_fd()

    def signal_all(self, signum: int, reason: str) -> None:
        """``signum`` to every running attempt's process group."""
        self.ex.signal_all(signum, reason)

    def close(self) -> None:
        """End what still runs and what the attempts left behind."""
        self.ex.close()


class Guard:
    """The guard process (see the module's doc)."""

    def __init__(self) -> None:
        rfd, self.wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the guard
            os.close(self.wfd)
            _guard_main(rfd)
            os._exit(0)
        os.close(rfd)
        os.set_inheritable(self.wfd, False)
        self.pid = pid

    def add(self, pgid: int) -> None:
        """A process group to kill should the worker die."""
        self._say(f"+{pgid}\n")

    def remove(self, pgid: int) -> None:
        """A process group that is gone: not to be killed."""
        self._say(f"-{pgid}\n")

    def _say(self, line: str) -> None:
        with contextlib.suppress(OSError):
            os.write(self.wfd, line.encode())

    def close(self) -> None:
        """The worker ends: the guard kills what is left and is reaped."""
        os.close(self.wfd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _guard_main(rfd: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)  # it ends when the worker does, not before
    groups: set[int] = set()
    buf = b""
    while True:
        try:
            chunk = os.read(rfd, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for ln in lines:
            if ln[:1] == b"+":
                groups.add(int(ln[1:]))
            elif ln[:1] == b"-":
                groups.discard(int(ln[1:]))
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)


class Worker:
    """A pool worker: asks the coordinator for tasks, runs them, reports them."""

    def __init__(self, service: str, coord_rank: int, stdio_bytes: int) -> None:
        self.guard = Guard()  # before any Flux handle exists: the fork copies none
        import flux  # type: ignore[import-not-found]

        self.flux = flux
        self.service = service
        self.coord = coord_rank
        self.h = jobspec.connect(what="the pool's instance")
        self.rank = self.h.get_rank()
        self.index = int(os.environ.get("FLUX_TASK_RANK", "0"))
        self.host = socket.gethostname()
        base = os.environ.get("FLUX_JOB_TMPDIR") or None
        self.tmpdir = tempfile.mkdtemp(prefix=f".fluxlite-pool-w{self.index}.", dir=base)
        share = self._rpc_get(m.HELLO, {"worker": self.index, "rank": self.rank,
                                        "host": self.host, "pid": os.getpid(),
                                        "memory_mb": LocalRunner.node_memory_mb()})
        self.runner = LocalRunner(self.tmpdir, stdio_bytes, int(share["slots"]),
                                  int(share.get("memory_mb") or 0), int(share.get("gpus") or 0))
        self.running: dict[int, tuple[int, Attempt]] = {}  # pid -> (key, attempt)
        self.results: list[dict[str, Any]] = []
        self.want_out = False
        self.done_out = False
        self.stop_reason: str | None = None
        self.finished = False
        self._ticks = 0
        self.ping_out = False
        self.watchers: list[Any] = []
        name = m.worker_service(service, self.index)
        self.h.service_register(name).get()
        t = flux.constants.FLUX_MSGTYPE_REQUEST
        for topic, cb in ((m.SIGNAL, self._on_signal), (m.PING, self._on_ping),
                          (m.STOP, self._on_stop)):
            w = self.h.msg_watcher_create(cb, t, f"{name}.{topic}")
            w.start()
            self.watchers.append(w)
        fd = self.runner.fileno()
        if fd is not None:
            w = self.h.fd_watcher_create(fd, self._on_ready, events=flux.constants.FLUX_POLLIN)
            w.start()
            self.watchers.append(w)
        tick = self.h.timer_watcher_create(_TICK, self._on_tick, repeat=_TICK)
        tick.start()
        self.watchers.append(tick)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            sw = self.h.signal_watcher_create(sig, self._on_own_signal)
            sw.start()
            self.watchers.append(sw)

    def _rpc_get(self, topic: str, doc: dict[str, Any]) -> dict[str, Any]:
        return m.loads(self.h.rpc(f"{self.service}.{topic}", m.dumps(doc),
                                  nodeid=self.coord).get_str())

    # -- asking for work and answering ---------------------------------------------------
    def _ask(self) -> None:
        if self.want_out or self.stop_reason or self.finished or self.runner.free_slots() <= 0:
            return
        self.want_out = True
        doc: dict[str, Any] = {"worker": self.index}
        if self.results and not self.done_out:
            # the results ride along: one message instead of two when the worker is busy
            doc["results"], self.results = self.results, []
        f = self.h.rpc(f"{self.service}.{m.WANT}", m.dumps(doc), nodeid=self.coord)
        f.then(self._on_tasks)

    def _on_tasks(self, fut: Any) -> None:
        self.want_out = False
        try:
            doc = m.loads(fut.get_str())
        except OSError as err:
            self._coordinator_gone(err)
            return
        if doc.get("stop"):
            self._finish()
            return
        for d in doc.get("tasks", ()):
            key, a = m.decode_task(d)
            if self.stop_reason is not None:
                a.stopped = self.stop_reason  # came after the stop: never started
                a.status = ExitStatus.failed_to_start(f"not started ({self.stop_reason})")
                self._result(key, a)
                continue
            failed = self.runner.start(a)
            if failed is not None:
                self._result(key, failed)
            else:
                self.running[a.pid] = (key, a)
                self.guard.add(a.pid)
        self._ask()
        self._send_results()

    def _on_ready(self, *_args: Any) -> None:
        self._collect()

    def _on_tick(self, *_args: Any) -> None:
        self._collect()
        self._ticks += 1
        if self._ticks % 4 == 0 and not self.ping_out and not self.finished:
            # an idle worker's only message may be a 'want' held by a coordinator that died
            self.ping_out = True
            self.h.rpc(f"{self.service}.{m.PING}", b"{}", nodeid=self.coord).then(
                self._on_pong)

    def _on_pong(self, fut: Any) -> None:
        self.ping_out = False
        self._answered(fut)

    def _answered(self, fut: Any) -> bool:
        """Whether the coordinator answered the request; when it did not, it is gone."""
        try:
            fut.get_str()
        except OSError as err:
            self._coordinator_gone(err)
            return False
        return True

    def _collect(self) -> None:
        if not self.running:
            return
        for a in self.runner.collect():
            key, _ = self.running.pop(a.pid)
            self.guard.remove(a.pid)
            self._result(key, a)
        self._ask()
        self._send_results()

    def _result(self, key: int, a: Attempt) -> None:
        self.results.append(m.encode_result(key, a))

    def _send_results(self) -> None:
        if self.done_out or not self.results or self.finished:
            return
        batch, self.results = self.results, []
        self.done_out = True
        f = self.h.rpc(f"{self.service}.{m.DONE}", m.dumps({"worker": self.index,
                                                            "results": batch}),
                       nodeid=self.coord)
        f.then(self._on_ack)

    def _on_ack(self, fut: Any) -> None:
        self.done_out = False
        if self._answered(fut):
            self._send_results()

    # -- requests from the coordinator ----------------------------------------------------
    def _on_signal(self, h: Any, _t: Any, msg: Any, _arg: Any) -> None:
        doc = m.loads(msg.payload_str)
        signum, reason = int(doc["signum"]), str(doc.get("reason") or "stopped")
        self.stop_reason = self.stop_reason or reason
        self.runner.signal_all(signum, reason)
        h.respond(msg, m.dumps({"running": self.runner.running()}))

    def _on_ping(self, h: Any, _t: Any, msg: Any, _arg: Any) -> None:
        h.respond(msg, m.dumps({"running": self.runner.running()}))

    def _on_stop(self, h: Any, _t: Any, msg: Any, _arg: Any) -> None:
        self._finish()
        h.respond(msg, m.dumps({}))

    def _on_own_signal(self, *_args: Any) -> None:
        self._finish()  # Flux cancelled the pool: its tasks go with it

    def _coordinator_gone(self, err: OSError) -> None:
        logger.error("error: pool worker %d on rank %d: the coordinator is gone: %s",
                     self.index, self.rank, err.strerror or err)
        self._finish()

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self.h.reactor_stop()

    def run(self) -> int:
        """Ask for work and run the reactor until told to stop; leave nothing behind."""
        self._ask()
        self.h.reactor_run()
        for w in self.watchers:
            w.stop()
        self.runner.close()  # KILL and reap what still runs, and what it left behind
        self.running.clear()
        self.guard.close()
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        return 0


def main(argv: list[str] | None = None) -> int:
    """A pool worker's process: SERVICE COORDINATOR_RANK STDIO_BYTES."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if len(args) != 3:
        sys.stderr.write("usage: python -m fluxlite.flux.pool.worker SERVICE RANK "
                         "STDIO_BYTES\n")
        return 2
    try:
        worker = Worker(args[0], int(args[1]), int(args[2]))
    except OSError as err:
        sys.stderr.write(f"error: pool worker on {socket.gethostname()}: cannot reach the "
                         f"coordinator: {err.strerror or err}\n")
        return 1
    return worker.run()


if __name__ == "__main__":
    raise SystemExit(main())
