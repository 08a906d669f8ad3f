"""B9: a cluster of 500 `true` tasks through the flux executor, against Flux itself.

Starts its own `flux start --test-size=1` instance and, inside it, times alternately
`fluxlite cluster --executor flux` of a DAG of 500 independent `true` tasks (a record per
task) and `flux submit --cc=1-500 --wait true`. Target: fluxlite's rate >= 0.9x Flux's own.
Needs `flux` on PATH and the Flux Python bindings (see the README).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, interleaved, main_inside_flux, median, run_quiet  # noqa: E402

TASKS = int(os.environ.get("B9_TASKS", "500"))
ROUNDS = int(os.environ.get("B9_ROUNDS", "2"))
TARGET = 0.9


def inside(tmp: str) -> int:
    dag = os.path.join(tmp, "b9.dag")
    with open(dag, "w") as fh:
        for i in range(TASKS):
            fh.write(f"TASK t{i} true\n")
    out = os.path.join(tmp, "b9.out")
    env = dict(os.environ)
    env["TMPDIR"] = tmp
    cmd = [PYTHON, "-m", "fluxlite", "cluster", "-q", dag, "--executor", "flux", "-o", out,
           "--no-rescue", "--tmpdir", tmp]
    flux_cmd = ["flux", "submit", "--quiet", f"--cc=1-{TASKS}", "--wait", "true"]
    run_quiet(flux_cmd[:3] + ["--cc=1-20", "--wait", "true"], env=env)  # warm up
    t_fl, t_flux = interleaved(lambda: run_quiet(cmd, env=env),
                               lambda: run_quiet(flux_cmd, env=env), ROUNDS)
    with open(out, encoding="utf-8") as fh:
        text = fh.read()
    assert text.count("- invocation: True") == TASKS, "missing records"
    assert 'stat="ok"' in text
    rate = TASKS / median(t_fl)
    base = TASKS / median(t_flux)
    ratio = rate / base
    ok = ratio >= TARGET
    print(f"B9 flux cluster ({TASKS} x true, a record per task; median of {ROUNDS}): "
          f"{rate:.1f} tasks/s vs flux submit --cc {base:.1f} jobs/s: ratio {ratio:.2f}x "
          f"(target >= {TARGET:g}x) {'PASS' if ok else 'MISS'}")
    return 0 if ok else 1


def main() -> int:
    return main_inside_flux("B9", __file__, inside, 1)


if __name__ == "__main__":
    raise SystemExit(main())
