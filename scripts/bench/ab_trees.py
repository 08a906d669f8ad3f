"""B1, B8, B9 and B10 of two installs of fluxlite, alternated round by round.

A change meant to keep behaviour and speed (a restructuring) is judged by running the same
workloads with the install before it and the install after it, one after the other in every
round, so that both see the same machine load:

    python scripts/bench/ab_trees.py --before OLD/.venv/bin/python --after NEW/.venv/bin/python

Each interpreter must import its own fluxlite (an editable install of its checkout). The
workloads are those of b1_overhead.py (one trivial job), b8_cluster_local.py (1,000
`/bin/true` tasks on the local executor), b9_cluster_flux.py (500 `true` tasks as Flux jobs)
and b10_pool.py (2,000 `/bin/true` tasks through the pool); B9 and B10 run inside one
`flux start --test-size=2` and are skipped, saying so, without flux. Target: after ÷ before
<= 1.05 for each median wall time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import median, run_quiet, timed, trivial_job  # noqa: E402

TARGET = 1.05


def _dag(path: str, n: int, exe: str) -> str:
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(f"TASK t{i} {exe}\n")
    return path


def _b1(tmp: str) -> tuple[list[str], str]:
    return ["run", "-q", trivial_job(tmp)], "B1 fluxlite run of a trivial job"


def _b8(tmp: str) -> tuple[list[str], str]:
    dag = _dag(os.path.join(tmp, "b8.dag"), 1000, "/bin/true")
    return (["cluster", "-q", dag, "-o", dag + ".out", "--json", dag + ".json", "--no-rescue",
             "--jobs", str(len(os.sched_getaffinity(0)))],
            "B8 cluster, local executor, 1,000 x /bin/true")


def _b9(tmp: str) -> tuple[list[str], str]:
    dag = _dag(os.path.join(tmp, "b9.dag"), 500, "true")
    return (["cluster", "-q", dag, "--executor", "flux", "-o", dag + ".out", "--no-rescue",
             "--tmpdir", tmp], "B9 cluster, flux executor, 500 x true")


def _b10(tmp: str) -> tuple[list[str], str]:
    dag = _dag(os.path.join(tmp, "b10.dag"), 2000, "/bin/true")
    return (["cluster", "-q", dag, "--executor", "pool", "-o", dag + ".out", "--json",
             dag + ".json", "--no-rescue", "--tmpdir", tmp],
            "B10 cluster, pool executor, 2,000 x /bin/true")


def _compare(name: str, before: list[str], after: list[str], env: dict[str, str],
             rounds: int) -> bool:
    cwd = env["TMPDIR"]  # not the checkout: `python -m` puts the working directory on sys.path
    run_quiet(before, env=env, cwd=cwd)  # warm caches for both
    run_quiet(after, env=env, cwd=cwd)
    tb: list[float] = []
    ta: list[float] = []
    for i in range(rounds):  # alternate which goes first, too
        pair = [(tb, before), (ta, after)]
        for times, cmd in (pair if i % 2 == 0 else pair[::-1]):
            times.append(timed(lambda cmd=cmd: run_quiet(cmd, env=env, cwd=cwd)))
    ratio = median(ta) / median(tb)
    ok = ratio <= TARGET
    print(f"{name} (median of {rounds}): before {median(tb):.4f} s, after {median(ta):.4f} s: "
          f"ratio {ratio:.3f}x (target <= {TARGET:g}x) {'PASS' if ok else 'MISS'}", flush=True)
    return ok


def _pair(args: argparse.Namespace, tmp: str, make) -> tuple[list[str], list[str], str]:  # noqa: ANN001
    rest, name = make(tmp)
    return ([args.before, "-m", "fluxlite", *rest], [args.after, "-m", "fluxlite", *rest], name)


def _env(tmp: str) -> dict[str, str]:
    env = dict(os.environ)
    env["TMPDIR"] = tmp
    return env


def _local(args: argparse.Namespace) -> bool:
    ok = True
    for make, rounds in ((_b1, args.rounds * 10), (_b8, args.rounds)):
        with tempfile.TemporaryDirectory(prefix="fluxlite-ab-") as tmp:
            env = {k: v for k, v in _env(tmp).items() if not k.startswith("FLUX_")}
            before, after, name = _pair(args, tmp, make)
            ok &= _compare(name, before, after, env, rounds)
    return ok


def _inside(args: argparse.Namespace) -> bool:
    ok = True
    for make in (_b9, _b10):
        with tempfile.TemporaryDirectory(prefix="fluxlite-ab-") as tmp:
            before, after, name = _pair(args, tmp, make)
            ok &= _compare(name, before, after, _env(tmp), args.rounds)
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    ap.add_argument("--before", required=True, help="python of the install before the change")
    ap.add_argument("--after", required=True, help="python of the install after the change")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per cluster figure (B1: 10x)")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inside:
        return 0 if _inside(args) else 1
    ok = _local(args)
    if shutil.which("flux") is None:
        print("B9, B10 skipped: flux is not on PATH")
        return 0 if ok else 1
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
    p = subprocess.run(["flux", "start", "--test-size=2", sys.executable,
                        os.path.abspath(__file__), "--inside", "--before", args.before,
                        "--after", args.after, "--rounds", str(args.rounds)], env=env)
    return 0 if ok and p.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
