"""B8: a cluster of 1000 /bin/true tasks on the local executor, a record per task.

`fluxlite cluster` of a PMC DAG of 1000 independent `/bin/true` tasks (a compact kickstart
record and a [cluster-task] line each, the rescue file, the JSON record), wall time of the
whole command, against a bare fork/exec loop of the same 1000 commands with as many in
flight as the cluster has slots, interleaved in the same run. Target: >= 200 tasks/s
(pegasus-cluster with kickstart records does about 12 tasks/s here); the ratio to the bare
loop is printed.
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, bare_loop, fluxlite_env, interleaved, median, run_quiet  # noqa: E402

TASKS = int(os.environ.get("B8_TASKS", "1000"))
ROUNDS = int(os.environ.get("B8_ROUNDS", "3"))
TARGET = 200.0


def slots() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def main() -> int:
    width = slots()
    with tempfile.TemporaryDirectory(prefix="fluxlite-b8-") as tmp:
        dag = os.path.join(tmp, "b8.dag")
        with open(dag, "w") as fh:
            for i in range(TASKS):
                fh.write(f"TASK t{i} /bin/true\n")
        out = os.path.join(tmp, "b8.out")
        env = fluxlite_env(tmp)
        cmd = [PYTHON, "-m", "fluxlite", "cluster", "-q", dag, "-o", out, "--json",
               os.path.join(tmp, "b8.json"), "--rescue", os.path.join(tmp, "b8.rescue"),
               "--jobs", str(width)]

        def cluster() -> None:
            for p in (os.path.join(tmp, "b8.rescue"),):
                if os.path.exists(p):
                    os.unlink(p)  # every round runs all tasks
            run_quiet(cmd, env=env)

        cluster()  # warm caches
        t_fl, t_bare = interleaved(cluster, lambda: bare_loop(TASKS, width), ROUNDS)
        with open(out, encoding="utf-8") as fh:
            text = fh.read()
        records = text.count("- invocation: True")
        lines = text.count("[cluster-task ")
        assert records == TASKS and lines == TASKS, (records, lines)
        assert "machine:" not in text
    rate = TASKS / median(t_fl)
    bare = TASKS / median(t_bare)
    ok = rate >= TARGET
    print(f"B8 local cluster ({TASKS} x /bin/true, {width} slots, a record per task; median of "
          f"{ROUNDS}): {rate:.0f} tasks/s (target >= {TARGET:g}) {'PASS' if ok else 'MISS'}")
    print(f"B8 detail: bare fork/exec loop {bare:.0f} tasks/s; fluxlite/bare ratio "
          f"{rate / bare:.2f}x; fluxlite wall {median(t_fl):.3f} s incl. interpreter start; "
          f"pegasus-cluster with kickstart records: about 12 tasks/s on these machines")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
