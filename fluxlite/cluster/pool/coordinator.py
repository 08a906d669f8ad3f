"""The pool's coordinator: an executor of the cluster's scheduler whose slots are workers,
one per node of the Flux instance (or ``--workers-per-node`` per node), started as one
Flux job and spoken to over Flux's own messages (see ``messages``).

- Start and end: the job is submitted before the ``flux`` package is imported (``launch``);
  the coordinator takes over the launch's connection, where the pool's service is
  registered already, and follows the job by its id. At the end, ``finish`` tells the
  workers to stop while the cluster writes its records, and ``close`` waits for the job.
- Accounting is the coordinator's: it knows each worker's slots, memory and GPUs and what
  it gave it, so ``fits`` and ``start`` never ask the network; a task is given to the
  worker with the most free room (spreading over the nodes).
- A worker's queue: beyond its slots, a worker is given up to ``prefetch`` more cores of
  tasks, which wait on the worker, in the order given, until its own accounting (the
  local executor's: cores, memory, GPUs) has room to start them; so a worker never waits
  on a round trip to start its next task, and a batch of results and the next tasks
  travel in one message. GPUs and memory are never given beyond the worker's own: only
  cores are queued for. The queue holds about ``LEAD`` seconds of work (from the mean
  run time of the tasks so far, at most ``PREFETCH_PER_SLOT`` a slot; none before any
  task ended, none for tasks longer than ``LEAD`` a slot): a task ready later, of a
  higher priority, waits at most that long behind it, and a lost worker's queue runs
  elsewhere (its tasks never started: they are queued again, no try spent). A task goes
  to free slots first (the most free), then to the queue with the most room. Should the
  tasks turn out longer than that mean said (no result from a worker for ``GIVE_AFTER``
  while it holds more than its slots), a worker with free slots and nothing to start has
  the queued tasks given back and run there: nothing waits behind a long task while a
  slot is free elsewhere.
- Flow control: tasks go out only in answer to a worker's ``want``, batched (all that was
  assigned to it since).
- The reactor of the Flux handle runs inside ``poll(timeout)``: a timer ends it, and so
  does a result (or a descriptor the tiered executor watches).
- A worker that is gone (its service answers a ping with an error, or no answer within
  ``LOST_AFTER``) is given up on: what it reports later is dropped. Its attempts are failed
  (once each, for the scheduler to retry) only when they are known to be dead: its guard
  killed every process below it (asked to, or on its own when the worker died), or the
  worker did when it lost its guard, or its node or the pool's job is gone. Until then they
  count as running; after ``CONFIRM_WAIT`` without that word they are stopped, not retried:
  a task never runs twice at once.
- Every request is sealed with the pool's secret and checked, field by field (see
  ``messages``); one that is not is logged in one line and dropped. A result is taken only
  from the worker its attempt was given to.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import logging
import operator
import os
import signal
import time
from dataclasses import dataclass, field

from fluxlite.cluster.executors import Executor, TaskFiles
from fluxlite.cluster.formats import Task
from fluxlite.cluster.attempt import Attempt
from fluxlite.execute.base import ExitStatus
from fluxlite.flux.jobs import FluxJobs, Job
from fluxlite.cluster.pool import messages as m
from fluxlite.cluster.pool.launch import Launch, PoolStartError

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)

PING_INTERVAL = 1.0  # seconds of silence after which a worker is asked if it lives
LOST_AFTER = 10.0  # a worker that answers nothing for this long is lost
CONFIRM_WAIT = 30.0  # seconds to wait for the word that a lost worker's tasks are dead
LEAD = 0.1  # seconds of work a worker's queue holds beyond its slots
PREFETCH_PER_SLOT = 16  # cores of queue a slot at most
GIVE_AFTER = 0.3  # seconds without a result from a worker with a queue: it gives back


@dataclass(slots=True, eq=False)
class Worker:
    """A pool worker as the coordinator accounts for it."""

    index: int
    rank: int
    host: str = ""
    pid: int = 0
    slots: int = 1
    gpus: int = 0
    memory_mb: int = 0
    prefetch: int = 0  # cores of queue beyond its slots
    used_cores: int = 0  # what it was given and has not reported
    used_gpus: int = 0
    used_mem: int = 0
    want: Any = None  # the held 'want' request
    outbox: list[dict[str, Any]] = field(default_factory=list)
    inflight: dict[int, Attempt] = field(default_factory=dict)
    ready: bool = False
    lost: bool = False
    last_seen: float = 0.0
    ping_out: bool = False
    done: int = 0
    guard: int = 0  # its guard's pid
    lost_why: str = ""
    lost_at: float = 0.0  # monotonic
    starved: float = 0.0  # seconds it waited for work with free slots, as it says
    giving: bool = False  # a 'give' in flight
    last_result: float = 0.0  # monotonic: when results of its last came in
    last_given: float = 0.0  # monotonic: when tasks last went to it
    order: int = 0  # its place in the order of the hellos
    stamp: int = 0  # its entry in the choice (:class:`Choice`) that is current

    @property
    def name(self) -> str:
        """w<index>, as records name the worker."""
        return f"w{self.index}"

    @property
    def room(self) -> int:
        """Cores it may still be given: its free slots and the room left in its queue."""
        return self.slots + self.prefetch - self.used_cores

    @property
    def free(self) -> int:
        """Its slots not covered by what it was given (negative: tasks wait there)."""
        return self.slots - self.used_cores

    def fits(self, t: Task) -> bool:
        """Whether the task may be given to the worker now (to start, or to wait there: never
        a task it could not start when its slots are free)."""
        return (t.cores <= min(self.room, self.slots) and t.gpus <= self.gpus - self.used_gpus
                and (self.memory_mb == 0 or t.memory_mb <= self.memory_mb - self.used_mem))

    def take(self, t: Task, sign: int = 1) -> None:
        """Account a task given to it (``sign`` -1: reported, or taken back)."""
        self.used_cores += sign * t.cores
        self.used_gpus += sign * t.gpus
        self.used_mem += sign * t.memory_mb

    def can_ever(self, t: Task) -> bool:
        """Whether the task fits in the worker at all."""
        return (t.cores <= self.slots and t.gpus <= self.gpus
                and (self.memory_mb == 0 or t.memory_mb <= self.memory_mb))


def choice_key(w: Worker) -> tuple[int, int, bool, int]:
    """A worker's place in the choice, the lowest first: the most free slots, then the
    most room, then one whose 'want' is held, then the first to say hello."""
    return -max(w.free, 0), -w.room, w.want is None, w.order


class Choice:
    """The live workers as the choice of a worker ranks them (:func:`choice_key`). A heap whose
    entries a change to a worker makes stale (:meth:`touch` pushes the current one), rebuilt
    when the stale ones outnumber the live workers three to one: the best worker is its
    top, found in O(log W) a change instead of a look at every worker a task."""

    def __init__(self) -> None:
        self.heap: list[tuple[int, int, bool, int, int, Worker]] = []
        self.live: dict[int, Worker] = {}  # by index, in the order of the hellos
        self.hellos = 0

    def add(self, w: Worker) -> None:
        """A worker that said hello."""
        w.order = self.hellos
        self.hellos += 1
        self.live[w.index] = w
        self.touch(w)

    def drop(self, w: Worker) -> None:
        """A worker given up on: never chosen again."""
        self.live.pop(w.index, None)
        w.stamp += 1

    def touch(self, w: Worker) -> None:
        """A worker's free slots, room or held 'want' changed: its entry now."""
        if w.index not in self.live:
            return
        w.stamp += 1
        heapq.heappush(self.heap, (*choice_key(w), w.stamp, w))
        if len(self.heap) > 4 * len(self.live) + 64:
            self.heap = [(*choice_key(v), v.stamp, v) for v in self.live.values()]
            heapq.heapify(self.heap)

    def top(self) -> Worker | None:
        """The best-ranked live worker (None when none is left)."""
        heap = self.heap
        while heap:
            w = heap[0][5]
            if heap[0][4] == w.stamp:  # a lost worker's entries are all stale (drop)
                return w
            heapq.heappop(heap)
        return None


class PoolExecutor(Executor):
    """The cluster's executor of pool workers (module docstring)."""

    name = "pool"

    def __init__(self, files: TaskFiles, uri: str | None = None, workers_per_node: int = 1,
                 env: dict[str, str] | None = None, startup_timeout: float = 120.0,
                 flux_context: Any = None, progress_interval: float = 10.0,
                 launch: Launch | None = None) -> None:
        """The pool up: ``launch``'s job (then ``uri``, ``workers_per_node`` and ``env`` are
        its), or one launched here."""
        # the pool's job is on its way (submitted over the C API, the flux package not yet
        # imported: see launch.py) before anything else is done here
        if launch is None:
            launch = Launch(uri, workers_per_node, files.stdio_bytes, env)
        self.launch = launch
        self._born = launch.born
        self.files = files
        self.uri = launch.uri
        try:
            self.h = launch.adopt()
        except BaseException:
            launch.close()
            raise
        self.job: Job | None = None
        try:
            import flux.job  # type: ignore[import-not-found]

            self.flux = flux
            self.jobs = FluxJobs(self.uri, self.h)  # the pool's job, in this handle's reactor
            self.rank = launch.rank
            self.wpn = launch.wpn
            self.ranks = launch.ranks
            self.nnodes = launch.nnodes
            self.share = launch.share
            self.cores = max(c for c, _ in self.share.values())
            self.gpus = max(g for _, g in self.share.values())
            self.where = "a pool worker"
            self.ctx = flux_context
            self.progress_interval = progress_interval
            self.service = launch.service
            self.seal = m.Seal(launch.secret)
            self.kvs_ns = launch.kvs_ns
            self.n_workers = self.nnodes * self.wpn
            self._setup()
            self.startup["submit"] = round(launch.submitted_at - self._born, 4)
            self._register()
            self._follow()
            self._step("submitted")
            self.broker_rank = self._broker_uuids()
            self._wait_started(startup_timeout)
            self._step("up")
        except BaseException:
            # a signal or an error during the startup: no worker is left behind
            if self.job is None:
                launch.cancel()
            else:
                self._cancel_job()
            raise

    def _setup(self) -> None:
        """The coordinator's accounts, all empty."""
        self.dropped = 0  # bad requests dropped
        # the requests of the task flow the workers sent ('want', 'done') and the results
        # they brought: round trips per task = requests / results
        self.requests = {m.WANT: 0, m.DONE: 0}
        self.results_in = 0
        self.mean_run: float | None = None  # the tasks' mean run time (moving), seconds
        self.requeue: list[Attempt] = []  # never started where given: to give again
        self.requeued = 0  # of those, from lost workers
        self.given_back = 0  # and given back by a worker whose queue did not move
        self._held = False  # hold() or signal_all(): nothing more is given
        self._held_why = ""
        self.workers: dict[int, Worker] = {}
        self.choice = Choice()  # the live ones, as a task's worker is chosen
        self.outgoing: dict[int, Worker] = {}  # those with tasks given, not sent yet
        self.inflight: dict[int, Attempt] = {}  # by the key the messages name it by
        self.completed: list[Attempt] = []
        self.dispatched: dict[int, float] = {}  # key -> epoch handed to a worker
        self._seq = 0
        self._watchers: list[Any] = []
        self.job_f58 = ""
        self.job_ended: ExitStatus | None = None  # the job's, at its finish
        self.job_clean = False
        self.start_stderr: dict[str, str] = {}  # shell rank -> last stderr line at startup
        self.start_failed: dict[int, str] = {}  # worker -> why, for those that never said hello
        self.job_notes: list[str] = []
        self.job_fatal: tuple[str, str] | None = None  # a fatal exception's type and note
        self._closing = False
        self._stop_t0 = 0.0  # monotonic: when the workers were told to stop
        self._next_ping = self._next_memo = 0.0
        self._t0 = time.monotonic()
        # seconds from the pool's start (its launch) to each step of its startup
        self.startup: dict[str, float] = {}
        self.n_done = self.n_failed = 0
        self.loop_time = 0.0  # seconds spent in the reactor
        self._extra_fds: list[Any] = []
        self.broker_rank: dict[str, int] = {}

    # -- setup ---------------------------------------------------------------------------
    def _step(self, name: str) -> None:
        self.startup.setdefault(name, round(time.monotonic() - self._born, 4))

    def _register(self) -> None:
        """The handlers of the service the launch registered."""
        req = self.flux.constants.FLUX_MSGTYPE_REQUEST
        for topic, cb in ((m.HELLO, self._on_hello), (m.WANT, self._on_want),
                          (m.DONE, self._on_done), (m.PING, self._on_ping),
                          (m.GONE, self._on_gone)):
            w = self.h.msg_watcher_create(self._opened(topic, cb), req,
                                          f"{self.service}.{topic}")
            w.start()
            self._watchers.append(w)
        self._timer = self.h.timer_watcher_create(0.2, self._on_timer)
        self._watchers.append(self._timer)

    def _broker_uuids(self) -> dict[str, int]:
        """Each broker's uuid (as a request's route shows it: 8 characters) -> its rank,
        to tell the rank a request was sent from."""
        out: dict[str, int] = {}
        futs = [(r, self.h.rpc("attr.get", {"name": "broker.uuid"}, nodeid=r))
                for r in self.ranks]
        for r, fut in futs:
            try:
                out[str(fut.get()["value"])[:8]] = r
            except (OSError, KeyError, TypeError) as err:
                logger.debug("broker.uuid of rank %d: %s", r, err)
        return out

    def _sent_from(self, msg: Any) -> int | None:
        """The rank of the broker a request came in through (its first broker hop)."""
        for hop in m.route(msg):
            if hop in self.broker_rank:
                return self.broker_rank[hop]
        return None

    def _drop_secret(self) -> None:
        try:
            self.launch.drop_secret()
        except OSError as err:
            logger.warning("cannot remove the pool's secret from the KVS: %s",
                           err.strerror or err)

    def _follow(self) -> None:
        """The job's id, once Flux accepted it, and its eventlogs followed."""
        self.job = job = self.jobs.by_id(self.launch.wait_submitted())
        self.job_f58 = job.f58 or ""
        logger.info("pool job %s: %d worker(s) on %d node(s)", self.job_f58,
                    self.n_workers, self.nnodes)
        # the job shells say when a task (a worker) exits, at once, with its status
        self._events, self._exec_events, self._output = (
            self.jobs.watch(job, log, cb)
            for log, cb in (("eventlog", self._on_job_event),
                            ("guest.exec.eventlog", self._on_exec_event),
                            ("guest.output", self._on_output)))

    def _on_exec_event(self, ev: Any) -> None:
        c = _context(ev, "shell.task-exit")
        if c is None:
            return
        idx = int(c.get("rank", 0)) * self.wpn + int(c.get("localid", 0))
        # the guard (the process Flux started) exited: after the worker, or killed
        status = ExitStatus.from_wait(int(c.get("wait_status", 0)))
        w = self.workers.get(idx)
        if w is None:
            self.start_failed.setdefault(idx, status.describe("it"))
            self.h.reactor_stop()
        elif not self._closing:
            self._lose(w, status.describe("its process"))

    def _on_job_event(self, ev: Any) -> None:
        if ev is None:
            return
        if ev.name == "exception":
            note = ev.context.get("note", "") or ev.context.get("type", "")
            if note:
                self.job_notes.append(str(note))
            if ev.context.get("severity", 0) == 0 and self.job_fatal is None:
                # the job is over (refused, cancelled...): a startup waits no longer
                self.job_fatal = (str(ev.context.get("type") or "?"), str(note))
                self.h.reactor_stop()
        elif ev.name in ("alloc", "start"):
            self._step(f"job_{ev.name}")
        elif ev.name == "clean":
            self.job_clean = True
            self.h.reactor_stop()
        elif ev.name == "finish":
            self.job_ended = ExitStatus.from_wait(int(ev.context.get("status", 0)))
            if not self._closing:
                for w in self.workers.values():
                    why = f"the pool job {self.job_f58} ended ({self.job_ended.describe()})"
                    self._lose(w, why)
                    self._confirm(w, why, None, "its processes ended with the pool's job")
            self.h.reactor_stop()

    def _wait_started(self, timeout: float) -> None:
        n = self.nnodes * self.wpn
        deadline = time.monotonic() + timeout
        while sum(1 for w in self.workers.values() if w.ready) < n:
            if self.job_fatal is not None and not self.start_failed:
                kind, note = self.job_fatal
                self._cancel_job()
                raise PoolStartError(f"pool job {self.job_f58} ({n} worker(s) on "
                                     f"{self.nnodes} node(s)) did not start: "
                                     f"{_one_line(note) or 'no reason given'} "
                                     f"(Flux exception '{_one_line(kind)}')")
            if (self.start_failed or self.job_ended is not None
                    or time.monotonic() >= deadline):
                missing = [i for i in range(n) if i not in self.workers] or [0]
                first = min(self.start_failed) if self.start_failed else missing[0]
                r = self.ranks[min(first // self.wpn, len(self.ranks) - 1)]
                ended = self.job_ended
                why = self.start_failed.get(first) or "; ".join(dict.fromkeys(
                    self.job_notes)) or (ended.describe("it") if ended is not None else
                                         f"no hello within {timeout:.0f} s")
                self._cancel_job()
                said = self.start_stderr.get(str(first // self.wpn)) or self._stderr_of(
                    first // self.wpn)
                raise PoolStartError(f"pool worker {first} on rank {r} did not start: {why}"
                                     + (f": {said}" if said else ""))
            self._run_reactor(0.2)
        self._drop_secret()  # every worker has it: no task will find it
        self._output.stop()  # only the startup's output is of interest
        self._tolerate_lost_nodes()
        logger.info("pool up: %d worker(s), %s slots", n,
                    "+".join(str(w.slots) for w in self.workers.values()))

    def _stderr_of(self, shell_rank: int) -> str:
        """The last line a node's worker wrote to stderr, from the output of the job once
        it has ended (the live watch may not have seen it)."""
        last = ""
        try:
            for ev in self.jobs.events(self.job, "guest.output"):
                c = ev.context
                if (ev.name == "data" and c.get("stream") == "stderr" and c.get("data")
                        and str(c.get("rank")) == str(shell_rank)):
                    last = _last_line(c["data"]) or last
        except OSError as err:
            logger.debug("pool job %s: no output: %s", self.job_f58, err)
        return last

    def _on_output(self, ev: Any) -> None:
        """What the workers write to stderr while the pool starts: the last line of each
        node's, for the error that says why a worker did not start."""
        c = _context(ev, "data")
        if c is None:
            return
        if c.get("stream") == "stderr" and _last_line(c.get("data")):
            self.start_stderr[str(c.get("rank"))] = _last_line(c["data"])

    def _tolerate_lost_nodes(self) -> None:
        """A node lost is a worker lost, not the pool: only the loss of the job's first
        shell (its leader) ends the job, as Flux does for a sub-instance."""
        try:
            self.jobs.critical_ranks(self.job, "0")
        except OSError as err:
            logger.debug("pool job %s: every node stays critical: %s", self.job_f58, err)

    # -- message handlers -----------------------------------------------------------------
    def _opened(self, topic: str, cb: Any) -> Any:
        """A request handler that gets the request's checked JSON, or never sees it: a
        request not sealed with the pool's secret, not sent by the instance's owner, or
        malformed, is logged in one line and answered with an error."""
        full = f"{self.service}.{topic}"

        def handler(h: Any, _t: Any, msg: Any, _arg: Any) -> None:
            try:
                if msg.userid != os.getuid():
                    raise m.BadMessage(f"sent by user id {msg.userid}")
                doc = self.seal.open(full, m.payload(msg))
                self._check_rank(msg, doc)
                cb(h, msg, doc)
            except m.MALFORMED as err:  # should a check miss, the request is dropped
                why = m.as_bad(err)
                self.dropped += 1
                logger.warning("pool: dropped a bad %s request: %s", topic, why)
                m.refuse(h, msg, why)

        return handler

    def _check_rank(self, msg: Any, doc: dict[str, Any]) -> None:
        """A worker's request comes from the rank that worker was started on, as Flux
        routed it (when the brokers' uuids are known)."""
        idx = m.worker_of(doc, self.n_workers)
        expect = self.ranks[idx // self.wpn]
        sent = self._sent_from(msg)
        if self.broker_rank and sent != expect:
            raise m.BadMessage(f"worker w{idx} runs on rank {expect}: the request came "
                               f"from rank {sent if sent is not None else '?'}")

    def _on_ping(self, h: Any, msg: Any, doc: dict[str, Any]) -> None:
        m.worker_of(doc, self.n_workers)
        h.respond(msg, b"{}")

    def _on_hello(self, h: Any, msg: Any, doc: dict[str, Any]) -> None:
        m.check_hello(doc, self.n_workers)
        idx, rank = doc["worker"], doc["rank"]
        if idx in self.workers:
            raise m.BadMessage(f"worker w{idx} said hello again")
        expect = self.ranks[idx // self.wpn]
        if rank != expect:
            raise m.BadMessage(f"worker w{idx} says it is on rank {rank}, not {expect}")
        cores, gpus = self.share.get(rank, (1, 0))
        w = Worker(idx, rank, host=doc["host"], pid=doc["pid"], guard=doc["guard"],
                   slots=cores, gpus=gpus, ready=True, last_seen=time.monotonic())
        mem = doc["memory_mb"] // self.wpn
        w.memory_mb = mem
        self.workers[idx] = w
        self.choice.add(w)
        h.respond(msg, m.dumps({"slots": cores, "gpus": gpus, "memory_mb": mem}))
        self._step("first_hello")
        if len(self.workers) == self.n_workers:
            h.reactor_stop()  # the startup waits no longer

    def _sender(self, doc: dict[str, Any]) -> Worker | None:
        """The worker a request names, when it said hello and is not given up on."""
        w = self.workers.get(m.worker_of(doc, self.n_workers))
        return None if w is None or w.lost else w

    def _on_want(self, h: Any, msg: Any, doc: dict[str, Any]) -> None:
        results = m.check_reports(doc, m.WANT_FIELDS, "want", self.n_workers)
        w = self._sender(doc)
        if w is None or self._closing:
            h.respond(msg, m.dumps({"stop": True}))
            return
        if w.want is not None:
            raise m.BadMessage(f"worker {w.name} asked for work twice at once")
        self.requests[m.WANT] += 1
        w.starved = doc.get("starved", w.starved)
        w.last_seen = time.monotonic()
        w.want = msg
        self.choice.touch(w)
        self._take_results(w, results)
        if w.outbox:
            self._send(w)

    def _on_done(self, h: Any, msg: Any, doc: dict[str, Any]) -> None:
        results = m.check_reports(doc, m.DONE_FIELDS, "done", self.n_workers)
        h.respond(msg, b"{}")
        w = self._sender(doc)
        if w is None:
            return  # a worker given up on: its attempts are its guard's to account for
        self.requests[m.DONE] += 1
        w.last_seen = time.monotonic()
        self._take_results(w, results)

    def _on_gone(self, h: Any, msg: Any, doc: dict[str, Any]) -> None:
        m.check_gone(doc, self.n_workers)
        h.respond(msg, b"{}")
        w = self.workers.get(doc["worker"])
        if w is None:
            return
        self._lose(w, doc["why"])
        self._confirm_from(w, doc)

    def _take_results(self, w: Worker, results: list[dict[str, Any]]) -> None:
        if results:
            w.last_result = time.monotonic()
        for r in results:
            a = w.inflight.pop(r["key"], None)
            if a is None:
                # not an attempt this worker runs: reported already, or another's
                logger.warning("pool: dropped a result of worker %s for attempt %d, which "
                               "it does not run", w.name, r["key"])
                self.dropped += 1
                continue
            self.inflight.pop(r["key"], None)
            self.results_in += 1
            m.apply_result(a, r)
            self._finished(w, a, r["key"])
            if a.pid:  # it ran: its run time tells how much work a queue holds
                self.mean_run = a.duration if self.mean_run is None else (
                    0.9 * self.mean_run + 0.1 * a.duration)
        self._size_queue(w)
        if self.completed:
            self.h.reactor_stop()

    def _size_queue(self, w: Worker) -> None:
        """The worker's queue: about ``LEAD`` seconds of work (the module's doc)."""
        if self.mean_run is None:
            return
        per_slot = LEAD / max(self.mean_run, 1e-4)
        w.prefetch = int(min(PREFETCH_PER_SLOT, per_slot) * w.slots)
        self.choice.touch(w)

    def _finished(self, w: Worker, a: Attempt, key: int) -> None:
        w.take(a.task, -1)
        self.choice.touch(w)
        w.done += 1
        sent = self.dispatched.pop(key, None)
        if sent is not None and a.start:
            a.queue_wait = max(0.0, a.start - sent)
        if a.ok:
            self.n_done += 1
        else:
            self.n_failed += 1
        self.completed.append(a)

    def _send(self, w: Worker) -> None:
        w.last_given = time.monotonic()
        msg, w.want = w.want, None
        self.choice.touch(w)
        self.outgoing.pop(w.index, None)
        batch, w.outbox = w.outbox, []
        try:
            self.h.respond(msg, m.dumps({"tasks": batch}))
        except OSError as err:
            self._lose(w, f"cannot reach it: {err.strerror or err}")

    def _on_timer(self, *_args: Any) -> None:
        self.h.reactor_stop()

    def _ping(self) -> None:
        now = time.monotonic()
        if now < self._next_ping:
            return
        self._next_ping = now + PING_INTERVAL
        self._unconfirmed()
        for w in self.workers.values():
            if w.lost:
                continue
            if now - w.last_seen > LOST_AFTER:
                self._lose(w, f"no answer for {LOST_AFTER:.0f} s")
                continue
            if w.ping_out or now - w.last_seen < PING_INTERVAL:
                continue  # asked already, or heard from within the interval: alive
            w.ping_out = True
            self._tell(w, m.PING, {}).then(self._on_pong, w)

    def _tell(self, w: Worker, topic: str, doc: dict[str, Any]) -> Any:
        """A sealed request to a worker's own service; its future."""
        full = f"{m.worker_service(self.service, w.index)}.{topic}"
        return self.h.rpc(full, self.seal.seal(full, doc), nodeid=w.rank)

    def _on_pong(self, fut: Any, w: Worker) -> None:
        w.ping_out = False
        try:
            fut.get_str()
        except OSError as err:
            if not self._closing:
                self._lose(w, f"its process is gone ({err.strerror or err})")
            return
        w.last_seen = time.monotonic()

    def _lose(self, w: Worker, why: str) -> None:
        """A worker is given up on: nothing more goes to it, what it reports is dropped, and
        its guard is asked to kill it and everything below it. Its attempts fail (for the
        scheduler to retry) only once they are known dead (:meth:`_confirm`)."""
        if w.lost:
            return
        w.lost = True
        self.choice.drop(w)
        w.lost_why, w.lost_at = why, time.monotonic()
        w.want = None
        n = len(w.inflight)
        logger.warning("pool worker %s on rank %d (%s) lost: %s%s", w.name, w.rank,
                       w.host or "?", why,
                       f"; {n} running task(s) fail this try once known dead" if n else "")
        # not sent yet: never started, free to run elsewhere at once
        for d in w.outbox:
            self._queue_again(w, d["key"])
        self.requeued += len(w.outbox)
        w.outbox.clear()
        self.outgoing.pop(w.index, None)
        if not self._closing:  # with tasks or not, a stopped worker would hold the job
            full = f"{m.guard_service(self.service, w.index)}.{m.KILL}"
            self.h.rpc(full, self.seal.seal(full, {"worker": w.index, "why": why}),
                       nodeid=w.rank).then(self._on_killed, w)
        if not self.live():
            logger.error("error: every pool worker was lost: the tasks left fail")
        if self.completed:
            self.h.reactor_stop()

    def _on_killed(self, fut: Any, w: Worker) -> None:
        """The guard's answer to 'kill': what it killed; or an error."""
        try:
            doc = m.check_gone(m.loads(fut.get_str()), self.n_workers)
        except m.BadMessage as err:
            logger.warning("pool: dropped a bad answer of the guard of %s: %s", w.name, err)
            return
        except OSError as err:
            if err.errno == errno.EHOSTUNREACH:  # its broker is gone: so is the node
                self._confirm(w, w.lost_why, None, f"its node (rank {w.rank}) is lost")
            elif w.inflight:  # the guard is gone too: the worker itself says what it killed
                logger.warning("pool worker %s: its guard cannot be asked (%s): waiting for "
                               "the word that its tasks ended", w.name,
                               errno.errorcode.get(err.errno or 0, "error"))
            return
        self._confirm_from(w, doc)

    def _confirm_from(self, w: Worker, doc: dict[str, Any]) -> None:
        """A guard's (or a worker's) word that the worker's processes are dead."""
        who = "its guard" if doc["by"] == "guard" else "the worker itself, without its guard,"
        left = (f"; {doc['left']} process(es) below it would not die" if doc["left"]
                else "")
        # what waited there and never started runs elsewhere, no try spent
        again = [k for k in doc.get("queued", []) if k in w.inflight]
        for key in again:
            self._queue_again(w, key)
        self.requeued += len(again)
        if again:
            logger.warning("pool worker %s: %d task(s) that waited there and never started "
                           "go to the other workers", w.name, len(again))
        self._confirm(w, doc["why"], {k["key"]: k for k in doc["killed"]},
                      f"{who} killed it and every process below it{left}")

    def _queue_again(self, w: Worker, key: int) -> None:
        """An attempt given to a lost worker that never started there: given again to
        another worker, as it is (the same try)."""
        a = w.inflight.pop(key)
        self.inflight.pop(key, None)
        self.dispatched.pop(key, None)
        w.take(a.task, -1)
        self.choice.touch(w)
        a.host, a.rank, a.worker, a.flux_id = "", None, None, None
        self.requeue.append(a)

    def _confirm(self, w: Worker, why: str, killed: dict[int, dict[str, Any]] | None,
                 how: str) -> None:
        """The lost worker's attempts are dead: each fails, saying what is known (per
        attempt when ``killed`` lists what was killed)."""
        now = time.time()
        for key, a in list(w.inflight.items()):
            k = (killed or {}).get(key)
            sent = self.dispatched.get(key, now)
            if k is not None:
                a.pid, a.start = k["pid"], k["start"] or sent
                a.duration = max(0.0, k["end"] - a.start)
                self._fail_lost(w, key, a, f"{why}; task killed (pid {k['pid']}): {how}",
                                killed=True)
                continue
            a.start, a.duration = sent, max(0.0, now - sent)
            what = how if killed is None else (
                f"task not running there (not started, or ended unreported): {how}")
            self._fail_lost(w, key, a, f"{why}; {what}")
        if self.completed:
            self.h.reactor_stop()

    def _unconfirmed(self) -> None:
        """Lost workers whose attempts nobody could say dead: stopped, not retried."""
        now = time.monotonic()
        for w in self.workers.values():
            if not (w.lost and w.inflight and now - w.lost_at > CONFIRM_WAIT):
                continue
            logger.error("error: pool worker %s on rank %d: nothing says its %d task(s) "
                         "ended: not retried", w.name, w.rank, len(w.inflight))
            now = time.time()
            for key, a in list(w.inflight.items()):
                # known: handed over then, unaccounted for since (its pid never came back)
                a.start = self.dispatched.get(key, now)
                a.duration = max(0.0, now - a.start)
                a.stopped = f"pool worker {w.name} lost; the task may still run there"
                self._fail_lost(w, key, a,
                                f"{w.lost_why}; nothing says the task ended: not retried")

    def _fail_lost(self, w: Worker, key: int, a: Attempt, what: str,
                   killed: bool = False) -> None:
        """A lost worker's attempt fails: killed by SIGKILL when that is known, else with
        no status (-1), and why in its error."""
        text = f"pool worker {w.name} on rank {w.rank} ({w.host or '?'}) was lost: {what}"
        a.status = (ExitStatus(signal.SIGKILL, None, signal.SIGKILL, False, text) if killed
                    else ExitStatus.failed_to_start(text))
        self.inflight.pop(key, None)
        w.inflight.pop(key)
        self._finished(w, a, key)

    # -- the executor interface -----------------------------------------------------------
    def live(self) -> list[Worker]:
        """The workers not lost."""
        return list(self.choice.live.values())

    def can_ever(self, t: Task) -> bool:
        """Whether some live worker could ever hold the task."""
        return any(w.can_ever(t) for w in self.choice.live.values())

    def fits(self, task: Task) -> bool:
        # no worker left: every task "fits", to fail at once in start() (its records say
        # why, the summary and the rescue file are written), not to wait for ever; what a
        # lost worker never started goes first
        return not self.choice.live or (not self.requeue and self._best(task) is not None)

    def running(self) -> int:
        return len(self.inflight) + len(self.requeue)

    def _best(self, t: Task) -> Worker | None:
        """The live worker that the task fits with the most free slots, then the most room
        (so that the work spreads evenly, and what a worker's results freed mostly goes
        back to it in the answer to the 'want' that brought them), of equals one whose
        'want' is held."""
        top = self.choice.top()
        if top is None or top.fits(t):
            return top
        if top.free <= 0 and t.cores > top.room:
            return None  # every worker's slots are covered, none has room for its cores
        # another limit than cores (GPUs, memory, slots): a look at every worker
        return min((w for w in self.choice.live.values() if w.fits(t)), key=choice_key,
                   default=None)

    def start(self, a: Attempt) -> Attempt | None:
        best = self._best(a.task)
        a.start = time.time()
        a.t0 = time.monotonic()
        if best is None:
            a.status = ExitStatus.failed_to_start(
                "every pool worker was lost" if not self.live() else
                "no pool worker has room for it")
            return a
        self._give(best, a)
        return None

    def _give(self, w: Worker, a: Attempt) -> None:
        """Hand an attempt to a worker: it goes out with the answer to its next 'want'."""
        self._seq += 1
        key = self._seq
        w.take(a.task)
        self.choice.touch(w)
        a.host, a.rank, a.worker = w.host, w.rank, w.name
        a.flux_id = self.job_f58
        w.inflight[key] = a
        self.inflight[key] = a
        self.dispatched[key] = time.time()
        w.outbox.append(m.encode_task(key, a))
        self.outgoing[w.index] = w

    def _give_again(self) -> None:
        """What lost workers never started, to the workers left, in its order; failed
        when no worker left could ever hold it."""
        keep: list[Attempt] = []
        for a in self.requeue:
            best = self._best(a.task)
            if best is not None and not keep:
                self._give(best, a)
            elif not self.can_ever(a.task):
                a.status = ExitStatus.failed_to_start(
                    "every pool worker was lost" if not self.live() else
                    "no pool worker left has room for it")
                self.n_failed += 1
                self.completed.append(a)
            else:
                keep.append(a)
        self.requeue = keep

    def _balance(self) -> None:
        """A worker with free slots and nothing to start (its 'want' held: nothing ready
        fits it) takes what waits on a worker whose queue does not move (no result for
        ``GIVE_AFTER``): that worker gives it back (``give``), and it is given again."""
        if self._held or self.requeue or self._closing:
            return
        now = time.monotonic()
        for thief in self.workers.values():
            if thief.lost or thief.want is None or thief.outbox or thief.free <= 0:
                continue
            best: tuple[Worker, int] | None = None
            for v in self.workers.values():
                if (v.lost or v.giving or v.free >= 0
                        or now - max(v.last_result, v.last_given) <= GIVE_AFTER):
                    continue
                n = _takeable(v, thief)
                if n and (best is None or n > best[1]):
                    best = (v, n)
            if best is not None:
                best[0].giving = True
                self._tell(best[0], m.GIVE, {"count": best[1]}).then(self._on_given, best[0])

    def _on_given(self, fut: Any, w: Worker) -> None:
        """What a worker gave back: given again, as it is (it never started there)."""
        w.giving = False
        try:
            got = m.check_given(m.loads(fut.get_str()))
        except m.BadMessage as err:
            logger.warning("pool: dropped a bad answer of %s to give: %s", w.name, err)
            return
        except OSError:
            return  # it is gone: its guard or its node says what became of its tasks
        if w.lost:
            return
        for key in got:
            if key not in w.inflight:
                continue
            if self._held:  # stopped meanwhile: it never starts
                a = w.inflight.pop(key)
                self.inflight.pop(key, None)
                self._not_started(a, self._held_why)
                self._finished(w, a, key)
                continue
            self._queue_again(w, key)
            self.given_back += 1
        if got:
            logger.debug("pool worker %s gave back %d task(s) that waited there", w.name,
                         len(got))
            self.h.reactor_stop()

    def add_fd(self, fd: int) -> None:
        """Another descriptor whose readiness ends a poll (the Flux-job tier's)."""
        def ready(*_args: Any) -> None:
            # what woke it is the other tier's to take; the byte is only a bell
            with contextlib.suppress(OSError):
                while os.read(fd, 4096):
                    pass
            self.h.reactor_stop()

        w = self.h.fd_watcher_create(fd, ready, events=self.flux.constants.FLUX_POLLIN)
        w.start()
        self._extra_fds.append(w)

    def poll(self, timeout: float) -> list[Attempt]:
        if self.requeue:
            self._give_again()
        # in the order of the hellos, as the choice ranks them (who answers first matters)
        for w in sorted((w for w in self.outgoing.values() if w.want is not None),
                        key=operator.attrgetter("order")):
            self._send(w)
        self._balance()
        if not self.completed:
            self._ping()
            self._run_reactor(timeout)
        else:
            self._run_reactor(0.0)
        self._memo()
        out, self.completed = self.completed, []
        return out

    def _run_reactor(self, timeout: float) -> None:
        t0 = time.monotonic()
        if timeout > 0:
            self._timer.reset(after=timeout, repeat=0.0)
            flags = 0
        else:
            self._timer.stop()
            flags = self.flux.constants.FLUX_REACTOR_NOWAIT
        # the raw reactor call: the binding's reactor_run would take SIGINT from the
        # scheduler's own handler
        reactor = self.h.get_reactor()
        with self.h.in_reactor():
            rc = self.h.flux_reactor_run(reactor, flags)
        self._timer.stop()
        type(self.h).raise_if_exception()
        self.loop_time += time.monotonic() - t0
        if rc < 0:
            logger.debug("pool reactor returned %d", rc)

    def _memo(self, force: bool = False) -> None:
        if self.ctx is None:
            return
        now = time.monotonic()
        if now < self._next_memo and not force:
            return
        self._next_memo = now + self.progress_interval
        el = now - self._t0
        rate = (self.n_done + self.n_failed) / el if el > 0 else 0.0
        self.ctx.memo({"pool": {
            "job": self.job_f58, "workers": len(self.live()), "done": self.n_done,
            "failed": self.n_failed, "running": len(self.inflight),
            "tasks_per_s": round(rate, 1)}})

    def signal_all(self, signum: int, reason: str) -> None:
        """Every worker signals its attempts (and starts none of those waiting there);
        those not sent to a worker yet never start."""
        self._held, self._held_why = True, reason
        self._unsent(reason)
        for w in self.live():
            self._tell(w, m.SIGNAL, {"signum": int(signum), "reason": reason}).then(_ignore)

    def hold(self, reason: str) -> None:
        """Start nothing more: what waits on a worker, or here, comes back not started."""
        self._held, self._held_why = True, reason
        self._unsent(reason)
        for w in self.live():
            self._tell(w, m.HOLD, {"reason": reason}).then(_ignore)

    def _unsent(self, reason: str) -> None:
        """What no worker has started, and is not sent yet, is stopped: it fails no try,
        a rerun runs it."""
        for w in self.live():
            for d in w.outbox:
                a = w.inflight.pop(d["key"])
                self.inflight.pop(d["key"], None)
                self._not_started(a, reason)
                self._finished(w, a, d["key"])
            w.outbox.clear()
        self.outgoing.clear()
        for a in self.requeue:
            self._not_started(a, reason)
            self.completed.append(a)
        self.requeue.clear()

    @staticmethod
    def _not_started(a: Attempt, reason: str) -> None:
        a.stopped = reason
        a.status = ExitStatus.failed_to_start(f"not started ({reason})")

    def info(self) -> dict[str, Any]:
        """The pool in the cluster's JSON record."""
        return {"job": self.job_f58, "service": self.service, "coordinator_rank": self.rank,
                "workers_per_node": self.wpn,
                "workers": [{"worker": w.name, "rank": w.rank, "host": w.host, "pid": w.pid,
                             "guard": w.guard, "slots": w.slots, "gpus": w.gpus, "tasks": w.done,
                             "queue": w.prefetch, "starved_seconds": round(w.starved, 3),
                             "lost": w.lost}
                            for w in self.workers.values()],
                "dropped_requests": self.dropped,
                "queued_again": self.requeued, "given_back": self.given_back,
                "messages": self.messages(),
                "reactor_seconds": round(self.loop_time, 3), "startup_seconds": self.startup}

    def messages(self) -> dict[str, Any]:
        """The task flow's requests: how many of each, the results they brought, and the
        round trips per task (requests per result)."""
        n = sum(self.requests.values())
        return {**self.requests, "results": self.results_in,
                "round_trips_per_task": round(n / self.results_in, 3) if self.results_in
                else None}

    def finish(self) -> None:
        """Tell every worker to stop (their job ends while the cluster writes its
        records); :meth:`close` waits for it."""
        if self._closing:
            return
        self._memo(force=True)  # the last figures, beside the cluster's own
        logger.debug("pool messages: %s", self.messages())
        self._stop_t0 = time.monotonic()
        self._closing = True
        self._drop_secret()
        live = self.live()
        if live and (self.inflight or self.requeue):
            self.signal_all(signal.SIGKILL, "shutdown")
        for w in live:
            if w.want is not None:
                msg, w.want = w.want, None
                with contextlib.suppress(OSError):
                    self.h.respond(msg, m.dumps({"stop": True}))
            self._tell(w, m.STOP, {}).then(_ignore)

    def close(self) -> None:
        """Stop every worker, and end the pool's job (cancelled if it does not end)."""
        self.finish()
        t0 = self._stop_t0
        deadline = time.monotonic() + 15.0
        while self.job_ended is None and time.monotonic() < deadline:
            self._run_reactor(0.2)
        if self.job_ended is None:
            logger.warning("pool job %s did not end by itself: cancelling it", self.job_f58)
            self._cancel_job()
        t1 = time.monotonic()
        self._wait_clean(15.0)
        logger.debug("pool shutdown: the job ended in %.3f s, clean in %.3f s", t1 - t0,
                     time.monotonic() - t0)
        for w in self._watchers + self._extra_fds:
            w.stop()
        for watch in (self._events, self._exec_events):
            watch.stop()
        with contextlib.suppress(OSError):
            self.h.service_unregister(self.service).get()

    def _cancel_job(self) -> None:
        self._drop_secret()
        if self.job is None:
            return
        self.jobs.cancel([self.job], "fluxlite cluster done")
        self._wait_clean(15.0)

    def _wait_clean(self, timeout: float) -> None:
        """Until every worker's job shell is gone (the job's 'clean' event)."""
        deadline = time.monotonic() + timeout
        while self.job is not None and not self.job_clean and time.monotonic() < deadline:
            self._run_reactor(0.2)


def _context(ev: Any, name: str) -> Any:
    """The context of an eventlog entry named ``name`` (None for another, or at the end)."""
    return ev.context if ev is not None and ev.name == name else None


def _takeable(v: Worker, thief: Worker) -> int:
    """How many of what waits on ``v`` (its last given, beyond its slots) ``thief`` could
    start now, the last given first."""
    cores, gpus, mem = thief.free, thief.gpus - thief.used_gpus, thief.memory_mb - thief.used_mem
    waiting = -v.free
    n = 0
    for a in reversed(v.inflight.values()):
        t = a.task
        if (waiting <= 0 or t.cores > cores or t.gpus > gpus
                or (thief.memory_mb and t.memory_mb > mem)):
            break
        cores, gpus, mem = cores - t.cores, gpus - t.gpus, mem - t.memory_mb
        waiting -= t.cores
        n += 1
    return n


def _one_line(text: str) -> str:
    """Text of Flux's as one line of at most 300 characters."""
    return " ".join(text.split())[:300]


def _last_line(data: Any) -> str:
    """The last line of output that is not blank, cut to 200 characters."""
    lines = [x.strip() for x in str(data or "").splitlines() if x.strip()]
    return lines[-1][:200] if lines else ""


def _ignore(fut: Any) -> None:
    with contextlib.suppress(OSError):  # the worker is gone: nothing of it is left to signal
        fut.get_str()
