"""fluxlite cluster INPUT: run a PMC DAG, a pegasus-cluster list or a JSON job list.

Exit codes: 0 every task succeeded; 5 a task failed (or never ran because a parent
failed); 14 stopped by the time limit (the rescue file lets a rerun continue); 2 invalid
input or options (nothing ran); 71 no Flux where one was asked for; 128+N stopped by
signal N.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
from typing import Any

from fluxlite.numbers import duration_type

logger = logging.getLogger(__name__)


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
    # From the start: a signal while a large input is read ends the command in one line
    # (exit 128+N, nothing ran), and one that comes later is never dropped
    """``fluxlite cluster INPUT``: run the cluster; its exit code."""
    from fluxlite.errors import Interrupted
    from fluxlite.signals import Stop

    sigs = _Signals()
    try:
        with sigs.handlers:
            return _main(args, sigs)
    except Stop as stop:
        raise Interrupted(stop.signum, "the cluster's startup") from None


def _main(args: argparse.Namespace, sigs: _Signals) -> int:
    from fluxlite.cluster import formats
    from fluxlite.errors import UsageError

    check_numbers(args)
    jobs = _jobs(args.jobs)
    if args.json:
        # found out now, not after the whole cluster ran
        jdir = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(jdir) or not os.access(jdir, os.W_OK | os.X_OK):
            raise UsageError(f"cannot write the JSON record {args.json}: no writable "
                             f"directory {jdir}")
    graph = formats.load(args.input, None if args.format == "auto" else args.format)

    kind = args.executor
    use_flux_ctx = not args.no_flux and bool(os.environ.get("FLUX_URI"))
    if args.nested:
        if kind == "local" or args.no_flux:
            raise UsageError("--nested runs tasks in a Flux sub-instance: it cannot be used "
                             "with --executor local or --no-flux")
        kind = "pool" if kind == "pool" else "flux"
        nodes = args.nodes or 1
        per_node = max(1, (args.cores or nodes) // nodes)
        if kind == "flux":  # the pool sends what needs more than a node to Flux jobs
            graph.check_fits(per_node, (args.gpus or 0) // nodes, 0,
                             "each node of the nested instance")
    if kind == "auto":
        kind = "flux" if use_flux_ctx and _bindings() else "local"
    from fluxlite.cluster.executors import local_capacity

    if kind == "local":
        # what the local executor will have: checked now, in a dry run as in the run
        cores, gpus, memory_mb = local_capacity(jobs, args.memory, args.gpus or 0)
        graph.check_fits(cores, gpus, memory_mb, "the local executor")
    if args.dry_run:
        _describe(graph)
        if kind in ("flux", "pool") and not args.nested:
            sys.stdout.write("  (resource requests are checked against the Flux instance "
                             "when the cluster starts)\n")
        return 0

    ctx = None
    if use_flux_ctx:
        from fluxlite.flux.context import detect

        ctx = detect(warn=kind != "local")
        if kind in ("flux", "pool") and ctx is not None:
            ctx.warn_if_queued_behind_itself(nested=args.nested)

    from fluxlite.cluster.executors import LocalExecutor, TaskFiles
    from fluxlite.cluster.flux_jobs import FluxJobsExecutor
    from fluxlite.flux.instance import NestedInstance
    from fluxlite.cluster.records import RecordWriter
    from fluxlite.cluster.scheduler import Options, Scheduler, binary_out

    base = args.tmpdir or (os.getcwd() if kind in ("flux", "pool") else None)
    tmpdir = tempfile.mkdtemp(prefix=".fluxlite-cluster.", dir=base)
    files = TaskFiles(tmpdir, args.stdio_bytes)
    nested = None
    executor: Any = None
    try:
        if kind == "local":
            executor = LocalExecutor(files, jobs=jobs, memory_mb=args.memory,
                                     gpus=args.gpus or 0)
        else:
            uri = None
            if args.nested:
                nested = NestedInstance(args.nodes, args.cores, args.gpus)
                uri = nested.start()
                sigs.check()
            if kind == "pool":
                from fluxlite.cluster.tiered import make_pool

                executor = make_pool(graph, files, uri, args.workers_per_node, ctx,
                                     max(0.5, args.progress))
            else:
                executor = FluxJobsExecutor(files, uri=uri, lost=nested.lost if nested else None)
                graph.check_fits(executor.cores, executor.gpus, 0, executor.where)
        rescue = None if args.no_rescue else (args.rescue or args.input + ".rescue")
        opts = Options(fail_fast=args.fail_fast, rescue=rescue,
                       max_wall_time=args.max_wall_time,
                       time_margin=args.time_margin, kill_grace=args.kill_grace,
                       progress_interval=max(0.5, args.progress), default_tries=args.tries,
                       flux_context=ctx)
        wf_label = os.environ.get("PEGASUS_WF_LABEL")
        writer = RecordWriter(site=args.site, wf_label=wf_label)
        out = binary_out(args.output)
        sched = Scheduler(graph, executor, writer, out, opts)
        logger.info("cluster %s: %d %s tasks on the %s executor", args.input, len(graph),
                    graph.format, executor.name)
        sigs.check()
        # from here the scheduler handles signals (stop, summary, rescue file): one that
        # comes before its handlers are in place is kept and handed over, never lost;
        # after it a signal must not cut the summary or the shutdown short
        sigs.phase = "handover"
        try:
            summary = sched.run(pending=sigs.take)
        finally:
            sigs.phase = "shutdown"
            out.flush()
            if args.output not in (None, "-"):
                out.close()
        if args.json:
            doc = sched.report(summary)
            doc["flux_uri"] = executor.uri
            doc["nested"] = nested.info() if nested is not None else None
            if (info := executor.info()) is not None:
                doc["pool"] = info
            _write_json(args.json, doc)
        return sched.exit_code(summary)
    finally:
        sigs.phase = "shutdown"
        failed = sys.exc_info()[1]  # what ends the cluster early, None when it ran
        try:
            if executor is not None:
                executor.close()
            if nested is not None:
                nested.stop(ok=failed is None)
            if ctx is not None:
                from fluxlite.errors import FluxliteError

                # an error of fluxlite's own carries its code; anything else is a failure
                ctx.memo_end(sched.exit_code(summary) if failed is None
                             else failed.exit_code if isinstance(failed, FluxliteError) else 1)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)


class _Signals:
    """Terminating signals outside the scheduler's loop. While the executor or the nested
    instance starts, a signal ends the command through the cleanup below (a nested instance
    left running would hold its cores until the allocation ends); once the cluster runs or
    shuts down, it is logged and the shutdown completes."""

    def __init__(self) -> None:
        self.phase = "startup"
        self.signum: int | None = None
        self.received: list[int] = []  # in the handover to the scheduler
        from fluxlite.signals import HANDLED_SIGNALS, Handlers

        self.handlers = Handlers(HANDLED_SIGNALS, self._on_signal)

    def take(self) -> list[int]:
        """The signals that came in the handover, for the scheduler to act on."""
        got, self.received = self.received, []
        return got

    def _on_signal(self, signum: int) -> None:
        if self.phase == "handover":
            self.received.append(signum)
            return
        if signum == signal.SIGUSR1:
            # the warning that the time limit is near: nothing to end here; one that
            # comes before the cluster runs is handed to the scheduler, which stops at once
            if self.phase == "startup":
                self.received.append(signum)
            else:
                logger.warning("SIGUSR1 during the cluster's %s", self.phase)
            return
        if self.phase != "startup":
            logger.warning("%s during the cluster's shutdown: finishing it first",
                           signal.Signals(signum).name)
            return
        self.signum = self.signum or signum
        self.check()

    def check(self) -> None:
        """End the startup (:class:`fluxlite.signals.Stop`, which nothing on the way
        swallows) when a stop signal came during it."""
        from fluxlite.signals import Stop

        if self.signum is not None and self.phase == "startup":
            raise Stop(self.signum)


def _bindings() -> bool:
    try:
        from fluxlite.flux import import_flux

        import_flux()
    except Exception:  # noqa: BLE001 - no bindings: run locally
        return False
    return True


def _write_json(path: str, doc: dict[str, Any]) -> None:
    import orjson

    from fluxlite.errors import FluxliteError
    from fluxlite.fsutil import write_atomic

    try:
        write_atomic(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2), fsync=True,
                     parents=False)
    except OSError as err:
        raise FluxliteError(f"cannot write the JSON record {path}: {err.strerror}") from err


def _describe(graph: Any) -> None:
    from fluxlite.spec import one_line
    from fluxlite.cluster.records import key_values

    w = sys.stdout.write
    w(f"{graph.path}: {graph.format}, {len(graph)} tasks\n")
    for t in graph.tasks.values():
        extra = key_values(("cores", t.cores != 1 and t.cores), ("gpus", t.gpus),
                           ("memory", t.memory_mb and f"{t.memory_mb}MB"), ("tries", t.tries),
                           ("priority", t.priority), ("after", ",".join(t.parents)))
        cmd = t.command if t.command is not None else " ".join([t.app, *t.args])
        line = f"  {t.id}: {cmd}" + (f"  [{' '.join(extra)}]" if extra else "")
        w(one_line(line) + "\n")  # one line a task, whatever its id or command holds
