"""B14: how long a job outlives a SIGKILL of fluxlite.

`fluxlite run` of a task that leaves its process group and session every way a daemon does
(setsid, a double fork, a child that ignores TERM and HUP); once all of them run, fluxlite is
sent SIGKILL, and the time until the last process of the job (the task's supervisor
included) has ended is measured. Median of 10. Target: <= 1 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, fluxlite_env, median  # noqa: E402

from fluxlite.execute.supervisor import descendants  # noqa: E402

ROUNDS = int(os.environ.get("B14_ROUNDS", "10"))
TARGET = 1.0

TASK = """#!/bin/sh
out=$1
setsid sleep 600 &
( setsid sh -c 'sleep 600 & wait' & )
sh -c 'trap "" TERM HUP; sleep 600 & wait' &
sleep 0.2
touch "$out"
sleep 600
"""


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def one_round(tmp: str, env: dict[str, str]) -> float:
    ready = os.path.join(tmp, "ready")
    if os.path.exists(ready):
        os.unlink(ready)
    job = {"fluxlite": 1, "executable": os.path.join(tmp, "task.sh"), "arguments": [ready],
           "records": {"kickstart": None}}
    jp = os.path.join(tmp, "job.json")
    with open(jp, "w") as fh:
        json.dump(job, fh)
    proc = subprocess.Popen([PYTHON, "-m", "fluxlite", "run", "-q", jp], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not os.path.exists(ready):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the benchmark's job did not start")
        time.sleep(0.01)
    pids = descendants(proc.pid)  # the supervisor, the task and what it started
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    while any(_running(p) for p in pids):
        if time.perf_counter() - t0 > 30:
            for p in pids:  # this benchmark's own processes: never leave them running
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            return float("inf")
        time.sleep(0.0005)
    return time.perf_counter() - t0


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="fluxlite-b14-") as tmp:
        task = os.path.join(tmp, "task.sh")
        with open(task, "w") as fh:
            fh.write(TASK)
        os.chmod(task, 0o755)
        os.mkdir(os.path.join(tmp, "wd"))
        env = fluxlite_env(os.path.join(tmp, "wd"))
        times = [one_round(tmp, env) for _ in range(ROUNDS)]
        left = os.listdir(os.path.join(tmp, "wd"))
        med = median(times)
        ok = med <= TARGET and not left
        print(f"B14 kill -9 cleanup (fluxlite run of a task with setsid and double-fork "
              f"descendants; SIGKILL to fluxlite until the job's last process ended; median of "
              f"{ROUNDS}): {med * 1000:.1f} ms (min {min(times) * 1000:.1f}, max "
              f"{max(times) * 1000:.1f}); worker directories left: {len(left)} "
              f"(target <= {TARGET:g} s, none left) {'PASS' if ok else 'MISS'}")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
