"""B3: the cost of monitoring a CPU-bound task.

A CPU-bound task of about 5 s (fixed work) run under `fluxlite run` (psutil sampling at
the default interval, rusage, record) against the same command run bare, interleaved.
Target: <= 1.02x.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, fluxlite_env, median, report  # noqa: E402

ROUNDS = int(os.environ.get("B3_ROUNDS", "3"))
SECONDS = float(os.environ.get("B3_SECONDS", "5"))


def calibrate() -> int:
    """Iterations of the busy loop that take about SECONDS on this machine."""
    n = 2_000_000
    while True:
        t0 = time.perf_counter()
        subprocess.run([PYTHON, "-S", "-c", f"x=0\nfor i in range({n}): x+=i*i"], check=True)
        dt = time.perf_counter() - t0
        if dt > 0.5:
            return int(n * SECONDS / dt)
        n *= 4


def main() -> int:
    n = calibrate()
    cmd = [PYTHON, "-S", "-c", f"x=0\nfor i in range({n}): x+=i*i"]
    with tempfile.TemporaryDirectory(prefix="fluxlite-b3-") as tmp:
        job = {"fluxlite": 1, "name": "b3", "executable": cmd[0], "arguments": cmd[1:],
               "records": {"kickstart": os.path.join(tmp, "job.out"),
                           "json": os.path.join(tmp, "rec.json")}}
        jp = os.path.join(tmp, "job.json")
        with open(jp, "w") as fh:
            json.dump(job, fh)
        os.mkdir(os.path.join(tmp, "wd"))
        env = fluxlite_env(os.path.join(tmp, "wd"))
        t_bare: list[float] = []
        t_fl: list[float] = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            t_bare.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            subprocess.run([PYTHON, "-m", "fluxlite", "run", "-q", jp], env=env, check=True,
                           stderr=subprocess.DEVNULL)
            t_fl.append(time.perf_counter() - t0)
        with open(os.path.join(tmp, "rec.json")) as fh:
            mon = json.load(fh)["task"]["monitor"]
        ok = report(f"B3 monitoring, {SECONDS:g} s CPU-bound task (median of {ROUNDS})",
                    median(t_fl), median(t_bare), 1.02)
        print(f"B3 detail: {mon['samples']} samples at {mon['interval']} s, task CPU "
              f"{mon['cpu_seconds']} s seen by the monitor")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
