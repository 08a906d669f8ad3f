"""fluxlite cluster INPUT: run a PMC DAG, a pegasus-cluster list or a JSON job list.

Exit codes: 0 every task succeeded; 5 a task failed (or never ran because a parent
failed); 14 stopped by the time limit (the rescue file lets a rerun continue); 2 invalid
input or options (nothing ran); 71 no Flux where one was asked for; 128+N stopped by
signal N.
"""

from __future__ import annotations

import argparse

from fluxlite.numbers import duration_type


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fluxlite cluster``."""
    p.add_argument("input", help="PMC DAG (TASK/EDGE lines), pegasus-cluster list (one "
                   "command per line) or JSON job list; recognised by content")
    p.add_argument("--format", choices=("auto", "pmc", "list", "json"), default="auto",
                   help="the input format (default: recognised by content)")
    p.add_argument("--executor", choices=("auto", "local", "flux", "pool"), default="auto",
                   help="where tasks run: 'local' fork/exec, 'flux' one Flux job per task, "
                        "'pool' a worker on every node of the Flux instance (tasks that need "
                        "more than a node still run as Flux jobs) (default: flux inside a "
                        "Flux instance with the bindings, else local)")
    p.add_argument("--workers-per-node", type=int, default=1, metavar="N",
                   help="pool executor: workers per node, each with its share of the node "
                        "(default 1)")
    p.add_argument("--nested", action="store_true",
                   help="start a Flux sub-instance of --nodes/--cores inside the current "
                        "allocation, run the cluster in it, shut it down")
    p.add_argument("--nodes", type=int, metavar="N", help="nodes of the nested instance")
    p.add_argument("--cores", type=int, metavar="N",
                   help="cores of the nested instance (default: one per node)")
    p.add_argument("--gpus", type=int, metavar="N", default=None,
                   help="GPUs of the nested instance, or GPUs the local executor may hand out")
    p.add_argument("-j", "--jobs", "-n", dest="jobs", metavar="N",
                   help="local executor: slots (default: the usable cores; 'auto' the same)")
    p.add_argument("--memory", type=int, metavar="MB",
                   help="local executor: memory budget for -m requests (default: the RAM)")
    p.add_argument("-t", "--tries", type=int, default=1, metavar="N",
                   help="tries per task unless the task says (default 1)")
    p.add_argument("-f", "--fail-fast", action="store_true",
                   help="start no new task after the first task failed for good")
    p.add_argument("-r", "--rescue", metavar="PATH",
                   help="rescue file of DONE lines, read and appended (default: INPUT.rescue)")
    p.add_argument("--no-rescue", action="store_true", help="neither read nor write one")
    p.add_argument("--max-wall-time", type=duration_type(60, exclusive_minimum=True),
                   metavar="MINUTES", help="the time the cluster may run: a bare number is "
                   "minutes (as PMC), or 90s, 30m, 2h, 1h30m; the Flux time left of the "
                   "allocation applies as well")
    p.add_argument("--time-margin", type=duration_type(), metavar="SECONDS",
                   help="TERM running tasks this long before the limit (default: 10%% of "
                        "the limit, at most 60 s, at least --kill-grace + 2 s)")
    p.add_argument("--kill-grace", type=duration_type(maximum=86400), default=5.0,
                   metavar="SECONDS",
                   help="SIGKILL this long after the SIGTERM (default 5)")
    p.add_argument("-o", "--output", metavar="PATH", default="-",
                   help="where the records and cluster lines go (default: stdout)")
    p.add_argument("--json", metavar="PATH", help="write the JSON record of the cluster here")
    p.add_argument("--stdio-bytes", type=int, default=262144, metavar="N",
                   help="bytes of each task's stdout/stderr embedded in its record")
    p.add_argument("--progress", type=duration_type(), default=10.0, metavar="SECONDS",
                   help="progress on stderr (and the Flux memo) at most this often")
    p.add_argument("--tmpdir", metavar="DIR",
                   help="where task output is kept while tasks run (default: $TMPDIR, or the "
                        "working directory for Flux tasks, which may run on other nodes)")
    p.add_argument("--site", default="local", help="resource name in the records")
    p.add_argument("--no-flux", action="store_true", help="ignore any Flux instance")
    p.add_argument("--dry-run", action="store_true",
                   help="check the input and print the tasks; run nothing")


def _jobs(value: str | None) -> int | None:
    from fluxlite.errors import UsageError

    if value in (None, "auto"):
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 7):
        raise UsageError(f"--jobs: expected a number from 1 to 9999999 or 'auto', not "
                         f"'{value[:40]}'")
    n = int(value)
    if n < 1:
        raise UsageError("--jobs: must be at least 1")
    return n


# Bounds of the numeric options: (option, attribute, least, most), both inclusive
_BOUNDS: tuple[tuple[str, str, float, float], ...] = (
    ("--tries", "tries", 1, 1_000_000),
    ("--stdio-bytes", "stdio_bytes", 0, 1 << 40),
    ("--memory", "memory", 0, 1 << 40),
    ("--gpus", "gpus", 0, 1 << 20),
    ("--nodes", "nodes", 1, 1 << 20),
    ("--workers-per-node", "workers_per_node", 1, 1 << 16),
    ("--cores", "cores", 1, 1 << 30),
    ("--max-wall-time", "max_wall_time", 0, 1e8),  # minutes: about 190 years
    ("--time-margin", "time_margin", 0, 1e10),
    ("--kill-grace", "kill_grace", 0, 1e6),
    ("--progress", "progress", 0, 1e9),
)


def check_numbers(args: argparse.Namespace) -> None:
    """Every number on the command line finite and within its bounds, or one line."""
    from fluxlite.errors import UsageError
    from fluxlite.numbers import check_number

    for opt, attr, least, most in _BOUNDS:
        v = getattr(args, attr, None)
        why = None if v is None else check_number(v, minimum=least, maximum=most)
        if why:
            raise UsageError(f"{opt}: {why}")


def main(args: argparse.Namespace) -> int:
    """``fluxlite cluster INPUT``: run the cluster (:func:`fluxlite.cluster.run.run`); its
    exit code."""
    from fluxlite.cluster.run import Settings, run

    check_numbers(args)
    jobs = _jobs(args.jobs)
    rescue = None if args.no_rescue else (args.rescue or args.input + ".rescue")
    return run(Settings(
        input=args.input, format=None if args.format == "auto" else args.format,
        executor=args.executor, workers_per_node=args.workers_per_node, nested=args.nested,
        nodes=args.nodes, cores=args.cores, gpus=args.gpus, jobs=jobs, memory_mb=args.memory,
        tries=args.tries, fail_fast=args.fail_fast, rescue=rescue,
        max_wall_time=args.max_wall_time, time_margin=args.time_margin,
        kill_grace=args.kill_grace, output=args.output, json=args.json,
        stdio_bytes=args.stdio_bytes, progress=args.progress, tmpdir=args.tmpdir,
        site=args.site, use_flux=not args.no_flux, dry_run=args.dry_run))
