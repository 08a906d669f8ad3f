"""B15: parsing a cluster input scales linearly: a million tasks and edges in seconds.

Two PMC DAGs, read and checked by ``fluxlite.cluster.formats.load`` (the whole input check a
cluster makes before anything runs: splitting, options, EDGEs, the cycle check): 1,000,000
TASK lines with 1,000,000 EDGE lines (a chain and a fan-in), and one task with 100,000
parents (quadratic parsing took minutes there). The floor printed beside it is reading the
same file and splitting its lines into words, measured in the same run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import timed  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from fluxlite.cluster.formats import load  # noqa: E402

TASKS = int(os.environ.get("B15_TASKS", "1000000"))
WIDE = int(os.environ.get("B15_WIDE", "100000"))
TARGET = 15.0  # seconds for the million, on these shared 2-core machines


def write_dag(path: str, tasks: int, wide: bool) -> int:
    edges = 0
    with open(path, "w") as fh:
        for i in range(tasks):
            fh.write(f"TASK t{i} -c 1 /bin/true {i}\n")
        if wide:
            fh.write("TASK sink /bin/true\n")
            for i in range(tasks):
                fh.write(f"EDGE t{i} sink\n")
            return tasks
        for i in range(1, tasks):  # a chain, and every tenth task also feeds the last
            fh.write(f"EDGE t{i - 1} t{i}\n")
            edges += 1
        for i in range(0, tasks - 1, 10):
            fh.write(f"EDGE t{i} t{tasks - 1}\n")
            edges += 1
    return edges


def floor(path: str) -> None:
    with open(path, "rb") as fh:
        for line in fh.read().decode().split("\n"):
            line.split()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="fluxlite-b15-") as tmp:
        big = os.path.join(tmp, "big.dag")
        edges = write_dag(big, TASKS, wide=False)
        wide = os.path.join(tmp, "wide.dag")
        write_dag(wide, WIDE, wide=True)
        t0 = time.perf_counter()
        g = load(wide)
        t_wide = time.perf_counter() - t0
        assert len(g.tasks["sink"].parents) == WIDE
        del g
        t_floor = timed(lambda: floor(big))
        t0 = time.perf_counter()
        g = load(big)
        t_big = time.perf_counter() - t0
        assert len(g) == TASKS and len(g.tasks[f"t{TASKS - 1}"].parents) > 1
    ok = t_big <= TARGET
    print(f"B15 cluster parse: {TASKS} tasks + {edges} edges in {t_big:.2f} s "
          f"({(TASKS + edges) / t_big / 1e6:.2f} M lines/s; target <= {TARGET:g} s) "
          f"{'PASS' if ok else 'MISS'}")
    print(f"B15 detail: one task with {WIDE} parents in {t_wide:.2f} s; reading and splitting "
          f"the million-task file alone: {t_floor:.2f} s (ratio {t_big / t_floor:.1f}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
