"""A cluster run from start to end, as ``fluxlite cluster`` asks for it.

:func:`run` takes the :class:`Settings` of a run and returns its exit code. It owns, in
order: the input and the executor it runs on (local processes, Flux jobs, the pool),
checked before anything starts; the nested instance a run may start and always ends; the
scheduler; the JSON record of the cluster; the last memo on the enclosing Flux job; and the
one set of signal handlers of the run, whose policy passes from the startup (a stop signal
ends it, cleaning up) to the scheduler (a stop signal stops the cluster) to the shutdown (a
signal is logged, the shutdown completes).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass

from fluxlite.cluster import formats
from fluxlite.cluster.executors import Executor, LocalExecutor, TaskFiles, local_capacity
from fluxlite.cluster.formats import TaskGraph
from fluxlite.cluster.records import RecordWriter, key_values
from fluxlite.cluster.scheduler import Options, Scheduler, binary_out, finishing
from fluxlite.errors import EXIT_OK, FluxliteError, Interrupted, UsageError, one_line
from fluxlite.signals import HANDLED_SIGNALS, Handlers, Stop

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Settings:
    """What a cluster run is asked to do: ``fluxlite cluster``'s options, parsed."""

    input: str
    format: str | None = None  # None: recognised by content
    executor: str = "auto"  # "local", "flux", "pool"; "auto": flux in a Flux instance, else local
    workers_per_node: int = 1
    nested: bool = False  # the tasks run in a Flux sub-instance of nodes/cores/gpus
    nodes: int | None = None
    cores: int | None = None
    gpus: int | None = None  # of the nested instance, or what the local executor hands out
    jobs: int | None = None  # local slots; None: the usable cores
    memory_mb: int | None = None  # the local memory budget; None: the RAM
    tries: int = 1
    fail_fast: bool = False
    rescue: str | None = None  # the rescue file; None: none read or written
    max_wall_time: float | None = None  # seconds
    time_margin: float | None = None
    kill_grace: float = 5.0
    output: str = "-"  # where the records and cluster lines go; "-": stdout
    json: str | None = None  # the JSON record of the cluster
    stdio_bytes: int = 262144
    progress: float = 10.0
    tmpdir: str | None = None
    site: str = "local"
    use_flux: bool = True  # False: ignore any Flux instance
    dry_run: bool = False


def run(settings: Settings) -> int:
    """Run the cluster (or, for a dry run, check it and print its tasks); its exit code
    (errors.py's table). From the start a stop signal ends the startup in one line
    (:class:`~fluxlite.errors.Interrupted`, nothing left running); one that comes later is
    never dropped."""
    startup = _Startup()
    handlers = Handlers(HANDLED_SIGNALS, startup)
    try:
        with handlers:
            return ClusterRun(settings, handlers, startup).run()
    except Stop as stop:
        raise Interrupted(stop.signum, "the cluster's startup") from None


class ClusterRun:
    """One cluster run (module docstring): what it started, to end it whatever happens."""

    def __init__(self, settings: Settings, handlers: Handlers, startup: _Startup) -> None:
        self.s = settings
        self.handlers = handlers
        self.startup = startup
        self.flux_env = settings.use_flux and bool(os.environ.get("FLUX_URI"))
        self.kind = settings.executor
        self.ctx: Any = None  # FluxContext of the enclosing job
        self.nested: Any = None  # NestedInstance
        self.launch: Any = None  # the pool's job on its way (pool/launch.py), until adopted
        self.executor: Executor | None = None

    def run(self) -> int:
        """Check the input and the executor, then run the cluster; its exit code."""
        graph = self.plan()
        if self.s.dry_run:
            describe(graph, sys.stdout)
            if self.kind in ("flux", "pool") and not self.s.nested:
                sys.stdout.write("  (resource requests are checked against the Flux "
                                 "instance when the cluster starts)\n")
            return EXIT_OK
        base = self.s.tmpdir or (os.getcwd() if self.kind in ("flux", "pool") else None)
        tmpdir = tempfile.mkdtemp(prefix=".fluxlite-cluster.", dir=base)
        code: int | None = None
        failed: BaseException | None = None
        try:
            if self.kind == "pool" and not self.s.nested and self.s.use_flux:
                # the pool's job first: it starts while the flux package is imported
                # (launch.py); the shutdown ends it, whatever fails from here on
                from fluxlite.cluster.pool.launch import Launch

                self.launch = Launch(None, self.s.workers_per_node, self.s.stdio_bytes)
            if self.flux_env:
                from fluxlite.flux.context import detect

                self.ctx = detect(warn=self.kind != "local")
                if self.kind in ("flux", "pool") and self.ctx is not None:
                    self.ctx.warn_if_queued_behind_itself(nested=self.s.nested)
            code = self._execute(graph, TaskFiles(tmpdir, self.s.stdio_bytes))
            return code
        except BaseException as err:
            failed = err  # what ends the cluster early
            raise
        finally:
            try:
                self._shut_down(code, failed)
            finally:
                shutil.rmtree(tmpdir, ignore_errors=True)

    def plan(self) -> TaskGraph:
        """The task graph, and the executor it runs on (``kind``), checked against each
        other: what cannot run is refused before anything starts, in a dry run as well."""
        s = self.s
        if s.json:
            # found out now, not after the whole cluster ran
            jdir = os.path.dirname(os.path.abspath(s.json))
            if not os.path.isdir(jdir) or not os.access(jdir, os.W_OK | os.X_OK):
                raise UsageError(f"cannot write the JSON record {s.json}: no writable "
                                 f"directory {jdir}")
        graph = formats.load(s.input, s.format)
        if s.nested:
            if self.kind == "local" or not s.use_flux:
                raise UsageError("--nested runs tasks in a Flux sub-instance: it cannot be "
                                 "used with --executor local or --no-flux")
            self.kind = "pool" if self.kind == "pool" else "flux"
            nodes = s.nodes or 1
            per_node = max(1, (s.cores or nodes) // nodes)
            if self.kind == "flux":  # the pool sends what needs more than a node to Flux jobs
                graph.check_fits(per_node, (s.gpus or 0) // nodes, 0,
                                 "each node of the nested instance")
        if self.kind == "auto":
            self.kind = "flux" if self.flux_env and _bindings() else "local"
        if self.kind == "local":
            cores, gpus, memory_mb = local_capacity(s.jobs, s.memory_mb, s.gpus or 0)
            graph.check_fits(cores, gpus, memory_mb, "the local executor")
        return graph

    def _execute(self, graph: TaskGraph, files: TaskFiles) -> int:
        """Start the executor (and the nested instance), run the scheduler, write the
        JSON record; the cluster's exit code."""
        s = self.s
        executor = self._start_executor(graph, files)
        opts = Options(fail_fast=s.fail_fast, rescue=s.rescue, max_wall_time=s.max_wall_time,
                       time_margin=s.time_margin, kill_grace=s.kill_grace,
                       progress_interval=max(0.5, s.progress), default_tries=s.tries,
                       flux_context=self.ctx, keep_attempts=bool(s.json))
        writer = RecordWriter(site=s.site, wf_label=os.environ.get("PEGASUS_WF_LABEL"))
        out = binary_out(s.output)
        sched = Scheduler(graph, executor, writer, out, opts, handlers=self.handlers)
        logger.info("cluster %s: %d %s tasks on the %s executor", s.input, len(graph),
                    graph.format, executor.name)
        # a stop signal of the startup that was not acted on yet (a Flux callback's);
        # from the next line the scheduler's policy decides, with what came before it
        self.startup.check()
        try:
            summary = sched.run(pending=self.startup.take)
            executor.finish()  # a pool's job ends while the records are written
        finally:
            out.flush()
            if s.output not in (None, "-"):
                out.close()
        code = sched.exit_code(summary)
        if s.json:
            doc = sched.report(summary)
            doc["flux_uri"] = executor.uri
            doc["nested"] = self.nested.info() if self.nested is not None else None
            if (info := executor.info()) is not None:
                doc["pool"] = info
            write_json(s.json, doc)
        return code

    def _start_executor(self, graph: TaskGraph, files: TaskFiles) -> Executor:
        """The executor of ``kind``, in a nested instance started first when asked; kept
        in ``executor`` (and ``nested``) as soon as it exists, for the shutdown."""
        s = self.s
        if self.kind == "local":
            self.executor = LocalExecutor(files, jobs=s.jobs, memory_mb=s.memory_mb,
                                          gpus=s.gpus or 0)
            return self.executor
        uri = None
        if s.nested:
            from fluxlite.flux.instance import NestedInstance

            self.nested = NestedInstance(s.nodes, s.cores, s.gpus)
            uri = self.nested.start()
            self.startup.check()
        if self.kind == "pool":
            from fluxlite.cluster.tiered import make_pool

            launch, self.launch = self.launch, None  # the pool's from here on
            self.executor = make_pool(graph, files, uri, s.workers_per_node, self.ctx,
                                      max(0.5, s.progress), launch)
            return self.executor
        from fluxlite.cluster.flux_jobs import FluxJobsExecutor

        lost = self.nested.lost if self.nested is not None else None
        self.executor = ex = FluxJobsExecutor(files, uri=uri, lost=lost)
        graph.check_fits(ex.cores, ex.gpus, 0, ex.where)
        return ex

    def _shut_down(self, code: int | None, failed: BaseException | None) -> None:
        """End what the run started, whatever ended it: the executor, then the nested
        instance (completed when the cluster ran, else cancelled); the last memo."""
        self.handlers.hand_over(finishing)
        if self.launch is not None:  # the pool's job, submitted before anything failed
            self.launch.close()
        if self.executor is not None:
            self.executor.close()
        if self.nested is not None:
            self.nested.stop(ok=failed is None)
        if self.ctx is not None:
            # an error of fluxlite's own carries its code; anything else is a failure
            self.ctx.memo_end(code if failed is None and code is not None
                              else failed.exit_code if isinstance(failed, FluxliteError)
                              else 1)


class _Startup:
    """The signal policy while the cluster starts (the input read, the nested instance and
    the executor started): a stop signal ends the startup through the shutdown (a nested
    instance left running would hold its cores until the allocation ends); SIGUSR1, the
    warning that the time limit is near, is kept for the scheduler, which stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.pending: list[int] = []

    def __call__(self, signum: int) -> None:
        if signum == signal.SIGUSR1:
            self.pending.append(signum)
            return
        self.signum = self.signum or signum
        self.check()

    def check(self) -> None:
        """Raise :class:`~fluxlite.signals.Stop` (which nothing on the way swallows) when a
        stop signal came: called also where a raise from the handler may have been lost
        (inside a Flux callback)."""
        if self.signum is not None:
            raise Stop(self.signum)

    def take(self) -> list[int]:
        """The signals kept for the scheduler."""
        got, self.pending = self.pending, []
        return got


def _bindings() -> bool:
    try:
        from fluxlite.flux import import_flux

        import_flux()
    except Exception:  # noqa: BLE001 - no bindings: run locally
        return False
    return True


def write_json(path: str, doc: dict[str, Any]) -> None:
    """The cluster's JSON record at ``path``, whole or not at all; one line when it cannot
    be written."""
    import orjson

    from fluxlite.fsutil import write_atomic

    try:
        write_atomic(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2), fsync=True,
                     parents=False)
    except OSError as err:
        raise FluxliteError(f"cannot write the JSON record {path}: {err.strerror}") from err


def describe(graph: TaskGraph, out: Any) -> None:
    """A dry run's listing: the input, then one line a task, whatever its id or command
    holds."""
    w = out.write
    w(f"{graph.path}: {graph.format}, {len(graph)} tasks\n")
    for t in graph.tasks.values():
        extra = key_values(("cores", t.cores != 1 and t.cores), ("gpus", t.gpus),
                           ("memory", t.memory_mb and f"{t.memory_mb}MB"), ("tries", t.tries),
                           ("priority", t.priority), ("after", ",".join(t.parents)))
        cmd = t.command if t.command is not None else " ".join([t.app, *t.args])
        line = f"  {t.id}: {cmd}" + (f"  [{' '.join(extra)}]" if extra else "")
        w(one_line(line) + "\n")
