"""Tiered placement: the pool for what fits on one worker, a Flux job for the rest.

A task goes to a Flux job of its own (the flux executor) when it spans nodes (PMC ``-N``
more than 1), asks for it (``"placement": "flux"`` in a JSON list), or needs more cores,
GPUs or memory than any pool worker has; every other task goes to the pool.
"""

from __future__ import annotations

import logging

from fluxlite.cluster.executors import Executor, TaskFiles
from fluxlite.cluster.flux_jobs import FluxJobsExecutor
from fluxlite.cluster.formats import ClusterInputError, Task, TaskGraph
from fluxlite.cluster.attempt import Attempt
from fluxlite.cluster.pool.coordinator import PoolExecutor
from fluxlite.cluster.pool.launch import Launch

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)


class NodesFluxJobsExecutor(FluxJobsExecutor):
    """The flux executor, with ``-N`` honoured: a task of N nodes is a Flux job of N tasks,
    one per node (as ``flux run -N``), its cores split between them."""

    @staticmethod
    def _shape(t: Task) -> dict[str, Any]:
        if t.nodes <= 1:
            return FluxJobsExecutor._shape(t)
        return {"count": t.nodes, "nodes": t.nodes, "cores": max(1, -(-t.cores // t.nodes)),
                "gpus": -(-t.gpus // t.nodes) if t.gpus else None}


def wants_flux(t: Task) -> bool:
    """Whether a task is a Flux job of its own whatever the pool's workers could hold."""
    return t.nodes > 1 or t.placement == "flux"


class TieredExecutor(Executor):
    """The pool and the Flux-job tier as one executor (module docstring)."""

    name = "pool"

    def __init__(self, pool: PoolExecutor, flux: FluxJobsExecutor) -> None:
        self.pool, self.flux = pool, flux
        self.cores, self.gpus = pool.cores, pool.gpus
        self.where = "a pool worker or a Flux job"
        self.uri = pool.uri
        self._on: dict[int, Executor] = {}  # id(attempt) -> its executor
        fd = flux.wakeup_fd()
        if fd is not None:
            pool.add_fd(fd)

    def route(self, t: Task) -> Executor:
        """The tier a task runs in."""
        return self.flux if wants_flux(t) or not self.pool.can_ever(t) else self.pool

    def fits(self, task: Task) -> bool:
        return self.route(task).fits(task)

    def start(self, a: Attempt) -> Attempt | None:
        ex = self.route(a.task)
        failed = ex.start(a)
        if failed is None:
            self._on[id(a)] = ex
        return failed

    def running(self) -> int:
        return self.pool.running() + self.flux.running()

    def poll(self, timeout: float) -> list[Attempt]:
        out = self.flux.poll(0)
        out += self.pool.poll(0 if out else timeout)
        out += self.flux.poll(0)
        for a in out:
            self._on.pop(id(a), None)
        return out

    def signal_all(self, signum: int, reason: str) -> None:
        self.flux.signal_all(signum, reason)
        self.pool.signal_all(signum, reason)

    def finish(self) -> None:
        self.pool.finish()

    def hold(self, reason: str) -> None:
        self.flux.hold(reason)
        self.pool.hold(reason)

    def info(self) -> dict[str, Any]:
        return self.pool.info()

    def close(self) -> None:
        try:
            self.flux.close()
        finally:
            self.pool.close()


def make_pool(graph: TaskGraph, files: TaskFiles, uri: str | None, workers_per_node: int,
              ctx: Any, progress: float, launch: Launch | None = None) -> Executor:
    """The pool (its job already on its way when ``launch`` is given), with a Flux-job tier
    beside it when some task needs one."""
    pool = PoolExecutor(files, uri=uri, workers_per_node=workers_per_node, flux_context=ctx,
                        progress_interval=progress, launch=launch)
    try:
        tier = [t for t in graph.tasks.values() if wants_flux(t) or not pool.can_ever(t)]
        if not tier:
            return pool
        flux = NodesFluxJobsExecutor(files, uri=pool.uri)
        # the pool's job holds one core a worker: a Flux job gets what is left of a node
        beside = max(0, flux.cores - pool.wpn)
        for t in tier:
            nodes = max(1, t.nodes)
            problem = None
            if nodes > flux.nnodes:
                problem = f"asks for {nodes} nodes: the Flux instance has {flux.nnodes}"
            elif -(-t.cores // nodes) > beside:
                problem = (f"asks for {t.cores} core(s) on {nodes} node(s): beside the pool's "
                           f"{pool.wpn} worker(s) a node has {beside} core(s) for a Flux job")
            elif t.gpus and -(-t.gpus // nodes) > flux.gpus:
                problem = (f"asks for {t.gpus} GPU(s) on {nodes} node(s): a node has "
                           f"{flux.gpus}")
            if problem:
                flux.close()
                raise ClusterInputError(graph.path, f"task '{t.id}' {problem}",
                                        t.line or None)
        logger.info("%d task(s) run as Flux jobs of their own, the rest in the pool",
                    len(tier))
        return TieredExecutor(pool, flux)
    except BaseException:
        pool.close()
        raise
