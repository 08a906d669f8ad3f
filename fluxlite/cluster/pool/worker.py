"""A pool worker: one task of the pool's Flux job, on one node (or a share of one).

``python -m fluxlite.cluster.pool.worker SERVICE RANK STDIO_BYTES KVS_NAMESPACE`` says hello to
the coordinator's service on broker RANK, then runs the tasks it is given with the local
executor's semantics (slots, memory, GPUs, process groups, forwarding, stdio captured) and
sends their results back, many a message. What it is given beyond its free slots waits in
its queue, in the order given, and starts as soon as the local executor has room for the
first of it (never past it: a big task is not overtaken for ever). Everything is driven by
the Flux reactor: the executor's process descriptors, the RPC answers and the
coordinator's requests.

The process Flux starts is the worker's guard (:mod:`fluxlite.cluster.pool.guard`, the
mechanism :mod:`fluxlite.execute.guard`'s), which forks the worker and outlives it: the
worker tells it, through a pipe, the process group, key and start of each task it starts
and reaps. When the worker dies, or stops answering and the coordinator has
its guard kill it, the guard kills every process below it before the coordinator retries
its tasks elsewhere. When the guard dies, the worker kills its own tasks, says so, and
stops. The pool's secret comes from the KVS (``messages``): every request the worker sends
is sealed with it, and every request it gets must be.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Iterable

from fluxlite.cluster.formats import Task
from fluxlite import fsutil
from fluxlite.cluster.attempt import Attempt
from fluxlite.execute.base import ExitStatus
from fluxlite.flux import lean
from fluxlite.cluster.pool import messages as m
from fluxlite.execute.guard import GUARD_LOST, GuardLink
from fluxlite.lazylog import get_logger
from fluxlite.signals import STOP_SIGNALS, exit_now

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = get_logger(__name__)

_TICK = 0.5  # seconds: reaping of leftovers, and the fallback when pidfds are missing
_SILENCE = 2.0  # seconds without a word from the coordinator before asking if it lives


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

    def startable(self, tasks: Iterable[Task]) -> int:
        """How many of ``tasks``, from the first, fit together in what is free now."""
        ex = self.ex
        cores, gpus, mem = ex.free_cores, ex.free_gpus, ex.free_mem
        n = 0
        for t in tasks:
            if t.cores > cores or t.gpus > gpus or (ex.memory_mb and t.memory_mb > mem):
                break
            cores, gpus, mem = cores - t.cores, gpus - t.gpus, mem - t.memory_mb
            n += 1
        return n

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


class Worker:
    """A pool worker: asks the coordinator for tasks, runs them, reports them."""

    def __init__(self, service: str, coord_rank: int, stdio_bytes: int, kvs_ns: str,
                 guard: GuardLink) -> None:
        self.guard = guard
        self.service = service
        self.coord = coord_rank
        self.h = lean.Handle()
        self.rank = self.h.get_rank()
        self.index = int(os.environ.get("FLUX_TASK_RANK", "0"))
        self.host = os.uname().nodename
        self.guard_lost = False
        try:
            # the shell points a task's KVS at its job's namespace: the key is in the
            # coordinator's
            secret = bytes.fromhex(str(self.h.kvs_get(m.secret_key(service), kvs_ns)))
            self.seal = m.Seal(secret)
        except (OSError, ValueError, m.BadMessage) as err:
            raise OSError(f"no pool secret: {getattr(err, 'strerror', None) or err}") from err
        guard.secret(secret)
        base = os.environ.get("FLUX_JOB_TMPDIR") or fsutil.tmpdir()
        self.tmpdir = fsutil.mkdtemp(base, f".fluxlite-pool-w{self.index}.")
        # its service before its hello: the coordinator may ping it as soon as it is
        # known (what comes before the reactor runs waits for the handlers below)
        self.name = m.worker_service(service, self.index)
        self.h.service_register(self.name).get()
        share = m.loads(self._rpc(m.HELLO, {
            "worker": self.index, "rank": self.rank, "host": self.host, "pid": os.getpid(),
            "guard": guard.pid, "memory_mb": LocalRunner.node_memory_mb()}).get_str())
        self.runner = LocalRunner(self.tmpdir, stdio_bytes, int(share["slots"]),
                                  int(share.get("memory_mb") or 0), int(share.get("gpus") or 0))
        self.running: dict[int, tuple[int, Attempt]] = {}  # pid -> (key, attempt)
        self.waiting: deque[tuple[int, Attempt]] = deque()  # given, not started yet
        self.results: list[dict[str, Any]] = []
        self.want_out = False
        self.done_out = False
        # seconds with free slots and nothing to start while a 'want' was out, until it
        # brought tasks (the coordinator's record shows it)
        self.starved = 0.0
        self.starved_since: float | None = None
        self.stop_reason: str | None = None  # signalled: nothing more starts
        self.hold_reason: str | None = None  # held: nothing more starts, tasks still end
        self.finished = False
        self.heard = time.monotonic()  # the coordinator's last word (request or answer)
        self.ping_out = False
        self.watchers: list[Any] = []
        t = lean.REQUEST
        for topic, cb in ((m.SIGNAL, self._on_signal), (m.PING, self._on_ping),
                          (m.STOP, self._on_stop), (m.HOLD, self._on_hold),
                          (m.GIVE, self._on_give)):
            w = self.h.msg_watcher_create(self._opened(topic, cb), t, f"{self.name}.{topic}")
            w.start()
            self.watchers.append(w)
        fd = self.runner.fileno()
        if fd is not None:
            w = self.h.fd_watcher_create(fd, self._on_ready, events=lean.POLLIN)
            w.start()
            self.watchers.append(w)
        tick = self.h.timer_watcher_create(_TICK, self._on_tick, repeat=_TICK)
        tick.start()
        self.watchers.append(tick)
        # the results wait at most FLUSH_AFTER while work waits here (armed when needed)
        self.flush_timer = self.h.timer_watcher_create(m.FLUSH_AFTER, self._on_flush_timer)
        self.flush_armed = False
        self.watchers.append(self.flush_timer)
        for sig, cb in (*((s, self._on_own_signal) for s in STOP_SIGNALS),
                        (GUARD_LOST, lambda *_: self._check_guard())):
            sw = self.h.signal_watcher_create(sig, cb)
            sw.start()
            self.watchers.append(sw)
        self._check_guard()  # it may have died before the watcher was there

    def _rpc(self, topic: str, doc: dict[str, Any]) -> Any:
        """A sealed request to the coordinator; its future."""
        full = f"{self.service}.{topic}"
        return self.h.rpc(full, self.seal.seal(full, doc), nodeid=self.coord)

    def _opened(self, topic: str, cb: Any) -> Any:
        """A request handler that gets the request's checked JSON, or never sees it: a
        request not sealed with the pool's secret, or malformed, is logged and dropped."""
        full = f"{self.name}.{topic}"

        def handler(h: Any, _t: Any, msg: Any, _arg: Any) -> None:
            try:
                doc = self.seal.open(full, m.payload(msg))
                if msg.userid != os.getuid():
                    raise m.BadMessage(f"sent by user id {msg.userid}")
                self.heard = time.monotonic()
                reply = cb(doc)
            except m.MALFORMED as err:  # should a check miss, the request is dropped
                why = m.as_bad(err)
                logger.warning("pool worker %d: dropped a bad %s request: %s", self.index,
                               topic, why)
                m.refuse(h, msg, why)
                return
            h.respond(msg, m.dumps(reply))
            self._report()  # what the request changed (results of tasks not started)

        return handler

    # -- asking for work and answering ---------------------------------------------------
    def _ask(self) -> None:
        """A 'want', with the results gathered riding along."""
        if self.want_out or self.stop_reason or self.finished:
            return
        self.want_out = True
        doc: dict[str, Any] = {"worker": self.index, "starved": round(self.starved, 6)}
        if self.results:
            doc["results"], self.results = self.results, []
        self._rpc(m.WANT, doc).then(self._on_tasks)
        self._starving()

    def _on_tasks(self, fut: Any) -> None:
        self.want_out = False
        try:
            doc = m.loads(fut.get_str())
            self.heard = time.monotonic()
            tasks = doc.get("tasks", [])
            if not isinstance(tasks, list):
                raise m.BadMessage(f"tasks: not a list: {tasks!r:.40}")
        except OSError as err:
            self._coordinator_gone(err)
            return
        except m.BadMessage as err:
            logger.warning("pool worker %d: dropped a bad answer to want: %s", self.index, err)
            self._finish()
            return
        if doc.get("stop"):
            self._finish()
            return
        if tasks and self.starved_since is not None:
            self.starved += time.monotonic() - self.starved_since
        self.starved_since = None
        fresh: set[int] = set()
        for d in tasks:
            try:
                key, a = m.decode_task(d)
            except m.BadMessage as err:
                logger.warning("pool worker %d: dropped a bad task: %s", self.index, err)
                self._refused(d, err)
                continue
            why = self.stop_reason or self.hold_reason or (
                "worker stopping" if self.finished else None)
            if why is not None:
                self._not_started(key, a, why)
                continue
            self.waiting.append((key, a))
            fresh.add(key)
        self._start_waiting(fresh)
        self._report()

    def _start_waiting(self, fresh: set[int] | frozenset[int] = frozenset()) -> None:
        """Start what waits, in order, as far as the first that does not fit; the guard
        hears of each attempt that starts, and of each of ``fresh`` (just given) that
        waits."""
        while self.waiting and (n := self.runner.startable(a.task for _, a in self.waiting)):
            starting = [self.waiting.popleft() for _ in range(n)]
            for key, _ in starting:
                if key not in fresh:  # the guard knew it as waiting: it starts now
                    self.guard.starting(key)
            self.guard.flush()
            for key, a in starting:
                failed = self.runner.start(a)
                if failed is not None:
                    self._result(key, failed)
                else:
                    self.running[a.pid] = (key, a)
                    self.guard.add(a.pid, key, a.start)
        for key, _ in self.waiting:
            if key in fresh:
                self.guard.queued(key)
        self.guard.flush()

    def _not_started(self, key: int, a: Attempt, why: str) -> None:
        a.stopped = why
        a.status = ExitStatus.failed_to_start(f"not started ({why})")
        self._result(key, a)

    def _refused(self, d: Any, err: m.BadMessage) -> None:
        """A task it could not read fails, when its key can be read: the coordinator does
        not wait for it for ever."""
        key = d.get("key") if isinstance(d, dict) else None
        if type(key) is not int or key < 1:
            return
        a = Attempt(task=Task(id=str(d.get("id"))[:200]), number=1)
        a.status = ExitStatus.failed_to_start(f"the worker could not read the task: {err}")
        self._result(key, a)

    def _on_ready(self, *_args: Any) -> None:
        self._collect()

    def _on_tick(self, *_args: Any) -> None:
        self._check_guard()
        self._collect()
        if (not self.ping_out and not self.finished
                and time.monotonic() - self.heard >= _SILENCE):
            # an idle worker's only message may be a 'want' held by a coordinator that died
            self.ping_out = True
            self._rpc(m.PING, {"worker": self.index}).then(self._on_pong)

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
        self.heard = time.monotonic()
        return True

    def _collect(self) -> None:
        if not self.running:
            return
        ended = self.runner.collect()
        for a in ended:
            key, _ = self.running.pop(a.pid)
            self.guard.remove(a.pid)
            self._result(key, a)
        if ended:
            self._start_waiting()
            self._report()

    def _result(self, key: int, a: Attempt) -> None:
        self.results.append(m.encode_result(key, a))

    def _report(self) -> None:
        """Send the results now, or soon (``messages``): at once when nothing waits here
        any more (the next start depends on the coordinator), when it stops, or, with no
        'want' out, when a third of what this worker holds has ended (the rest covers the
        round trip that brings the next tasks); else after ``FLUSH_AFTER``. A worker with
        room and nothing waiting asks for work."""
        if self.finished:
            return
        self._starving()
        if not self.results:
            if not self.waiting and self.runner.free_slots() > 0:
                self._ask()
            return
        held = len(self.running) + len(self.waiting) + len(self.results)
        if (not self.waiting or self.stop_reason or self.hold_reason
                or (not self.want_out and 3 * len(self.results) >= held)):
            self._flush()
        elif not self.flush_armed:
            self.flush_armed = True
            self.flush_timer.reset(after=m.FLUSH_AFTER, repeat=0.0)

    def _starving(self) -> None:
        """Free slots, nothing to start, a 'want' out: from now on it waits for work."""
        if (self.starved_since is None and self.want_out and not self.waiting
                and self.runner.free_slots() > 0):
            self.starved_since = time.monotonic()

    def _on_flush_timer(self, *_args: Any) -> None:
        self.flush_armed = False
        self._flush()

    def _flush(self) -> None:
        """The results go: riding on a 'want' when none is out, else in a 'done' (one in
        flight: the next batch gathers behind it)."""
        if self.flush_armed:
            self.flush_armed = False
            self.flush_timer.stop()
        if not self.results or self.finished:
            return
        if not self.want_out and self.stop_reason is None:
            self._ask()
        elif not self.done_out:
            batch, self.results = self.results, []
            self.done_out = True
            self._rpc(m.DONE, {"worker": self.index, "results": batch}).then(self._on_ack)

    def _on_ack(self, fut: Any) -> None:
        self.done_out = False
        if self._answered(fut):
            self._report()

    # -- requests from the coordinator ----------------------------------------------------
    def _on_signal(self, doc: dict[str, Any]) -> dict[str, Any]:
        signum, reason = m.check_signal(doc)
        self.stop_reason = self.stop_reason or reason
        self.runner.signal_all(signum, reason)
        self._drop_waiting(self.stop_reason)
        return {"running": self.runner.running()}

    def _on_hold(self, doc: dict[str, Any]) -> dict[str, Any]:
        self.hold_reason = self.hold_reason or m.check_hold(doc)
        self._drop_waiting(self.hold_reason)
        return {"running": self.runner.running()}

    def _on_give(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Give back what waits here, the last given first: a worker with free slots takes
        it."""
        count = m.check_give(doc)
        given: list[int] = []
        while self.waiting and len(given) < count:
            key, _ = self.waiting.pop()
            self.guard.returned(key)
            given.append(key)
        self.guard.flush()
        return {"keys": given}

    def _drop_waiting(self, why: str) -> None:
        """What waits here never starts: it goes back as not started."""
        while self.waiting:
            self._not_started(*self.waiting.popleft(), why)

    def _on_ping(self, _doc: dict[str, Any]) -> dict[str, Any]:
        return {"running": self.runner.running()}

    def _on_stop(self, _doc: dict[str, Any]) -> dict[str, Any]:
        self._finish()
        return {}

    def _on_own_signal(self, *_args: Any) -> None:
        self._finish()  # Flux cancelled the pool: its tasks go with it

    def _check_guard(self) -> None:
        if not self.guard_lost and not self.guard.alive():
            self.guard_lost = True
            logger.error("error: pool worker %d on rank %d: its guard is gone: it kills its "
                         "tasks and stops", self.index, self.rank)
            self._finish()

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
        try:
            self.h.reactor_run()
        except OSError as err:  # the broker is gone
            logger.error("error: pool worker %d: lost its broker: %s", self.index,
                         err.strerror or err)
        for w in self.watchers:
            w.stop()
        self._check_guard()
        running = list(self.running.values())
        self.runner.close()  # KILL and reap what still runs, and what it left behind
        self.running.clear()
        if self.guard_lost:
            self._say_gone(running)
        self.guard.close(clean=not self.guard_lost)
        try:
            os.rmdir(self.tmpdir)  # the attempts' files went with them
        except OSError:
            import shutil

            shutil.rmtree(self.tmpdir, ignore_errors=True)
        return 0

    def _say_gone(self, running: list[tuple[int, Attempt]]) -> None:
        """Without its guard the worker has killed its own tasks: tell the coordinator,
        which may then retry them."""
        from fluxlite.execute import supervisor

        end = time.time()
        left = sum(1 for p in supervisor.descendants(os.getpid()) if supervisor.alive(p))
        doc = {"worker": self.index, "by": "worker", "why": "its guard is gone",
               "killed": [{"key": key, "pid": a.pid, "start": a.start, "end": end}
                          for key, a in running], "left": left,
               "queued": [key for key, _ in self.waiting]}
        try:
            self._rpc(m.GONE, doc).wait_for(10.0).get()
        except (OSError, TimeoutError) as err:
            logger.warning("pool worker %d: could not tell the coordinator: %s", self.index,
                           getattr(err, "strerror", None) or err)


def run_worker(service: str, coord_rank: int, stdio_bytes: int, kvs_ns: str,
               guard: GuardLink) -> int:
    """The worker's process, below its guard: its exit code."""
    try:
        worker = Worker(service, coord_rank, stdio_bytes, kvs_ns, guard)
    except OSError as err:
        sys.stderr.write(f"error: pool worker on {os.uname().nodename}: cannot reach the "
                         f"coordinator: {err.strerror or err}\n")
        guard.close(clean=True)
        return 1
    return worker.run()


def main(argv: list[str] | None = None) -> int:
    """A pool worker's process: SERVICE COORDINATOR_RANK STDIO_BYTES KVS_NAMESPACE (its
    guard, which forks the worker itself: see :mod:`fluxlite.cluster.pool.guard`)."""
    args = sys.argv[1:] if argv is None else argv
    # no logging set up: a warning, should there be one, is logging's last resort's (the
    # message alone, on stderr, from WARNING up), and logging is imported only then
    if len(args) != 4:
        sys.stderr.write("usage: python -m fluxlite.cluster.pool.worker SERVICE RANK "
                         "STDIO_BYTES KVS_NAMESPACE\n")
        return 2
    try:
        rank, stdio = int(args[1]), int(args[2])
    except ValueError:
        sys.stderr.write("error: pool worker: RANK and STDIO_BYTES must be integers\n")
        return 2
    from fluxlite.cluster.pool import guard

    def below_the_guard(link: GuardLink) -> int:
        return run_worker(args[0], rank, stdio, args[3], link)

    return guard.main(args[0], rank, below_the_guard)


def start() -> None:
    """The worker's process, from its start to its exit (``python -m`` or :data:`BOOT`)."""
    # the guard's end: its worker reaped, nothing left below it; no teardown of the
    # interpreter to wait for before the job shell sees it exit
    exit_now(main())


# How the coordinator starts a worker with its own interpreter: without site processing
# (an environment's .pth files and import finders cost a process 10-20 ms of CPU, and the
# pool pays it on every node), on the coordinator's import path, given after "--path";
# the module's name stays in the command line for whoever reads it.
# The cyclic collector stays paused while the worker's modules are imported (as
# fluxlite/__main__.py does for a command): the guard freezes what they made and starts it
# again before it forks the worker.
BOOT = ("import gc, sys; gc.disable(); a = sys.argv; i = a.index('--path'); "
        "sys.path[:] = a[i + 1:]; del a[i:], a[1]; "
        "from fluxlite.cluster.pool.worker import start; start()")
NAME = "fluxlite.cluster.pool.worker"


def command(python: str | None, args: list[str]) -> list[str]:
    """The command line of a worker given ``args``: with ``python`` (another interpreter,
    its own site and path) as ``python -m``; else with this one, as :data:`BOOT`."""
    if python:
        return [python, "-m", NAME, *args]
    import fluxlite

    root = os.path.dirname(os.path.dirname(os.path.abspath(fluxlite.__file__)))
    # sys.path[0] is this process's script directory or working directory, unless -P
    own = sys.path if sys.flags.safe_path else sys.path[1:]
    path = [root, *(p for p in own if p and p != root)]
    return [sys.executable, "-S", "-P", "-c", BOOT, NAME, *args, "--path", *path]


if __name__ == "__main__":
    start()
