"""B11: how busy the pool keeps its slots: 1,000 tasks of 20 ms of CPU each.

Starts its own `flux start --test-size=2` instance and runs, through `fluxlite cluster
--executor pool`, 1,000 independent tasks that each spin a shell loop calibrated here to
about 20 ms of CPU. Per rank: busy slot-seconds (the sum of its tasks' run times) divided
by available slot-seconds (its slots times the span from the first task's start to the
last one's end). Target >= 0.85 on every rank.

In test mode each of the 2 brokers reports the machine's 2 cores as its own: 4 slots on 2
real cores, so a task's run time is about twice its CPU time (said in the output).
"""

from __future__ import annotations

import collections
import json
import os
import resource
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, main_inside_flux, run_quiet  # noqa: E402

TASKS = int(os.environ.get("B11_TASKS", "1000"))
CPU_MS = 20.0
TARGET = 0.85


def _loop(n: int) -> list[str]:
    return ["/bin/sh", "-c", f"i=0; while [ $i -lt {n} ]; do i=$((i+1)); done"]


def calibrate() -> int:
    """The loop count that takes about CPU_MS of CPU in /bin/sh here."""
    n = 2000
    while True:
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        for _ in range(5):
            subprocess.run(_loop(n), check=True)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        ms = ((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)) / 5 * 1000
        if ms >= CPU_MS * 0.5 or n > 10_000_000:
            return max(1, int(n * CPU_MS / max(ms, 0.001)))
        n *= 4


def inside(tmp: str) -> int:
    n = calibrate()
    dag = os.path.join(tmp, "b11.dag")
    with open(dag, "w") as fh:
        for i in range(TASKS):
            fh.write(f"TASK t{i} /bin/sh -c 'i=0; while [ $i -lt {n} ]; do i=$((i+1)); "
                     f"done'\n")
    out, js = dag + ".out", dag + ".json"
    env = dict(os.environ)
    env["TMPDIR"] = tmp
    run_quiet([PYTHON, "-m", "fluxlite", "cluster", "-q", dag, "--executor", "pool", "-o", out,
               "--json", js, "--no-rescue", "--tmpdir", tmp], env=env)
    with open(js, encoding="utf-8") as fh:
        rec = json.load(fh)
    attempts = [a for t in rec["tasks"] for a in t["attempts"]]
    assert len(attempts) == TASKS and all(a["exit_code"] == 0 for a in attempts)
    first = min(a["start_epoch"] for a in attempts)
    last = max(a["start_epoch"] + a["duration"] for a in attempts)
    span = last - first
    busy: collections.Counter[int] = collections.Counter()
    count: collections.Counter[int] = collections.Counter()
    for a in attempts:
        busy[a["rank"]] += a["duration"]
        count[a["rank"]] += 1
    slots = {w["rank"]: w["slots"] for w in rec["pool"]["workers"]}
    cpu = sum(a["rusage"].get("utime", 0) + a["rusage"].get("stime", 0)
              for a in attempts) / len(attempts) * 1000
    ok = True
    parts = []
    for r in sorted(slots):
        u = busy[r] / (slots[r] * span)
        ok = ok and u >= TARGET
        parts.append(f"rank {r}: {u:.2f} ({count[r]} tasks, {slots[r]} slots)")
    print(f"B11 pool utilisation ({TASKS} tasks of {cpu:.1f} ms CPU each, span {span:.2f} s; "
          f"test-size=2: {sum(slots.values())} slots on {os.cpu_count()} cores): "
          f"busy/available slot-seconds {', '.join(parts)} (target >= {TARGET:g}) "
          f"{'PASS' if ok else 'MISS'}")
    return 0 if ok else 1


def main() -> int:
    return main_inside_flux("B11", __file__, inside, 2)


if __name__ == "__main__":
    raise SystemExit(main())
