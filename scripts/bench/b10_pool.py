"""B10 and B12: 2,000 `/bin/true` tasks through the pool executor, against the local
executor and a bare posix_spawn loop on the same machine.

Starts its own `flux start --test-size=2` instance and, inside it, times round by round,
interleaved:

- `fluxlite cluster --executor pool` of a DAG of 2,000 independent `/bin/true` tasks (a
  kickstart record per task, the JSON record);
- the same command with `--executor local` (as many slots as the machine has cores);
- a bare posix_spawn+wait loop of the same 2,000 commands, as many in flight as the
  machine has cores: the floor of any launcher;
- `flux submit --cc=1-N --wait true` (Flux's own job rate; `B10_FLUX_JOBS=0` leaves it out).

Targets: pool ÷ local >= 0.8, pool ÷ bare loop >= 0.5. Each rate is the whole command's
(interpreter, the pool's start and shutdown included). It prints the pool's round trips
per task (its workers' requests per result, from the JSON record), its steady rate (first
task's start to last task's end), the tasks each rank ran, the load of the machine, and,
as B12, the coordinator's CPU time per task: the CPU of the `fluxlite cluster` process
(its workers are Flux's processes, not its children) for 2,000 tasks minus that for 20,
divided by the difference.

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
from common import PYTHON, bare_loop, main_inside_flux, median, run_quiet  # noqa: E402

TASKS = int(os.environ.get("B10_TASKS", "2000"))
FLUX_JOBS = int(os.environ.get("B10_FLUX_JOBS", "200"))
ROUNDS = int(os.environ.get("B10_ROUNDS", "3"))
LOCAL_TARGET = 0.8
BARE_TARGET = 0.5
SMALL = 20


def _dag(tmp: str, n: int) -> str:
    path = os.path.join(tmp, f"b10-{n}.dag")
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(f"TASK t{i} /bin/true\n")
    return path


def _cluster(tmp: str, dag: str, env: dict[str, str], executor: str) -> tuple[float, float]:
    """Wall and CPU seconds of one cluster; its output and record beside the DAG."""
    base = f"{dag}.{executor}"
    cmd = [PYTHON, "-m", "fluxlite", "cluster", "-q", dag, "--executor", executor, "-o",
           base + ".out", "--json", base + ".json", "--no-rescue", "--tmpdir", tmp]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    run_quiet(cmd, env=env)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def _check(base: str) -> dict:
    with open(base + ".out", encoding="utf-8") as fh:
        text = fh.read()
    assert text.count("- invocation: True") == TASKS, f"{base}: missing records"
    assert 'stat="ok"' in text
    with open(base + ".json", encoding="utf-8") as fh:
        return json.load(fh)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def inside(tmp: str) -> int:
    env = dict(os.environ)
    env["TMPDIR"] = tmp
    big, small = _dag(tmp, TASKS), _dag(tmp, SMALL)
    width = _cores()
    flux_cmd = ["flux", "submit", "--quiet", f"--cc=1-{FLUX_JOBS}", "--wait", "true"]
    if FLUX_JOBS:
        run_quiet(["flux", "submit", "--quiet", "--cc=1-20", "--wait", "true"], env=env)
    _cluster(tmp, small, env, "pool")  # warm up
    _cluster(tmp, small, env, "local")
    t: dict[str, list[float]] = collections.defaultdict(list)
    cpu_big: list[float] = []
    cpu_small: list[float] = []
    trips: list[float] = []
    starved: list[float] = []
    steady: list[float] = []
    loads: list[float] = []
    for _ in range(ROUNDS):
        loads.append(os.getloadavg()[0])
        w, c = _cluster(tmp, big, env, "pool")
        t["pool"].append(w)
        cpu_big.append(c)
        rec = _check(big + ".pool")
        trips.append(rec["pool"]["messages"]["round_trips_per_task"])
        starts = [a["start_epoch"] for x in rec["tasks"] for a in x["attempts"]]
        ends = [a["start_epoch"] + a["duration"] for x in rec["tasks"] for a in x["attempts"]]
        steady.append(TASKS / max(1e-9, max(ends) - min(starts)))
        starved.append(sum(w.get("starved_seconds", float("nan")) for w in rec["pool"]["workers"])
                       / len(rec["pool"]["workers"]) / max(1e-9, max(ends) - min(starts)))
        t["local"].append(_cluster(tmp, big, env, "local")[0])
        _check(big + ".local")
        t0 = time.perf_counter()
        bare_loop(TASKS, width)
        t["bare"].append(time.perf_counter() - t0)
        if FLUX_JOBS:
            t0 = time.perf_counter()
            run_quiet(flux_cmd, env=env)
            t["flux"].append(time.perf_counter() - t0)
        cpu_small.append(_cluster(tmp, small, env, "pool")[1])
    per_rank: collections.Counter[int] = collections.Counter()
    for x in rec["tasks"]:
        for a in x["attempts"]:
            per_rank[a["rank"]] += 1
    slots = "+".join(str(w["slots"]) for w in rec["pool"]["workers"])
    rate = {k: TASKS / median(v) for k, v in t.items() if k != "flux"}
    to_local, to_bare = rate["pool"] / rate["local"], rate["pool"] / rate["bare"]
    ok = to_local >= LOCAL_TARGET and to_bare >= BARE_TARGET
    head = (f"({TASKS} x /bin/true, a record per task; median of {ROUNDS}, interleaved; "
            f"test-size=2: {slots} pool slots, {width} local slots, on {os.cpu_count()} "
            f"cores; load {median(loads):.1f})")
    print(f"B10 pool {rate['pool']:.0f} tasks/s {head}")
    print(f"B10 pool / local executor ({rate['local']:.0f} tasks/s): {to_local:.2f}x "
          f"(target >= {LOCAL_TARGET:g}x) {'PASS' if to_local >= LOCAL_TARGET else 'MISS'}")
    print(f"B10 pool / bare posix_spawn loop ({rate['bare']:.0f} tasks/s, {width} in "
          f"flight): {to_bare:.2f}x (target >= {BARE_TARGET:g}x) "
          f"{'PASS' if to_bare >= BARE_TARGET else 'MISS'}")
    msgs = rec["pool"]["messages"]
    print(f"B10 pool round trips per task: {median(trips):.3f} (last run: {msgs['want']} "
          f"want, {msgs['done']} done for {msgs['results']} results); steady rate "
          f"{median(steady):.0f} tasks/s (first start to last end); a worker waited for work "
          f"with free slots {median(starved):.0%} of that span")
    if FLUX_JOBS:
        base = FLUX_JOBS / median(t["flux"])
        print(f"B10 pool / flux submit --cc=1-{FLUX_JOBS} ({base:.1f} jobs/s): "
              f"{rate['pool'] / base:.1f}x")
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
