"""Nested instances: a Flux sub-instance of the current allocation for the length of a
cluster (hierarchical scheduling), shut down at the end."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time

from fluxlite.errors import SIGNAL_BASE, FluxliteError, FluxUnavailable
from fluxlite.execute.base import ExitStatus
from fluxlite.flux import jobspec
from fluxlite.flux.jobs import FluxJobs, Job
from fluxlite.signals import HANDLED_SIGNALS

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)


class NestedInstanceLost(FluxliteError):
    """The nested instance ended while the cluster was using it."""


class NestedInstance:
    """A Flux sub-instance inside the current allocation, for the length of a cluster.

    Its initial program waits for a KVS key of the instance: :meth:`stop` sets it, and the
    instance ends as a completed job (exit 0), not a cancelled one."""

    _DONE_KEY = "fluxlite.cluster-done"

    def __init__(self, nodes: int | None, cores: int | None, gpus: int | None = None,
                 uri: str | None = None) -> None:
        from fluxlite.errors import UsageError
        from fluxlite.flux import import_flux

        for opt, val, least in (("--nodes", nodes, 1), ("--cores", cores, 1),
                                ("--gpus", gpus, 0)):
            if val is not None and val < least:
                raise UsageError(f"{opt}: must be at least {least} for --nested")
        import_flux()  # one clear error when the bindings are missing
        self.parent_uri = uri or os.environ.get("FLUX_URI")
        if not self.parent_uri:
            raise FluxUnavailable("--nested needs a Flux instance to start the sub-instance "
                                  "in (FLUX_URI is unset)")
        self.nodes, self.cores, self.gpus = nodes, cores, gpus
        self.job: Job | None = None  # until the instance has ended
        self._f58: str | None = None
        self.startup = 0.0
        self.uri: str | None = None
        self.h: Any = None
        self.jobs: FluxJobs | None = None
        self._flux_cmd = shutil.which("flux")

    def _want(self) -> str:
        nodes = self.nodes or 1
        what = f"{nodes} node(s), {self.cores or nodes} core(s)"
        return what + (f", {self.gpus} GPU(s)" if self.gpus else "")

    def _have(self) -> str:
        import flux.resource  # type: ignore[import-not-found]

        try:
            rl = flux.resource.resource_list(self.h).get()
        except OSError:
            return "this Flux instance"
        return (f"this Flux instance ({rl.all.nnodes} node(s), {rl.all.ncores} core(s)"
                + (f", {rl.all.ngpus} GPU(s)" if rl.all.ngpus else "") + ")")

    def start(self, timeout: float = 120.0) -> str:
        """Submit the sub-instance and wait until it answers; its URI."""
        self.h = jobspec.connect(self.parent_uri, "the Flux instance")
        self.jobs = FluxJobs(self.parent_uri, self.h)
        nodes = self.nodes or 1
        cores = self.cores or nodes
        if cores < nodes:
            raise FluxliteError(f"--cores {cores} is fewer than --nodes {nodes}")
        # one slot per node; the initial program only keeps the instance up while the
        # cluster's scheduler (this process) submits into it, until stop() says it is done
        prog = (["flux", "kvs", "get", "--waitcreate", self._DONE_KEY] if self._flux_cmd
                else ["sleep", "inf"])
        env = jobspec.environment(os.environ, drop=jobspec.INSTANCE)
        if self._flux_cmd:
            # the instance's initial program finds this flux-core's command first
            path = env.get("PATH", os.defpath)
            env["PATH"] = os.pathsep.join([os.path.dirname(self._flux_cmd), path])
        js = jobspec.build(prog, kind="nest", count=nodes, cores=max(1, cores // nodes),
                           gpus=(self.gpus // nodes) if self.gpus else None,
                           nodes=nodes if self.nodes else None, cwd=os.getcwd(), env=env,
                           name="fluxlite-cluster")
        t0 = time.monotonic()
        # the signals that end the cluster are held back while the instance is submitted,
        # so that its job id is known (and the instance cancelled) whatever arrives
        held = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            self.job = self.jobs.submit_sync(js)
        except OSError as err:
            raise FluxliteError(f"the nested instance ({self._want()}) cannot be started in "
                                f"{self._have()}: {err.strerror or err}") from err
        finally:
            # a stop signal that came meanwhile is handled now, with the job id known
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        self._f58 = self.job.f58
        logger.info("nested instance %s: %s; waiting for it to start", self._f58, self._want())
        self.uri = self._wait_running(t0 + timeout, timeout)
        self._wait_ready(t0 + timeout)
        self.startup = time.monotonic() - t0
        logger.info("nested instance up in %.2f s: %s", self.startup, self.uri)
        return self.uri

    def _job(self) -> Any:
        """The nested instance's job as the parent lists it; None when not listed yet."""
        assert self.jobs is not None and self.job is not None
        return self.jobs.info(self.job, ("state", "result", "annotations", "exception_type",
                                         "exception_note", "waitstatus"))

    def _ended(self, job: Any) -> str:
        note = getattr(job, "exception_note", "") or ""
        kind = getattr(job, "exception_type", "") or ""
        if kind == "alloc" or "unsatisfiable" in note:
            return (f"the nested instance ({self._want()}) cannot be satisfied by "
                    f"{self._have()}: {note or kind}")
        status = getattr(job, "waitstatus", None)
        if kind or note:
            why = f"{kind}: {note}" if kind and note else (note or kind)
        elif isinstance(status, int) and status >= 0:
            st = ExitStatus.from_wait(status)
            # a job shell reports a task killed by signal N as exit code 128+N
            sig = (st.exitcode or 0) - SIGNAL_BASE
            if st.signal is None and sig > 0 and sig in signal.valid_signals():
                st = ExitStatus(status, None, sig)
            why = st.describe("its broker")
        else:
            why = f"result {job.result}"
        return f"the nested instance {self._f58} ended: {why}"

    def _wait_running(self, deadline: float, timeout: float) -> str:
        from flux.uri import JobURI  # type: ignore[import-not-found]

        reason = ""
        while True:
            job = self._job()
            if job is not None:
                if job.state == "INACTIVE":
                    raise FluxliteError(self._ended(job))
                uri = str(job.user.uri or "") if job.state == "RUN" else ""
                if uri:
                    return str(JobURI(uri).local)
                reason = str(job.sched.reason_pending or "") if job.state == "SCHED" else ""
            if time.monotonic() >= deadline:
                raise FluxliteError(f"the nested instance {self._f58} ({self._want()}) did "
                                    f"not start within {timeout:.0f} s"
                                    + (f": {reason}" if reason else ""))
            time.sleep(0.1)

    def lost(self) -> str | None:
        """Why the nested instance is gone (its job ended), or None while it runs."""
        if self.job is None:
            return None
        try:
            job = self._job()
        except OSError as err:
            return f"the Flux instance of the nested instance {self._f58} is gone: {err}"
        if job is None or job.state != "INACTIVE":
            return None
        return self._ended(job)

    def _wait_inactive(self, timeout: float) -> bool:
        """Wait for the nested instance's job to end; whether it did within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                job = self._job()
            except OSError as err:
                logger.debug("waiting for the nested instance to end: %s", err)
                return False
            if job is not None and job.state == "INACTIVE":
                return True
            time.sleep(0.05)
        return False

    def info(self) -> dict[str, Any]:
        """The nested instance in the cluster's JSON record."""
        return {"jobid": self._f58, "uri": self.uri, "nodes": self.nodes or 1,
                "cores": self.cores or (self.nodes or 1), "gpus": self.gpus or 0,
                "startup_seconds": round(self.startup, 3)}

    def _wait_ready(self, deadline: float) -> None:
        # the URI is published before the sub-instance has loaded its scheduler: ask for its
        # resources until it answers
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                jobspec.open_instance(self.uri, "the nested instance")
                return
            except FluxUnavailable as err:
                last = err
                time.sleep(0.1)
        raise FluxliteError(f"the nested instance at {self.uri} did not become ready: {last}")

    def stop(self, ok: bool = True) -> None:
        """End the nested instance: as a completed job after a cluster that ran (``ok``),
        cancelled otherwise; waits (a few seconds at most) for it to be gone."""
        if self.job is None or self.jobs is None:
            return
        import flux.kvs  # type: ignore[import-not-found]

        if ok and self.uri and self._flux_cmd and self.lost() is None:
            try:
                h = jobspec.connect(self.uri, "the nested instance")
                flux.kvs.put(h, self._DONE_KEY, 1)
                flux.kvs.commit(h)
            except (OSError, FluxUnavailable) as err:
                logger.debug("nested instance %s: cannot end it: %s", self._f58, err)
            else:
                if self._wait_inactive(10.0):
                    self.job = None
                    return
        self.jobs.cancel([self.job], "fluxlite cluster done")
        self._wait_inactive(30.0)
        self.job = None
