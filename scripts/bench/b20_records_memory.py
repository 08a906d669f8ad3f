"""B20: what one more task costs a cluster's coordinator in CPU and in memory, and a
cluster of a million tasks in bounded memory.

Three measurements, each in a process of its own, each saying what it ran:

1. instant (in-process): the real Scheduler and RecordWriter driving the instant executor
   of tests/cluster_support.py (a real executor whose attempts end the moment they start,
   filled in as a pool worker fills them), B20_TASKS (100,000) `/bin/true` tasks, a
   kickstart record and a task line each, written to a sink that counts them. CPU per task
   of the scheduler's run, and RSS growth per task from the start of the run to its end
   (the task graph, the input, is held before and after: its size is printed apart).
   Without --json, then with it (kept attempts).
2. pool: B20_POOL_TASKS (100,000) `/bin/true` tasks through `fluxlite cluster --executor
   pool` under `flux start --test-size=2` (records to a file, a rescue file, no --json).
   The coordinator (the `fluxlite cluster` process: the workers and their tasks are Flux's
   processes) is sampled in /proc every half second, the tasks done read from the rescue
   file: its CPU and RSS growth per task between 10 % of the tasks and the end. Skipped,
   saying so, without flux or with B20_POOL_TASKS=0. A million `/bin/true` processes take
   well over ten minutes on a 2-core machine, hence:
3. 1M (in-process): B20_BIG (1,000,000) tasks through the instant executor, RSS sampled
   at every eighth of them: it completes, and the growth after the first quarter, per
   task, is what bounded means.

Targets: CPU per task <= 0.2 ms; RSS growth per task <= 0.5 KB. ``--tree DIR`` (or
B20_TREE) measures the fluxlite sources in DIR instead (a checkout before a change).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from common import PYTHON  # noqa: E402

TASKS = int(os.environ.get("B20_TASKS", "100000"))
POOL_TASKS = int(os.environ.get("B20_POOL_TASKS", "100000"))
BIG = int(os.environ.get("B20_BIG", "1000000"))
CPU_TARGET_MS = 0.2
RSS_TARGET_B = 512


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _tree() -> str:
    if "--tree" in sys.argv:
        return os.path.abspath(sys.argv[sys.argv.index("--tree") + 1])
    return os.path.abspath(os.environ.get("B20_TREE", REPO))


def instant(n: int, keep: bool, marks: int = 0) -> dict[str, float]:
    """Part 1 or 3, in this process: n instant tasks through the scheduler."""
    import importlib.util
    import logging

    sys.path.insert(0, _tree())
    logging.basicConfig(level=logging.WARNING)
    from fluxlite.cluster.records import RecordWriter
    from fluxlite.cluster.scheduler import Options, Scheduler

    # this repository's instant executor, over the fluxlite of the tree measured
    spec = importlib.util.spec_from_file_location(
        "cluster_support", os.path.join(REPO, "tests", "cluster_support.py"))
    assert spec is not None and spec.loader is not None
    support = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(support)
    InstantExecutor, NullOut, instant_graph = (  # noqa: N806
        support.InstantExecutor, support.NullOut, support.instant_graph)

    class Sink(NullOut):
        """Counts the task lines; the RSS at every n/marks of them."""

        def __init__(self) -> None:
            super().__init__()
            self.lines = 0
            self.samples: list[tuple[int, int]] = []
            self.every = n // marks if marks else 0

        def write(self, data: bytes) -> int:
            if data.startswith(b"[cluster-task "):
                self.lines += 1
                if self.every and self.lines % self.every == 0:
                    self.samples.append((self.lines, _rss()))
            return super().write(data)

    r0 = _rss()
    graph = instant_graph(n)
    gc.collect()
    r1 = _rss()
    opts = {"progress_interval": 1e9}
    if "keep_attempts" in Options.__dataclass_fields__:
        opts["keep_attempts"] = keep
    sink = Sink()
    ex = InstantExecutor(cores=4, pool=True)
    sched = Scheduler(graph, ex, RecordWriter(), sink, Options(**opts))
    gc.collect()
    r2 = _rss()
    c0, t0 = time.process_time(), time.perf_counter()
    summary = sched.run()
    c1, t1 = time.process_time(), time.perf_counter()
    gc.collect()
    r3 = _rss()
    assert summary["succeeded"] == n and sink.lines == n, (summary, sink.lines)
    stats = getattr(sched.w, "exe_stats", None)
    return {"n": n, "cpu_ms": (c1 - c0) / n * 1e3, "wall_s": t1 - t0,
            "graph_b": (r1 - r0) / n, "states_b": (r2 - r1) / n, "growth_b": (r3 - r2) / n,
            "rss_mib": r3 / 2**20, "bytes_per_task": sink.bytes / n,
            "stats_per_task": stats.stats / n if stats is not None else -1.0,
            "samples": sink.samples}


def _child(args: list[str]) -> dict[str, float]:
    p = subprocess.run([PYTHON, os.path.abspath(__file__), *args, "--tree", _tree()],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"B20 part failed: {' '.join(args)}\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _proc(pid: int) -> tuple[float, int]:
    """CPU seconds and RSS bytes of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        raise ValueError("ended")  # its memory is gone already
    tick = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/statm") as fh:
        rss = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return (int(fields[11]) + int(fields[12])) / tick, rss


def pool(tmp: str) -> int:
    """Part 2, inside a Flux instance."""
    n = POOL_TASKS
    dag = os.path.join(tmp, "b20.dag")
    with open(dag, "w") as fh:
        for i in range(n):
            fh.write(f"TASK t{i} /bin/true\n")
    out, rescue = dag + ".out", dag + ".rescue"
    for stale in (out, rescue):  # a rescue file of an earlier run would skip its tasks
        if os.path.exists(stale):
            os.unlink(stale)
    env = dict(os.environ, TMPDIR=tmp, PYTHONPATH=_tree())
    cmd = [PYTHON, "-m", "fluxlite", "cluster", "-q", dag, "--executor", "pool", "-o", out,
           "--rescue", rescue, "--tmpdir", tmp]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
    samples: list[tuple[int, float, int]] = []  # (done, cpu, rss)
    lines, offset = 0, 0
    t0 = time.perf_counter()
    while proc.poll() is None:
        time.sleep(0.5)
        try:
            with open(rescue, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            offset += len(chunk)
            lines += chunk.count(b"\n")
            done = max(0, lines - 1)  # a DONE line a task, after the file's first line
            cpu, rss = _proc(proc.pid)
        except (OSError, IndexError, ValueError):
            continue  # not started yet, or just ended
        if rss:
            samples.append((done, cpu, rss))
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        print(f"B20 pool: fluxlite cluster exited {proc.returncode}: {err[-2000:]}")
        return 1
    first = next((s for s in samples if s[0] >= n // 10), None)
    last = samples[-1] if samples else None
    if first is None or last is None or last[0] <= first[0]:
        print(f"B20 pool: too few samples to measure ({len(samples)})")
        return 1
    span = last[0] - first[0]
    cpu_ms = (last[1] - first[1]) / span * 1e3
    growth = (last[2] - first[2]) / span
    peak = max(s[2] for s in samples)
    print(json.dumps({"n": n, "span": span, "cpu_ms": cpu_ms, "growth_b": growth,
                      "peak_mib": peak / 2**20, "rate": n / wall, "first_done": first[0],
                      "rss_first_mib": first[2] / 2**20, "rss_last_mib": last[2] / 2**20}))
    return 0


def _pool_part() -> dict[str, float] | None:
    import shutil

    if POOL_TASKS <= 0:
        print("B20 pool skipped: B20_POOL_TASKS=0")
        return None
    if shutil.which("flux") is None:
        print("B20 pool skipped: flux is not on PATH")
        return None
    with tempfile.TemporaryDirectory(prefix="fluxlite-b20-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
        p = subprocess.run(["flux", "start", "--test-size=2", PYTHON, os.path.abspath(__file__),
                            "--pool-inside", tmp, "--tree", _tree()], env=env, cwd=tmp,
                           capture_output=True, text=True)
        lines = p.stdout.strip().splitlines()
        if p.returncode != 0 or not lines or not lines[-1].startswith("{"):
            print("B20 pool: failed\n" + p.stdout[-2000:] + p.stderr[-2000:])
            return None
        return json.loads(lines[-1])


def main() -> int:
    if "--instant" in sys.argv:
        i = sys.argv.index("--instant")
        n, keep, marks = int(sys.argv[i + 1]), sys.argv[i + 2] == "json", int(sys.argv[i + 3])
        print(json.dumps(instant(n, keep, marks)))
        return 0
    if "--pool-inside" in sys.argv:
        return pool(sys.argv[sys.argv.index("--pool-inside") + 1])
    tree = _tree()
    print(f"B20 fluxlite from {tree}; load {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    ok = True
    plain = _child(["--instant", str(TASKS), "plain", "0"])
    kept = _child(["--instant", str(TASKS), "json", "0"])
    c_ok = plain["cpu_ms"] <= CPU_TARGET_MS
    m_ok = plain["growth_b"] <= RSS_TARGET_B
    ok &= c_ok and m_ok
    print(f"B20 instant executor, in-process ({TASKS} tasks, scheduler + records): CPU "
          f"{plain['cpu_ms']:.4f} ms/task (target <= {CPU_TARGET_MS:g}) {_verdict(c_ok)}; "
          f"RSS growth {plain['growth_b']:.0f} B/task (target <= {RSS_TARGET_B}) "
          f"{_verdict(m_ok)}")
    stats = plain["stats_per_task"]
    print(f"B20 detail: {f'{stats:.2f}' if stats >= 0 else 'uncounted'} executable stats per task; "
          f"{plain['bytes_per_task']:.0f} bytes of records per task; held before the run: "
          f"the task graph {plain['graph_b']:.0f} B/task, the scheduler's task states "
          f"{plain['states_b']:.0f} B/task")
    print(f"B20 with --json (attempts kept for the JSON record): CPU {kept['cpu_ms']:.4f} "
          f"ms/task, RSS growth {kept['growth_b']:.0f} B/task")
    pooled = _pool_part()
    if pooled is not None:
        c_ok = pooled["cpu_ms"] <= CPU_TARGET_MS
        m_ok = pooled["growth_b"] <= RSS_TARGET_B
        ok &= m_ok
        print(f"B20 pool under flux start --test-size=2 ({pooled['n']} x /bin/true, records, "
              f"rescue file, no --json; coordinator from {pooled['first_done']} tasks done to "
              f"the end): CPU {pooled['cpu_ms']:.4f} ms/task (target <= {CPU_TARGET_MS:g}) "
              f"{_verdict(c_ok)}; RSS growth {pooled['growth_b']:.0f} B/task (target <= "
              f"{RSS_TARGET_B}) {_verdict(m_ok)}")
        print(f"B20 pool detail: {pooled['rate']:.0f} tasks/s; coordinator RSS "
              f"{pooled['rss_first_mib']:.1f} MiB at {pooled['first_done']} tasks, "
              f"{pooled['rss_last_mib']:.1f} MiB at the end, peak {pooled['peak_mib']:.1f} MiB")
    if BIG > 0:
        big = _child(["--instant", str(BIG), "plain", "8"])
        s = big["samples"]
        q = s[1] if len(s) > 2 else s[0]
        after = (s[-1][1] - q[1]) / (s[-1][0] - q[0]) if s[-1][0] > q[0] else 0.0
        b_ok = after <= RSS_TARGET_B
        ok &= b_ok
        print(f"B20 1M, in-process (instant executor, {BIG} tasks): completed in "
              f"{big['wall_s']:.0f} s, CPU {big['cpu_ms']:.4f} ms/task; RSS growth after "
              f"{q[0]} tasks {after:.1f} B/task (target <= {RSS_TARGET_B}) {_verdict(b_ok)}")
        print("B20 1M detail: RSS at " + ", ".join(
            f"{k // 1000}k {r / 2**20:.0f} MiB" for k, r in s) + f"; the task graph "
              f"{big['graph_b']:.0f} B/task")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
