"""B13: `fluxlite stats` and `fluxlite report` over 100,000 task records.

The records are cluster JSON records as `fluxlite cluster --json` writes them (made with the
cluster's own record functions): 4 clusters of 25,000 tasks one after the other, 8 hosts of
16 slots each, one task in 50 failing once before its retry succeeds. Timed: `fluxlite stats`
(target <= 5 s) and `fluxlite report` (<= 15 s) over all of them, each the whole command
with the interpreter's start; the report's size (<= 20 MB); its first paint in headless
chromium (<= 3 s: from the navigation to the frame after the first drawing), when chromium
and selenium are installed. Also printed, without a target: `fluxlite stats` over the
kickstart records of 10,000 of those tasks (a cluster's output), the YAML path.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
from common import PYTHON, fluxlite_env, median, run_quiet  # noqa: E402

import orjson  # noqa: E402

from tests.stats_support import (  # noqa: E402
    browser_missing,
    cluster_output,
    headless_chromium,
    synthetic_cluster,
)

TASKS = int(os.environ.get("B13_TASKS", "100000"))
CLUSTERS = 4
ROUNDS = int(os.environ.get("B13_ROUNDS", "3"))
YAML_TASKS = min(TASKS, 10000)
T_STATS, T_REPORT, MAX_MB, T_PAINT = 5.0, 15.0, 20.0, 3.0


def timed_run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    run_quiet(cmd, env=env)
    return time.perf_counter() - t0


def first_paint(path: str) -> tuple[float, float, dict[str, object]]:
    """(first paint in s from the navigation, wall of the load as selenium saw it, state)"""
    with headless_chromium() as driver:
        t0 = time.perf_counter()
        driver.get("file://" + path)
        state: dict[str, object] = {}
        while time.perf_counter() - t0 < 60:
            state = driver.execute_script("return window.fluxliteReport || {}")
            if state.get("paintedMs") or state.get("errors"):
                break
            time.sleep(0.02)
        wall = time.perf_counter() - t0
    return float(state.get("paintedMs") or 0) / 1000, wall, state


def main() -> int:
    per = TASKS // CLUSTERS
    with tempfile.TemporaryDirectory(prefix="fluxlite-b13-") as tmp:
        t_make = time.perf_counter()
        t0 = 1796000000.0
        attempts = 0
        kick = None
        for c in range(CLUSTERS):
            doc, atts = synthetic_cluster(per, hosts=8, slots=16, fail_every=50, t0=t0,
                                          pid0=1_000_000 * (c + 1), tag=f"c{c}-")
            with open(os.path.join(tmp, f"cluster{c}.json"), "wb") as fh:
                fh.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
            attempts += len(atts)
            t0 = max(a.start + a.duration for a in atts) + 1.0
            if kick is None:
                kick = cluster_output(doc, atts[:YAML_TASKS])
        ydir = os.path.join(tmp, "yaml")
        os.mkdir(ydir)
        with open(os.path.join(ydir, "cluster0.out"), "w", encoding="utf-8") as fh:
            fh.write(kick or "")
        made = time.perf_counter() - t_make
        size_in = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)
                      if f.endswith(".json"))
        env = fluxlite_env(tmp)
        jsons = [os.path.join(tmp, f"cluster{c}.json") for c in range(CLUSTERS)]
        html = os.path.join(tmp, "report.html")
        t_stats = [timed_run([PYTHON, "-m", "fluxlite", "stats", "--json", *jsons], env)
                   for _ in range(ROUNDS)]
        t_report = [timed_run([PYTHON, "-m", "fluxlite", "report", "-q", *jsons, "-o", html],
                              env) for _ in range(ROUNDS)]
        mb = os.path.getsize(html) / 1e6
        t_yaml = timed_run([PYTHON, "-m", "fluxlite", "stats", ydir], env)
        why = browser_missing()
        paint = wall = None
        if why is None:
            paint, wall, state = first_paint(html)
            assert state.get("tasks") == attempts and not state.get("errors"), state
    ok = True
    s, r = median(t_stats), median(t_report)
    print(f"B13 input: {TASKS} tasks ({attempts} attempts) in {CLUSTERS} cluster JSON records, "
          f"{size_in / 1e6:.1f} MB, made in {made:.1f} s")
    for name, v, target, unit in (("fluxlite stats", s, T_STATS, "s"),
                                  ("fluxlite report", r, T_REPORT, "s"),
                                  ("report size", mb, MAX_MB, "MB")):
        good = v <= target
        ok &= good
        print(f"B13 {name} over {TASKS} tasks: {v:.2f} {unit} (target <= {target:g} {unit}; "
              f"median of {ROUNDS if unit == 's' else 1}) {'PASS' if good else 'MISS'}")
    if paint is None:
        print(f"B13 first paint: not measured: {why}")
    else:
        good = paint <= T_PAINT
        ok &= good
        print(f"B13 first paint in headless chromium: {paint:.2f} s (target <= {T_PAINT:g} s) "
              f"{'PASS' if good else 'MISS'}; load seen by the driver {wall:.2f} s")
    print(f"B13 detail: fluxlite stats over {YAML_TASKS} kickstart records (a cluster's "
          f"output, {len(kick or '') / 1e6:.1f} MB of YAML): {t_yaml:.2f} s "
          f"({YAML_TASKS / t_yaml:.0f} records/s)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
