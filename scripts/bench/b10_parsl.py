"""B10's Parsl line: the same 2,000 `/bin/true` tasks through Parsl's HighThroughputExecutor
on this machine, against the pool, interleaved.

Parsl is not one of fluxlite's dependencies: run this with the Python of a virtual
environment of its own (`python3 -m venv /tmp/parsl-venv && /tmp/parsl-venv/bin/pip install
parsl`), that environment's bin first on PATH (Parsl starts its interchange by name); it
skips, saying so, where `parsl` cannot be imported. With `FLUXLITE_PYTHON` set
to a Python that has fluxlite (and flux on PATH), each round also runs the pool cluster of
B10 in a fresh `flux start --test-size=2` and prints pool ÷ Parsl.

Each task is a Parsl python_app that runs `/bin/true` (subprocess.run), as many workers
as the machine has cores; Parsl's rate is taken from the first submit to the last result
(its executor already started), and whole (its start and shutdown included).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

TASKS = int(os.environ.get("B10_TASKS", "2000"))
ROUNDS = int(os.environ.get("B10_ROUNDS", "3"))


def _parsl_round(tmp: str) -> tuple[float, float]:
    """(steady seconds, whole seconds) of TASKS tasks under a fresh HTEX."""
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    t0 = time.perf_counter()
    workers = len(os.sched_getaffinity(0))
    cfg = Config(executors=[HighThroughputExecutor(
        label="htex", max_workers_per_node=workers,
        provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1))],
        run_dir=os.path.join(tmp, "runinfo"))
    dfk = parsl.load(cfg)

    @parsl.python_app
    def true() -> int:
        import subprocess

        return subprocess.run(["/bin/true"], check=False).returncode

    true().result()  # the executor and its workers are up
    t1 = time.perf_counter()
    futs = [true() for _ in range(TASKS)]
    assert all(f.result() == 0 for f in futs)
    t2 = time.perf_counter()
    dfk.cleanup()
    parsl.clear()
    return t2 - t1, time.perf_counter() - t0


def _pool_round(tmp: str, python: str) -> float:
    """Seconds of B10's pool cluster, in a fresh instance after a warm-up one."""
    import shlex

    dag = os.path.join(tmp, "b10.dag")
    with open(dag, "w") as fh:
        fh.writelines(f"TASK t{i} /bin/true\n" for i in range(TASKS))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
    cmd = shlex.join([python, "-m", "fluxlite", "cluster", "-q", dag, "--executor", "pool",
                      "-o", dag + ".out", "--no-rescue", "--tmpdir", tmp])
    stamp = shlex.quote(os.path.join(tmp, "t"))
    script = (f"set -e; {cmd}; t0=$(date +%s.%N); {cmd}; t1=$(date +%s.%N); "
              f'echo "$t0 $t1" > {stamp}')
    subprocess.run(["flux", "start", "--test-size=2", "sh", "-c", script], env=env,
                   check=True)
    with open(os.path.join(tmp, "t")) as fh:
        t0, t1 = (float(x) for x in fh.read().split())
    return t1 - t0


def main() -> int:
    try:
        import parsl  # noqa: F401
    except ImportError:
        print("B10 Parsl skipped: parsl is not importable by this Python (a venv of its own)")
        return 0
    python = os.environ.get("FLUXLITE_PYTHON")
    steady: list[float] = []
    whole: list[float] = []
    pool: list[float] = []
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="fluxlite-b10-parsl-") as tmp:
        os.chdir(tmp)
        for _ in range(ROUNDS):
            loads.append(os.getloadavg()[0])
            s, w = _parsl_round(tmp)
            steady.append(s)
            whole.append(w)
            if python:
                pool.append(_pool_round(tmp, python))
    med = statistics.median
    print(f"B10 Parsl HTEX ({TASKS} x /bin/true from a python_app, "
          f"{len(os.sched_getaffinity(0))} workers; median of {ROUNDS}, load "
          f"{med(loads):.1f}): {TASKS / med(steady):.0f} tasks/s steady, "
          f"{TASKS / med(whole):.0f} tasks/s whole")
    if pool:
        rate = TASKS / med(pool)
        print(f"B10 pool / Parsl HTEX: {rate:.0f} / {TASKS / med(whole):.0f} tasks/s whole = "
              f"{rate * med(whole) / TASKS:.2f}x (pool: records, in flux start "
              f"--test-size=2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
