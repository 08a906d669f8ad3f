"""B21: the pool on many brokers: its rate at 16 brokers over its rate at 2, and what a
worker's start and stop cost per node.

Rate: round by round, interleaved, a fresh `flux start --test-size=2` and `--test-size=16`
instance each run (after a warm-up cluster of 20 tasks) `fluxlite cluster --executor pool`
of 2,000 independent `/bin/true` tasks with a record each; the rate is the whole
command's (the pool's start and shutdown included). Target: rate at 16 / rate at 2 >= 0.8.

Start and stop (`B21_SIZES`, default 2, 4, 8, 16 brokers): a cluster of one `/bin/true`
task, after a warm-up one: the command's wall time, the pool's startup as the coordinator
records it (submitted: when it had the job's id, which it asks for once the ``flux``
package is imported; the job's start, the first and the last worker's hello), the
shutdown (the task's end to the command's end), and the CPU per node of the pool's job:
what the job shells and everything below them (guards, workers, the task) used, from the
brokers' reaped-children times, less that of a job of `true` on every node (the shells
alone).

Every broker of a test instance runs on this machine's cores, so 16 brokers share 2
cores: a worker's start costs 16 times over here, in parallel on a real allocation.

What a worker's start costs alone (at 2 and 16 brokers, median of 3 each): the wall time
of `flux run` of a job with a task on every broker, of `true` (Flux's own start and stop
of the job shells), of the interpreter alone (`python -S -c pass`), and of the
interpreter importing what a pool worker imports before its first task, on the worker's
own command line. What each costs more at 16 brokers than at 2 is printed beside what the
pool's run cost more, and what the target allows: a quarter of the time at 2 brokers
(rate at 16 / rate at 2 >= 0.8 is time at 16 <= 1.25 x time at 2). These jobs run alone;
in the pool's run, part of the workers' start at 16 brokers takes CPU the run at 2
leaves idle, so they bound nothing: they say where the difference goes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, instance_result, median, run_quiet  # noqa: E402

TASKS = int(os.environ.get("B21_TASKS", "2000"))
ROUNDS = int(os.environ.get("B21_ROUNDS", "3"))
SIZES = [int(x) for x in os.environ.get("B21_SIZES", "2,4,8,16").split(",") if x]
SMALL, BIG = 2, 16
TARGET = 0.8


def _dag(tmp: str, n: int) -> str:
    path = os.path.join(tmp, f"b21-{n}.dag")
    if not os.path.exists(path):
        with open(path, "w") as fh:
            fh.writelines(f"TASK t{i} /bin/true\n" for i in range(n))
    return path


def _cluster(tmp: str, n: int) -> dict:
    """One pool cluster of n tasks: its wall time, JSON record, and end time."""
    dag = _dag(tmp, n)
    rec_path = dag + ".json"
    t0 = time.time()
    run_quiet([PYTHON, "-m", "fluxlite", "cluster", "-q", dag, "--executor", "pool", "-o",
               dag + ".out", "--json", rec_path, "--no-rescue", "--tmpdir", tmp],
              env={**os.environ, "TMPDIR": tmp})
    t1 = time.time()
    with open(rec_path, encoding="utf-8") as fh:
        rec = json.load(fh)
    ends = [a["start_epoch"] + a["duration"] for t in rec["tasks"] for a in t["attempts"]]
    assert len(ends) == n and rec["summary"]["succeeded"] == n, rec["summary"]
    pool = rec["pool"]
    return {"wall": t1 - t0, "shutdown": t1 - max(ends),
            "startup": pool.get("startup_seconds", {}),
            "round_trips": pool.get("messages", {}).get("round_trips_per_task", float("nan"))}


def _children_cpu(pids: list[int]) -> float:
    """CPU seconds of the reaped children of ``pids`` (cutime + cstime)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        total += int(fields[13]) + int(fields[14])
    return total / tick


def _brokers(size: int) -> list[int]:
    out = subprocess.run(["flux", "exec", "-r", "all", "flux", "getattr", "broker.pid"],
                         capture_output=True, text=True, check=True).stdout
    pids = [int(x) for x in out.split()]
    assert len(pids) == size, pids
    return pids


ALONE_JOBS = ("true", "interpreter", "worker imports")


def _alone(size: int) -> dict[str, float]:
    """Wall seconds of `flux run` of each of ALONE_JOBS on every broker (median of 3)."""
    from fluxlite.cluster.pool import worker

    # the worker's own command line, its start() replaced by what its guard imports too
    imports = worker.command(None, [])
    imports[imports.index(worker.BOOT)] = worker.BOOT.replace(
        "; start()", "; import fluxlite.cluster.pool.guard, fluxlite.cluster.executors")
    jobs = {"true": ["true"], "interpreter": [sys.executable, "-S", "-c", "pass"],
            "worker imports": imports}
    run = ["flux", "run", "-o", "cpu-affinity=off", f"-N{size}", f"-n{size}"]
    for argv in jobs.values():
        run_quiet(run + argv)  # warm-up
    walls: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(3):
        for name, argv in jobs.items():
            t0 = time.perf_counter()
            run_quiet(run + argv)
            walls[name].append(time.perf_counter() - t0)
    return {k: median(v) for k, v in walls.items()}


def inside(tmp: str, mode: str, size: int, out: str) -> int:
    if mode == "rate":
        _cluster(tmp, 20)  # warm-up: the first job of an instance starts its services
        res = _cluster(tmp, TASKS)
    else:
        brokers = _brokers(size)
        _cluster(tmp, 1)
        c0 = _children_cpu(brokers)
        run_quiet(["flux", "run", f"-N{size}", f"-n{size}", "true"])
        c1 = _children_cpu(brokers)
        res = _cluster(tmp, 1)
        c2 = _children_cpu(brokers)
        res["cpu_per_node"] = ((c2 - c1) - (c1 - c0)) / size
        res["shell_cpu_per_node"] = (c1 - c0) / size
        if size in (SMALL, BIG):
            res["alone"] = _alone(size)
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(res, fh)
    return 0


def _instance(tmp: str, mode: str, size: int) -> dict:
    return instance_result(__file__, tmp, mode, size)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--inside":
        return inside(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    import shutil

    if shutil.which("flux") is None:
        print("B21 skipped: flux is not on PATH")
        return 0
    loads: list[float] = []
    rate: dict[int, list[float]] = {SMALL: [], BIG: []}
    trips: dict[int, list[float]] = {SMALL: [], BIG: []}
    starts: dict[int, list[dict]] = {n: [] for n in SIZES}
    with tempfile.TemporaryDirectory(prefix="fluxlite-b21-") as tmp:
        for _ in range(ROUNDS):
            loads.append(os.getloadavg()[0])
            for size in (SMALL, BIG):
                r = _instance(tmp, "rate", size)
                rate[size].append(TASKS / r["wall"])
                trips[size].append(r["round_trips"])
        for _ in range(max(1, ROUNDS - 1)):
            loads.append(os.getloadavg()[0])
            for size in SIZES:
                starts[size].append(_instance(tmp, "startup", size))
    ratio = median(rate[BIG]) / median(rate[SMALL])
    ok = ratio >= TARGET
    print(f"B21 pool rate at {BIG} brokers / at {SMALL} ({TASKS} x /bin/true, a record per "
          f"task, whole command; median of {ROUNDS}, interleaved; load "
          f"{median(loads):.1f}): {median(rate[BIG]):.0f} / {median(rate[SMALL]):.0f} tasks/s "
          f"= {ratio:.2f} (target >= {TARGET:g}) {'PASS' if ok else 'MISS'}; round trips per "
          f"task {median(trips[BIG]):.3f} / {median(trips[SMALL]):.3f}")
    for size in SIZES:
        rs = starts[size]

        def med(key: str, rs: list[dict] = rs) -> float:
            return median([r["startup"].get(key, float("nan")) for r in rs])

        print(f"B21 start/stop at {size:2d} brokers (1 task, median of {len(rs)}): wall "
              f"{median([r['wall'] for r in rs]):.2f} s; submitted {med('submitted'):.2f} s, "
              f"job started {med('job_start'):.2f}, first hello {med('first_hello'):.2f}, up "
              f"{med('up'):.2f}; shutdown {median([r['shutdown'] for r in rs]):.2f} s; CPU a "
              f"node {median([r['cpu_per_node'] for r in rs]) * 1000:.0f} ms (+ the job "
              f"shell's {median([r['shell_cpu_per_node'] for r in rs]) * 1000:.0f} ms)")
    if SMALL not in SIZES or BIG not in SIZES:
        return 0 if ok else 1
    allowed = 0.25 * TASKS / median(rate[SMALL])
    extra = {k: median([r["alone"][k] for r in starts[BIG]])
             - median([r["alone"][k] for r in starts[SMALL]]) for k in ALONE_JOBS}
    pool = TASKS / median(rate[BIG]) - TASKS / median(rate[SMALL])
    print(f"B21 start alone: a job on every broker costs more at {BIG} brokers than at "
          f"{SMALL} (flux run, median of 3): of true +{extra['true']:.2f} s, of the "
          f"interpreter +{extra['interpreter']:.2f} s, of the interpreter importing a "
          f"worker's modules +{extra['worker imports']:.2f} s; the pool's run took "
          f"+{pool:.2f} s; the target allows +{allowed:.2f} s (a "
          f"quarter of the time at {SMALL} brokers)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
