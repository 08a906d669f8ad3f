"""B1: the wrapper's overhead.

`fluxlite run` of a job with one 1 KiB input, /bin/true, one output, against
`python3 -c pass` run by the machine's python3 binary (about 40 ms here), interleaved.
Target: <= 2.5x (2x the moonshot). The ratio against `python -c pass` in fluxlite's own
virtualenv (fewer site-packages to scan, so a faster start) is printed too: it shows the
cost of fluxlite's own imports and work on top of any interpreter start.
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    PYTHON,
    fluxlite_env,
    interleaved,
    median,
    report,
    run_quiet,
    trivial_job,
)

ROUNDS = int(os.environ.get("B1_ROUNDS", "30"))


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="fluxlite-b1-") as tmp:
        jp = trivial_job(tmp)
        os.mkdir(os.path.join(tmp, "wd"))
        env = fluxlite_env(os.path.join(tmp, "wd"))
        fl_cmd = [PYTHON, "-m", "fluxlite", "run", "-q", jp]
        machine_python = os.path.realpath(getattr(sys, "_base_executable", PYTHON))
        base_cmd = [machine_python, "-c", "pass"]
        venv_cmd = [PYTHON, "-c", "pass"]
        run_quiet(fl_cmd, env=env)  # warm the page cache
        t_fl, t_base = interleaved(lambda: run_quiet(fl_cmd, env=env),
                                   lambda: run_quiet(base_cmd, env=env), ROUNDS)
        _, t_venv = interleaved(lambda: None, lambda: run_quiet(venv_cmd, env=env), ROUNDS)
        ok = report("B1 overhead (fluxlite run, 1 KiB in, /bin/true, 1 out; median of "
                    f"{ROUNDS}) vs the machine's python3 -c pass", median(t_fl), median(t_base),
                    2.5)
        print(f"B1 detail: fluxlite median {median(t_fl) * 1000:.1f} ms (min "
              f"{min(t_fl) * 1000:.1f}); {machine_python} -c pass {median(t_base) * 1000:.1f} ms;"
              f" the virtualenv's python -c pass {median(t_venv) * 1000:.1f} ms (ratio "
              f"{median(t_fl) / median(t_venv):.2f}x); the PegasusLite chain takes about 4.3 s "
              "for this job on these machines")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
