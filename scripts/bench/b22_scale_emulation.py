"""B22: the inputs of the pool's scale model (docs/scale.md), measured, and the model checked
by emulation on many test brokers.

Each part runs in a fresh ``flux start --test-size=N`` of its own and prints its lines:

1. costs (2 brokers): clusters of B22_TASKS (2,000) and of 20 `/bin/true` tasks, a record
   each, interleaved for B22_ROUNDS (2) rounds; what one more task costs, from the
   differences: the coordinator's CPU (its rusage: the `fluxlite cluster` process), the
   workers' own CPU and their tasks' (each worker's /proc/PID/stat, sampled every
   0.2 s: utime+stime, and cutime+cstime for the tasks it reaped), and Flux's (the
   brokers' own utime+stime from /proc, rank 0 apart, with their modules' processes).
   Only the processes below this run's own brokers are looked at.
2. memory (2 brokers): B22_RSS_TASKS (20,000) `/bin/true` without --json (a rescue file);
   the coordinator's RSS sampled as the rescue file grows: its growth per task from 10 %
   of the tasks to the end.
3. emulation (B22_SIZES brokers, default 32 and 64; every broker of a test instance
   reports this machine's cores as its own, so the pool has N workers of 2 slots on 2
   real cores): the same clusters, the steady rate (the first task's start to the last
   task's end) against the model's: the CPU the instance got in that span divided by the
   CPU a task costs, predicted from part 1 and part 5; and where the coordinator's share
   lies. Then 2N tasks of `sleep B22_IDLE` (15 s), one a slot: what the workers cost the
   coordinator and the whole instance each second while nothing ends (liveness pings,
   timers), from the samples inside the span where every task runs; from two sizes, the
   coordinator's cost a worker-second. Start-up (the pool's own timings) and shutdown at
   that size, and the coordinator's start and stop a worker (its CPU for 20 tasks there
   against at 2 brokers).
4. long tasks (2 brokers): B22_SLEEP_TASKS (1,000) `sleep 0.05`, so that a result comes back
   in a message of its own more often: the coordinator's CPU per task against its round
   trips per task, with part 1's, gives its cost per round trip.
5. scan (in this process, no Flux): the coordinator's own choice of a worker for a task
   (``fits`` and ``_best``) over W idle workers of 64 slots, W = 2 ... 10,000: the part of
   its per-task cost that grows with the number of workers.
6. top (in this process, no Flux): B22_TOP_TASKS (50,000) tasks through the real
   scheduler and an executor whose attempts end at once, with the records rendered and
   without: what a task costs a coordinator that neither renders records nor sends
   messages (the top of a tree of coordinators); and the task graph's own memory.

The model (the coordinator's cap at 100, 1,000 and 10,000 nodes, the rate they demand,
the node count where one coordinator saturates) is printed from these figures at the end,
when every part ran. B22_PARTS (default all: costs,memory,emulation,long,scan,top) picks
parts. Costs are CPU seconds, which the machine's other load moves less than it moves
rates (the load is printed beside each). Skipped, saying so, without `flux` on PATH
(parts 5 and 6 still run).
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, instance_result, median  # noqa: E402

TASKS = int(os.environ.get("B22_TASKS", "2000"))
SMALL = 20
ROUNDS = int(os.environ.get("B22_ROUNDS", "2"))
RSS_TASKS = int(os.environ.get("B22_RSS_TASKS", "20000"))
SIZES = [int(x) for x in os.environ.get("B22_SIZES", "32,64").split(",") if x]
IDLE = float(os.environ.get("B22_IDLE", "15"))
SLEEP_TASKS = int(os.environ.get("B22_SLEEP_TASKS", "1000"))
PARTS = set(os.environ.get("B22_PARTS", "costs,memory,emulation,long,scan,top").split(","))
TOP_TASKS = int(os.environ.get("B22_TOP_TASKS", "50000"))
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SAMPLE = 0.2
WORKER_ARG = ".pool.worker"  # the module a worker (and its guard) runs
NODES = (100, 1000, 10000)
CORES = (64, 128)
LENGTHS = (1.0, 10.0)


def load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


# -- processes below this instance's brokers -------------------------------------------------
def _stat(pid: int) -> tuple[int, str, float, float, int] | None:
    """(ppid, comm, own CPU, reaped children's CPU, start time) of a process, CPU in
    seconds."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    head, _, rest = raw.rpartition(b")")
    comm = head.split(b"(", 1)[1].decode(errors="replace")
    f = rest.split()
    return (int(f[1]), comm, (int(f[11]) + int(f[12])) / TICK,
            (int(f[13]) + int(f[14])) / TICK, int(f[19]))


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class Tree:
    """The CPU of everything below this instance's brokers, sampled from /proc: each
    process's kind (broker, shell, guard, worker, coordinator, other), its own CPU and its
    reaped children's, as last seen; and a time series of the whole instance's CPU."""

    def __init__(self, brokers: list[int]) -> None:
        self.brokers = brokers
        self.rank0 = brokers[0]
        self.kind: dict[int, str] = {}
        self.born: dict[int, int] = {}  # pid -> its start time (a pid used again is new)
        self.seen: set[int] = set()  # the pids seen since mark()
        self.alive: set[int] = set()  # those of the last scan
        # pid -> (own CPU, its reaped children's, its start time)
        self.last: dict[int, tuple[float, float, int]] = {}
        self.series: list[tuple[float, float, float]] = []  # (epoch, instance CPU, coord)
        self.coord_pid = 0
        self.coord_cpu = 0.0  # the coordinator's CPU as last seen (kept once it has ended)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def scan(self) -> None:
        now = time.time()
        stats: dict[int, tuple[int, str, float, float, int]] = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                s = _stat(int(name))
                if s is not None:
                    stats[int(name)] = s
        kids: dict[int, list[int]] = collections.defaultdict(list)
        for pid, s in stats.items():
            kids[s[0]].append(pid)
        me = os.getpid()
        total = 0.0
        coord: float | None = None
        alive = set()
        with self.lock:
            todo = [p for p in self.brokers if p in stats]
            while todo:
                pid = todo.pop()
                if pid == me:  # this script: only its child, the coordinator, counts
                    todo.extend(kids[pid])
                    continue
                s = stats[pid]
                if self.born.get(pid) != s[4]:
                    self.born[pid] = s[4]
                    self.kind[pid] = self._classify(pid, s)
                    self.last.pop(pid, None)
                kind = self.kind[pid]
                if kind == "task":  # counted in its worker's reaped children
                    continue
                self.last[pid] = (s[2], s[3], s[4])
                alive.add(pid)
                total += s[2] + s[3]
                if kind == "coordinator":
                    coord = s[2] + s[3]
                todo.extend(kids[pid])
            if coord is None:  # not started yet, or ended (reaped by this script)
                coord = self.coord_cpu
                total += coord
            self.coord_cpu = coord
            self.series.append((now, total, coord))
            self.alive = alive
            self.seen |= alive

    def _classify(self, pid: int, s: tuple[int, str, float, float, int]) -> str:
        if pid in self.brokers:
            return "broker"
        parent = self.kind.get(s[0], "")
        if parent == "worker":
            return "task"
        if s[1] == "flux-shell":
            return "shell"
        if pid == self.coord_pid:
            return "coordinator"
        if WORKER_ARG in _cmdline(pid):
            return "worker" if parent == "guard" else "guard"
        return "other"

    def snapshot(self, mark: bool = False) -> dict[int, tuple[float, float, int]]:
        """Each process's (own CPU, reaped children's, start time) as last seen; ``mark``:
        from now on, :attr:`seen` holds only the processes alive now and seen after."""
        self.scan()
        with self.lock:
            if mark:
                self.seen = set(self.alive)
            return dict(self.last)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE):
            self.scan()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def cpu_at(self, t: float, col: int = 1) -> float:
        """The instance's CPU (col 1) or the coordinator's (col 2) at epoch t, interpolated."""
        s = self.series
        for a, b in itertools.pairwise(s):
            if a[0] <= t <= b[0]:
                f = (t - a[0]) / (b[0] - a[0]) if b[0] > a[0] else 0.0
                return a[col] + f * (b[col] - a[col])
        return s[-1][col] if s and t > s[-1][0] else (s[0][col] if s else 0.0)


def _brokers() -> list[int]:
    """This test instance's brokers, rank 0 first: the children of `flux start` named
    flux-broker (this script is rank 0's initial program)."""
    rank0 = os.getppid()
    start = _stat(rank0)
    assert start is not None and start[1].startswith("flux-broker"), start
    out = [rank0]
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != rank0:
            s = _stat(int(name))
            if s is not None and s[0] == start[0] and s[1].startswith("flux-broker"):
                out.append(int(name))
    return out


def _dag(tmp: str, n: int, cmd: str = "/bin/true") -> str:
    path = os.path.join(tmp, f"b22-{n}-{cmd.replace('/', '_').replace(' ', '_')}.dag")
    if not os.path.exists(path):
        with open(path, "w") as fh:
            fh.writelines(f"TASK t{i} {cmd}\n" for i in range(n))
    return path


def cluster(tmp: str, tree: Tree, n: int, cmd: str = "/bin/true") -> dict[str, Any]:
    """One pool cluster of n tasks under the sampler: its costs, by kind of process."""
    dag = _dag(tmp, n, cmd)
    before = tree.snapshot(mark=True)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.Popen([PYTHON, "-m", "fluxlite", "cluster", "-q", dag, "--executor",
                             "pool", "-o", dag + ".out", "--json", dag + ".json",
                             "--no-rescue", "--tmpdir", tmp], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "TMPDIR": tmp})
    tree.coord_pid, tree.coord_cpu = proc.pid, 0.0
    tree.start()
    _, err = proc.communicate()
    wall = time.time() - t0
    tree.stop()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = tree.snapshot()
    if proc.returncode != 0:
        raise SystemExit(f"B22: the cluster failed ({proc.returncode}): "
                         + err.decode(errors="replace")[-2000:])
    with open(dag + ".json", encoding="utf-8") as fh:
        rec = json.load(fh)
    atts = [a for t in rec["tasks"] for a in t["attempts"]]
    assert len(atts) == n and rec["summary"]["succeeded"] == n, rec["summary"]
    first = min(a["start_epoch"] for a in atts)
    last = max(a["start_epoch"] + a["duration"] for a in atts)
    by: dict[str, float] = collections.Counter()
    for pid, (own, reaped, born) in after.items():
        kind = tree.kind.get(pid, "other")
        if pid not in tree.seen or kind == "coordinator":
            continue  # not of this run; the coordinator's CPU is its rusage
        if pid in before and before[pid][2] == born:  # alive before: what it used since
            own -= before[pid][0]
            reaped -= before[pid][1]
        by[kind] += own
        if kind == "broker":
            by["reaped"] += reaped  # what ended below it: shells, guards, workers, tasks
            if pid == tree.rank0:
                by["rank0"] += own
        if kind == "worker":
            by["task"] += reaped
    by["coordinator"] = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    pool = rec["pool"]
    return {"n": n, "wall": wall, "first": first, "last": last, "end": t0 + wall,
            "steady": n / max(1e-9, last - first), "cpu": dict(by),
            "task_rusage": sum(a["rusage"].get("utime", 0) + a["rusage"].get("stime", 0)
                               for a in atts),
            "rt": pool["messages"]["round_trips_per_task"],
            "startup": pool.get("startup_seconds", {}), "shutdown": t0 + wall - last,
            "workers": len(pool["workers"]),
            "slots": sum(w["slots"] for w in pool["workers"]),
            "span_cores": (tree.cpu_at(last) - tree.cpu_at(first)) / max(1e-9, last - first),
            "span_coord": (tree.cpu_at(last, 2) - tree.cpu_at(first, 2))
            / max(1e-9, last - first),
            "load": os.getloadavg()[0]}


KINDS = ("coordinator", "worker", "task", "broker", "rank0", "other", "shell", "guard",
         "reaped")


def per_task(big: list[dict[str, Any]], small: list[dict[str, Any]]) -> dict[str, float]:
    """CPU seconds one more task costs, by kind: the median of big minus small over the
    tasks between them."""
    d = big[0]["n"] - small[0]["n"]
    return {k: (median([r["cpu"].get(k, 0.0) for r in big])
                - median([r["cpu"].get(k, 0.0) for r in small])) / d for k in KINDS}


def total(c: dict[str, float]) -> float:
    """The CPU a task costs the instance, as the model counts it (a worker's guard hears of
    each task it starts and reaps; the job shells cost a node, not a task: their share is
    printed apart, as a check)."""
    return sum(c[k] for k in ("coordinator", "worker", "guard", "task", "broker", "other"))


def costs_line(c: dict[str, float]) -> str:
    us = {k: v * 1e6 for k, v in c.items()}
    return (f"coordinator {us['coordinator']:.0f} us, workers {us['worker']:.0f}, tasks "
            f"{us['task']:.0f}, Flux {us['broker'] + us['other']:.0f} (brokers "
            f"{us['broker']:.0f}, rank 0's {us['rank0']:.0f}; their modules' processes "
            f"{us['other']:.0f}), guards {us['guard']:.0f}: total {total(c) * 1e6:.0f} us "
            f"(job shells, a node's cost, {us['shell']:.0f})")


def inside(tmp: str, mode: str, size: int, out: str) -> int:
    tree = Tree(_brokers())
    assert len(tree.brokers) == size, tree.brokers
    res: dict[str, Any] = {"size": size}
    cluster(tmp, tree, SMALL)  # warm-up: the first job of an instance starts its services
    if mode in ("costs", "emulation"):
        big, small = [], []
        for _ in range(ROUNDS if mode == "costs" else 1):
            big.append(cluster(tmp, tree, TASKS))
            small.append(cluster(tmp, tree, SMALL))
        res.update(big=big, small=small, per_task=per_task(big, small))
    if mode == "emulation":
        res["idle"] = cluster(tmp, tree, 2 * size, f"sleep {IDLE:g}")
        res["idle_kinds"] = idle_kinds(tmp, tree, res["idle"])
    if mode == "long":
        big, small = [], []
        for _ in range(ROUNDS):
            big.append(cluster(tmp, tree, SLEEP_TASKS, "sleep 0.05"))
            small.append(cluster(tmp, tree, SMALL))
        res.update(big=big, small=small, per_task=per_task(big, small))
    if mode == "memory":
        res["rss"] = memory(tmp)
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(res, fh)
    return 0


def idle_kinds(tmp: str, tree: Tree, r: dict[str, Any]) -> dict[str, float]:
    """CPU seconds a second, by kind, over the span where every sleep runs (from the
    tasks' latest start to their earliest end, less 0.5 s each side): what W workers cost
    while nothing ends."""
    dag = _dag(tmp, r["n"], f"sleep {IDLE:g}")
    with open(dag + ".json", encoding="utf-8") as fh:
        atts = [a for t in json.load(fh)["tasks"] for a in t["attempts"]]
    lo = max(a["start_epoch"] for a in atts) + 0.5
    hi = min(a["start_epoch"] + a["duration"] for a in atts) - 0.5
    s = tree.series
    inside_ = [x for x in s if lo <= x[0] <= hi]
    if hi - lo < 1.0 or len(inside_) < 2:
        return {"span": max(0.0, hi - lo)}
    a, b = inside_[0], inside_[-1]
    return {"span": b[0] - a[0], "instance": (b[1] - a[1]) / (b[0] - a[0]),
            "coordinator": (b[2] - a[2]) / (b[0] - a[0])}


def memory(tmp: str) -> dict[str, float]:
    """The coordinator's RSS against the tasks done (its rescue file's lines)."""
    dag = _dag(tmp, RSS_TASKS)
    rescue = dag + ".rescue"
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen([PYTHON, "-m", "fluxlite", "cluster", "-q", dag, "--executor",
                                 "pool", "-o", dag + ".out", "--rescue", rescue, "--tmpdir",
                                 tmp], stdout=null, stderr=null,
                                env={**os.environ, "TMPDIR": tmp})
        marks: list[tuple[int, int]] = []
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/statm") as fh:
                    rss = int(fh.read().split()[1]) * PAGE
                with open(rescue, "rb") as fh:
                    done = fh.read().count(b"\n")
            except OSError:
                done = -1
            if done > 0:
                marks.append((done, rss))
            time.sleep(0.25)
    assert proc.returncode == 0, proc.returncode
    start = next((m for m in marks if m[0] >= RSS_TASKS // 10), marks[0])
    end = marks[-1]
    return {"from": start[0], "to": end[0], "rss_from": start[1], "rss_to": end[1],
            "per_task": (end[1] - start[1]) / max(1, end[0] - start[0])}


def _instance(tmp: str, mode: str, size: int) -> dict[str, Any]:
    return instance_result(__file__, tmp, mode, size)


# -- part 5: the coordinator's choice of a worker, in this process -----------------------------
def scan_cost(widths: tuple[int, ...] = (2, 64, 1000, 10000)) -> dict[int, float]:
    """Seconds the coordinator's ``fits`` and ``_best`` take for one task over W workers
    of 64 slots (the workers half full, none lost): the scheduler asks ``fits`` before it
    starts a task, and ``start`` picks the worker with ``_best``."""
    import importlib

    from fluxlite.cluster.formats import Task

    try:
        coord = importlib.import_module("fluxlite.cluster.pool.coordinator")
    except ImportError:  # where the pool lives beside the other Flux modules
        coord = importlib.import_module("fluxlite.flux.pool.coordinator")
    PoolExecutor, Worker = coord.PoolExecutor, coord.Worker  # noqa: N806

    out: dict[int, float] = {}
    task = Task(id="t")
    for w in widths:
        ex = PoolExecutor.__new__(PoolExecutor)
        ex.workers = {i: Worker(i, i, slots=64, ready=True, used_cores=32) for i in range(w)}
        ex.requeue = []
        if hasattr(coord, "Choice"):  # the workers as the coordinator ranks them
            ex.choice = coord.Choice()
            for x in ex.workers.values():
                ex.choice.add(x)
        n = max(20, 200_000 // w)
        t0 = time.perf_counter()
        for _ in range(n):
            ex.fits(task)
            ex._best(task)
        out[w] = (time.perf_counter() - t0) / n
    return out


# -- part 6: what a task costs a scheduler that neither renders records nor messages ------------
def top_cost(n: int) -> dict[str, float]:
    """CPU seconds a task costs the cluster's scheduler in this process, driving an executor
    whose attempts end the moment they start (no process, no message): with the records
    rendered as the coordinator renders them, and with no record (what the top of a tree
    of coordinators would pay, its records written below it)."""
    import io

    from fluxlite.cluster.executors import Executor
    from fluxlite.cluster.formats import parse
    from fluxlite.cluster.records import Attempt, RecordWriter
    from fluxlite.cluster.scheduler import Options, Scheduler
    from fluxlite.execute.base import ExitStatus

    class Instant(Executor):
        name = "instant"
        cores = 64

        def __init__(self) -> None:
            self.ended: list[Attempt] = []

        def fits(self, task: Any) -> bool:
            return len(self.ended) < 256

        def start(self, a: Attempt) -> Attempt | None:
            a.start, a.duration, a.pid = time.time(), 0.001, 1
            a.status, a.host, a.rank, a.worker = ExitStatus.from_wait(0), "node", 0, "w0"
            self.ended.append(a)
            return None

        def poll(self, timeout: float) -> list[Attempt]:
            out, self.ended = self.ended, []
            return out

        def running(self) -> int:
            return len(self.ended)

        def signal_all(self, signum: int, reason: str) -> None:
            """Nothing runs: nothing to signal."""

    class NoRecords(RecordWriter):
        def kickstart(self, a: Attempt) -> str:
            return ""

        def task_line(self, a: Attempt) -> str:
            return ""

    graph = "".join(f"TASK t{i} /bin/true\n" for i in range(n))
    out: dict[str, float] = {}
    rss0 = _rss()
    held = parse(graph, "top.dag")
    out["graph"] = (_rss() - rss0) / n  # the task graph itself, held from the start
    del held
    for name, writer in (("records", RecordWriter), ("bare", NoRecords)):
        g = parse(graph, "top.dag")
        sink = io.BytesIO()
        t0 = time.process_time()
        Scheduler(g, Instant(), writer(), sink, Options()).run()
        out[name] = (time.process_time() - t0) / n
    return out


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


# -- the model -------------------------------------------------------------------------------
def cap(n: int, c0: float, per_worker: float, ping: float) -> float:
    """Tasks a second one coordinator allows with n workers: (1 - ping × n) / (c0 +
    per_worker × n); 0 when the workers alone fill its core."""
    busy = ping * n
    return (1 - busy) / (c0 + per_worker * n) if busy < 1 else 0.0


def _saturates(per_node: float, c: float, per_worker: float, ping: float) -> int:
    """The fewest nodes (a worker each) whose demand, per_node tasks a second each, one
    coordinator cannot meet."""
    n = 1
    while n * per_node <= cap(n, c, per_worker, ping):
        n += 1
    return n


def model_lines(c0: float, per_worker: float, ping: float, rt_cost: float, rt0: float,
                rank0: float) -> list[str]:
    """The coordinator's cap and what 100, 1,000 and 10,000 nodes demand (docs/scale.md).

    A task costs the coordinator c0 (batched, as measured) or c1 = c0 + rt_cost × (1 -
    rt0) (a round trip a task: tasks long enough that no batch forms), plus per_worker ×
    W for its choice of a worker; W workers cost it ping × W of a core whatever the
    tasks. A node of C cores kept busy by tasks of T seconds asks C / T tasks a second."""
    c1 = c0 + max(0.0, rt_cost) * (1 - rt0)
    lines = [f"B22 model inputs: c0 {c0 * 1e6:.0f} us a task batched, c1 {c1 * 1e6:.0f} "
             f"us with a round trip a task, {per_worker * 1e9:.0f} ns a task a worker, "
             f"{ping * 1e6:.0f} us a worker-second; rank 0's broker {rank0 * 1e6:.0f} us "
             f"a task (its cap {1 / rank0 if rank0 > 0 else float('inf'):,.0f}/s)"]
    for c in CORES:
        for t in LENGTHS:
            sat = [_saturates(c / t, x, per_worker, ping) for x in (c1, c0)]
            lines.append(f"B22 model: {c} cores a node, tasks of {t:g} s: one coordinator "
                         f"saturates at {sat[0]:,} nodes (a round trip a task) to {sat[1]:,} "
                         f"(batched)")
    for n in NODES:
        lo, hi = cap(n, c1, per_worker, ping), cap(n, c0, per_worker, ping)
        asks = ", ".join(f"{c}x{t:g}s {n * c / t:,.0f}" for c in CORES for t in LENGTHS)
        lines.append(f"B22 model at {n:,} nodes (a worker each): cap {lo:,.0f} (a round "
                     f"trip a task) to {hi:,.0f} (batched) tasks/s, idle load "
                     f"{100 * ping * n:.1f} % of a core; demand (cores x task length) "
                     f"{asks} tasks/s")
    return lines


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--inside":
        return inside(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    scan: dict[int, float] = {}
    if "scan" in PARTS:
        scan = scan_cost()
        print("B22 scan (fits + _best over W workers of 64 slots, in-process): "
              + ", ".join(f"W={w:,}: {t * 1e6:.1f} us" for w, t in scan.items())
              + f"; {load()}")
    if "top" in PARTS:
        top = top_cost(TOP_TASKS)
        print(f"B22 top ({TOP_TASKS:,} tasks through the scheduler in-process, attempts that "
              f"end at once): {top['records'] * 1e6:.0f} us a task with the records rendered, "
              f"{top['bare'] * 1e6:.0f} us without: a coordinator that only schedules caps at "
              f"{1 / top['bare']:,.0f} tasks/s; the task graph itself "
              f"{top['graph']:.0f} bytes a task; {load()}")
    per_worker = ((scan[max(scan)] - scan[min(scan)]) / (max(scan) - min(scan))
                  if len(scan) > 1 else 0.0)
    if shutil.which("flux") is None:
        print("B22 skipped: flux is not on PATH")
        return 0
    c2: dict[str, float] | None = None
    small2 = 0.0
    rt2 = 0.0
    rt_cost = 0.0
    idles: list[tuple[int, float]] = []  # (workers, the coordinator's CPU a second, idle)
    with tempfile.TemporaryDirectory(prefix="fluxlite-b22-") as tmp:
        if "costs" in PARTS:
            r = _instance(tmp, "costs", 2)
            c2 = r["per_task"]
            b = r["big"]
            rt2 = median([x["rt"] for x in b])
            steady = median([x["steady"] for x in b])
            cores = median([x["span_cores"] for x in b])
            own = median([x["task_rusage"] for x in b]) / TASKS
            small2 = median([x["cpu"]["coordinator"] for x in r["small"]])
            print(f"B22 costs at 2 brokers ({TASKS} x /bin/true, a record each, less {SMALL};"
                  f" median of {ROUNDS}; {load()}): CPU a task: {costs_line(c2)}; tasks' own "
                  f"rusage in their records {own * 1e6:.0f} us; what the brokers reaped "
                  f"(shells, guards, workers, tasks) {c2['reaped'] * 1e6:.0f} us against "
                  f"{(c2['shell'] + c2['guard'] + c2['worker'] + c2['task']) * 1e6:.0f} us "
                  f"sampled; a {SMALL}-task cluster's "
                  f"coordinator CPU {small2:.2f} s")
            print(f"B22 rate at 2 brokers: steady {steady:.0f} tasks/s, whole command "
                  f"{TASKS / median([x['wall'] for x in b]):.0f}/s; round trips a task "
                  f"{rt2:.3f}; the instance got {cores:.2f} cores in the steady span -> "
                  f"{cores / total(c2):.0f} tasks/s by its CPU a task; the coordinator "
                  f"{median([x['span_coord'] for x in b]):.2f} of a core; one coordinator's "
                  f"cap 1 / {c2['coordinator'] * 1e6:.0f} us = {1 / c2['coordinator']:.0f} "
                  f"tasks/s")
        if "long" in PARTS and c2 is not None:
            r = _instance(tmp, "long", 2)
            cl = r["per_task"]
            rtl = median([x["rt"] for x in r["big"]])
            rt_cost = ((cl["coordinator"] - c2["coordinator"]) / (rtl - rt2)
                       if rtl - rt2 > 0.2 else 0.0)
            print(f"B22 long tasks at 2 brokers ({SLEEP_TASKS} x sleep 0.05, less {SMALL}; "
                  f"{load()}): round trips a task {rtl:.3f} (against {rt2:.3f}); CPU a task: "
                  f"{costs_line(cl)}; the coordinator's cost a round trip "
                  f"{rt_cost * 1e6:.0f} us")
        if "memory" in PARTS:
            r = _instance(tmp, "memory", 2)["rss"]
            print(f"B22 memory ({RSS_TASKS:,} x /bin/true, no --json, a rescue file; "
                  f"{load()}): the coordinator's RSS {r['rss_from'] / 2**20:.1f} MiB at "
                  f"{r['from']:,} tasks done, {r['rss_to'] / 2**20:.1f} MiB at {r['to']:,}: "
                  f"{r['per_task'] / 1024:.2f} KiB a task")
        for size in SIZES if "emulation" in PARTS else ():
            r = _instance(tmp, "emulation", size)
            c, b, s = r["per_task"], r["big"][0], r["small"][0]
            print(f"B22 emulation at {size} brokers ({b['workers']} workers, {b['slots']} "
                  f"slots on {os.cpu_count()} cores; {TASKS} x /bin/true less {SMALL}; "
                  f"{load()}): CPU a task: {costs_line(c)}; round trips a task "
                  f"{b['rt']:.3f}")
            if c2 is not None:
                pred = total(c2) + per_worker * (b["workers"] - 2)
                print(f"B22 emulation at {size} brokers: steady {b['steady']:.0f} tasks/s "
                      f"(whole command {TASKS / b['wall']:.0f}/s); the instance got "
                      f"{b['span_cores']:.2f} cores in that span; model: those cores / "
                      f"{pred * 1e6:.0f} us a task (2 brokers' costs + the scan over "
                      f"{b['workers']} workers) = {b['span_cores'] / pred:.0f} tasks/s, "
                      f"measured / model {b['steady'] * pred / b['span_cores']:.2f}; on 2 "
                      f"whole cores {2 / pred:.0f}/s; the coordinator was busy "
                      f"{b['span_coord']:.2f} of a core, {c['coordinator'] / total(c):.0%} "
                      f"of the CPU a task, its cap here {1 / c['coordinator']:.0f} tasks/s")
            st = b["startup"]
            node = (s["cpu"].get("worker", 0) + s["cpu"].get("guard", 0)) / size
            print(f"B22 start/stop at {size} brokers: up {st.get('up', float('nan')):.2f} s "
                  f"(submitted {st.get('submitted', float('nan')):.2f}, job started "
                  f"{st.get('job_start', float('nan')):.2f}, first hello "
                  f"{st.get('first_hello', float('nan')):.2f}); shutdown {b['shutdown']:.2f} s;"
                  f" a {SMALL}-task cluster's whole command {s['wall']:.2f} s, its "
                  f"coordinator's CPU {s['cpu']['coordinator']:.2f} s, the workers' and "
                  f"guards' {node * 1e3:.0f} ms a node"
                  + (f"; the coordinator's start and stop a worker "
                     f"{(s['cpu']['coordinator'] - small2) / (size - 2) * 1e3:.2f} ms"
                     if small2 else ""))
            idle = r["idle_kinds"]
            if "coordinator" in idle:
                w = r["idle"]["workers"]
                idles.append((w, idle["coordinator"]))
                print(f"B22 idle at {size} brokers ({2 * size} x sleep {IDLE:g}, over "
                      f"{idle['span']:.1f} s where all run): the coordinator "
                      f"{idle['coordinator'] * 1e3:.1f} ms of CPU a second = "
                      f"{idle['coordinator'] / w * 1e6:.0f} us a worker-second; the "
                      f"instance {idle['instance'] * 1e3:.0f} ms a second")
            else:
                print(f"B22 idle at {size} brokers: no span where every task ran "
                      f"({idle['span']:.1f} s)")
    ping = 0.0
    if len(idles) > 1 and idles[-1][0] != idles[0][0]:
        (w0, i0), (w1, i1) = idles[0], idles[-1]
        ping = max(0.0, (i1 - i0) / (w1 - w0))
        print(f"B22 idle: the coordinator's CPU a second with nothing ending, {i0 * 1e3:.1f} ms"
              f" at {w0} workers and {i1 * 1e3:.1f} ms at {w1}: {ping * 1e6:.0f} us a "
              f"worker-second, {max(0.0, i0 - ping * w0) * 1e3:.1f} ms a second besides")
    elif idles:
        ping = idles[-1][1] / idles[-1][0]  # an upper bound: its fixed part counted in
    missing = [p for p, ok in (("costs", c2 is not None), ("scan", bool(scan)),
                               ("long", bool(rt_cost)), ("emulation", bool(ping))) if not ok]
    if missing:
        print(f"B22 model: not printed without the parts {', '.join(missing)}")
    elif c2 is not None:
        for line in model_lines(c2["coordinator"], per_worker, ping, rt_cost, rt2,
                                c2["rank0"]):
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
