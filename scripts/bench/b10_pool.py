"""B10 and B12: 2,000 `/bin/true` tasks through the pool executor, against Flux itself.

Starts its own `flux start --test-size=2` instance and, inside it, times alternately
`fluxlite cluster --executor pool` of a DAG of 2,000 independent `/bin/true` tasks (a
record per task) and `flux submit --cc=1-500 --wait true` (Flux's own job rate, the
baseline). B10's target: the pool's rate >= 10x Flux's. Prints the tasks each rank ran.

B12: the coordinator's CPU time per task (µs): the CPU of the `fluxlite cluster` process
(its workers and their tasks are Flux's processes, not its children) for 2,000 tasks minus
that for 20 tasks, divided by the difference: what one more task costs the coordinator.

In test mode each of the 2 brokers reports the machine's 2 cores as its own: the pool
has 4 slots on 2 real cores (said in the output). Needs `flux` on PATH and the bindings.
"""

from __future__ import annotations

import collections
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, main_inside_flux, median, run_quiet  # noqa: E402

TASKS = int(os.environ.get("B10_TASKS", "2000"))
FLUX_JOBS = int(os.environ.get("B10_FLUX_JOBS", "500"))
ROUNDS = int(os.environ.get("B10_ROUNDS", "2"))
TARGET = 10.0
SMALL = 20


def _dag(tmp: str, n: int) -> str:
    path = os.path.join(tmp, f"b10-{n}.dag")
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(f"TASK t{i} /bin/true\n")
    return path


def _cluster(tmp: str, dag: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one pool cluster; its output and record beside the DAG."""
    cmd = [PYTHON, "-m", "fluxlite", "cluster", "-q", dag, "--executor", "pool", "-o",
           dag + ".out", "--json", dag + ".json", "--no-rescue", "--tmpdir", tmp]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    run_quiet(cmd, env=env)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def inside(tmp: str) -> int:
    env = dict(os.environ)
    env["TMPDIR"] = tmp
    big, small = _dag(tmp, TASKS), _dag(tmp, SMALL)
    flux_cmd = ["flux", "submit", "--quiet", f"--cc=1-{FLUX_JOBS}", "--wait", "true"]
    run_quiet(["flux", "submit", "--quiet", "--cc=1-20", "--wait", "true"], env=env)  # warm up
    _cluster(tmp, small, env)
    t_pool: list[float] = []
    t_flux: list[float] = []
    cpu_big: list[float] = []
    cpu_small: list[float] = []
    for _ in range(ROUNDS):
        w, c = _cluster(tmp, big, env)
        t_pool.append(w)
        cpu_big.append(c)
        t0 = time.perf_counter()
        run_quiet(flux_cmd, env=env)
        t_flux.append(time.perf_counter() - t0)
        cpu_small.append(_cluster(tmp, small, env)[1])
    with open(big + ".json", encoding="utf-8") as fh:
        rec = json.load(fh)
    with open(big + ".out", encoding="utf-8") as fh:
        text = fh.read()
    assert text.count("- invocation: True") == TASKS, "missing records"
    assert 'stat="ok"' in text
    per_rank: collections.Counter[int] = collections.Counter()
    for t in rec["tasks"]:
        for a in t["attempts"]:
            per_rank[a["rank"]] += 1
    slots = "+".join(str(w["slots"]) for w in rec["pool"]["workers"])
    rate = TASKS / median(t_pool)
    base = FLUX_JOBS / median(t_flux)
    ratio = rate / base
    ok = ratio >= TARGET
    print(f"B10 pool cluster ({TASKS} x /bin/true, a record per task; median of {ROUNDS}; "
          f"test-size=2: {slots} slots on {os.cpu_count()} cores): {rate:.1f} tasks/s vs "
          f"flux submit --cc=1-{FLUX_JOBS} {base:.1f} jobs/s: ratio {ratio:.1f}x "
          f"(target >= {TARGET:g}x) {'PASS' if ok else 'MISS'}")
    print("B10 tasks per rank (last run): "
          + ", ".join(f"rank {r}: {n}" for r, n in sorted(per_rank.items())))
    per_task = (median(cpu_big) - median(cpu_small)) / (TASKS - SMALL) * 1e6
    print(f"B12 coordinator CPU per task: {per_task:.0f} us (CPU {median(cpu_big):.2f} s for "
          f"{TASKS} tasks, {median(cpu_small):.2f} s for {SMALL}; at most "
          f"{1e6 / per_task:.0f} tasks/s on one core)" if per_task > 0 else
          "B12 coordinator CPU per task: not measurable")
    return 0 if ok else 1


def main() -> int:
    return main_inside_flux("B10", __file__, inside, 2)


if __name__ == "__main__":
    raise SystemExit(main())
