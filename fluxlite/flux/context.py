"""What fluxlite knows of the Flux instance and job it runs in.

Two ways to be inside Flux:
- as the initial program of a batch job (``flux batch``): ``FLUX_URI`` names the job's own
  sub-instance, ``FLUX_ENCLOSING_ID`` and the broker attribute ``jobid`` name the batch job in
  the parent instance, ``FLUX_JOB_ID`` is unset;
- as a job of an instance (``flux run``/``flux submit``): ``FLUX_JOB_ID`` names it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from fluxlite.errors import FluxUnavailable

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)

# The runner's phase names, as the `user.fluxlite.phase` memo shows them.
PHASE_NAMES = {"workdir": "setup", "checkpoint-in": "stage-in", "task": "running",
               "checkpoint-out": "stage-out"}


@dataclass(slots=True)
class FluxContext:
    """The instance fluxlite runs in (a handle on it), and the job it runs as."""

    handle: Any
    uri: str
    level: int = 0
    jobid: str | None = None  # F58 id of the job fluxlite runs in (the batch job or its own)
    jobid_int: int | None = None
    jobid_source: str = ""  # "instance" (the batch job owning this instance) or "job"
    parent_uri: str | None = None
    size: int = 1
    resources: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    timeleft_at_start: float | None = None
    _memo_handle: Any = None
    _memo_failed: bool = False

    def info(self) -> dict[str, Any]:
        """The JSON record's ``flux`` section."""
        left = self.timeleft_at_start
        return {"uri": self.uri, "instance_level": self.level, "jobid": self.jobid,
                "jobid_int": self.jobid_int, "jobid_source": self.jobid_source,
                "parent_uri": self.parent_uri, "size": self.size,
                "resources": self.resources, "queue": self.queue,
                # JSON has no infinity: an unlimited job says so in words
                "timeleft": left if left is None or math.isfinite(left) else "unlimited"}

    def memo_end(self, exit_code: int) -> None:
        """The last memo of a command: ``done`` or ``failed``, with its exit code."""
        self.memo({"phase": "done" if exit_code == 0 else "failed", "exit_code": exit_code})

    def warn_if_queued_behind_itself(self, nested: bool) -> None:
        """A cluster run as a plain job of an instance (``flux run``/``flux submit``, not a
        batch job's initial program) submits its tasks, or its nested instance, to that same
        instance: they wait for cores beyond those its own job holds."""
        if self.jobid_source != "job":
            return
        what = "its nested instance" if nested else "its tasks"
        held = self.resources.get("ncores")
        logger.warning("fluxlite cluster runs as flux job %s, not as a batch job: %s are "
                       "jobs of the same instance and queue behind its own allocation%s; "
                       "run it with flux batch or flux alloc to give them that allocation",
                       self.jobid, what, f" ({held} core(s))" if held else "")

    def timeleft(self) -> float | None:
        """Seconds to the time limit (inf: none), or None when Flux cannot tell."""
        import flux.job  # type: ignore[import-not-found]

        try:
            return float(flux.job.timeleft(self.handle))
        except (OSError, ValueError) as err:
            logger.debug("flux timeleft unavailable: %s", err)
            return None

    def where_job_is(self) -> Any:
        """A handle on the instance the job fluxlite runs in was submitted to: the parent
        for a batch job (FluxUnavailable when it cannot be reached), this one otherwise."""
        if self.jobid_source == "instance" and self.parent_uri:
            from fluxlite.flux.jobspec import connect

            return connect(self.parent_uri, "the parent instance")
        return self.handle

    def memo(self, memo: dict[str, Any]) -> None:
        """Post ``user.fluxlite.*`` memo keys on the job fluxlite runs in (best effort)."""
        if self.jobid_int is None or self._memo_failed:
            return
        step = memo.get("phase")
        if step in PHASE_NAMES:
            # Flux users see where a job is (running), not fluxlite's name for the step
            memo = {**memo, "phase": PHASE_NAMES[step], "step": step}
        try:
            if self._memo_handle is None:
                # a batch job is a job of the parent instance: its memos live there
                self._memo_handle = self.where_job_is()
            self._memo_handle.rpc("job-manager.memo",
                                  {"id": self.jobid_int, "memo": {"fluxlite": memo}}).get()
        except Exception as err:  # noqa: BLE001 - progress reports must never fail a job
            # one failure means they all would (no permission, parent gone): say it once
            self._memo_failed = True
            logger.warning("cannot post progress to flux job %s: %s", self.jobid, err)


def detect(env: Mapping[str, str] | None = None, warn: bool = True) -> FluxContext | None:
    """The Flux context when FLUX_URI is set and the bindings import; None otherwise."""
    env = os.environ if env is None else env
    uri = env.get("FLUX_URI")
    if not uri:
        return None
    from fluxlite.flux.jobspec import connect

    try:
        h = connect(uri)
    except FluxUnavailable as err:
        if warn:
            logger.warning("FLUX_URI is set but %s; running locally", err)
        return None
    ctx = FluxContext(handle=h, uri=uri)
    _fill(ctx, h, env)
    return ctx


def _attr(h: Any, name: str) -> str | None:
    try:
        val = h.attr_get(name)
    except OSError:
        return None
    return val.decode() if isinstance(val, bytes) else val


def _jobid(value: str) -> Any:
    from flux.job import JobID  # type: ignore[import-not-found]

    try:
        return JobID(value)
    except (ValueError, TypeError, OSError) as err:
        logger.debug("not a flux job id %r: %s", value, err)
        return None


def _fill(ctx: FluxContext, h: Any, env: Mapping[str, str]) -> None:
    ctx.level = int(_attr(h, "instance-level") or 0)
    ctx.size = int(_attr(h, "size") or 1)
    ctx.parent_uri = _attr(h, "parent-uri")
    jid = None
    if env.get("FLUX_JOB_ID"):
        jid = _jobid(env["FLUX_JOB_ID"])
        ctx.jobid_source = "job"
    if jid is None and ctx.level > 0:
        # the initial program of a batch job: the instance knows the job that owns it
        own = _attr(h, "jobid") or env.get("FLUX_ENCLOSING_ID")
        if own:
            jid = _jobid(own)
            ctx.jobid_source = "instance"
    if jid is None:
        ctx.jobid_source = ""
    else:
        ctx.jobid_int = int(jid)
        ctx.jobid = jid.f58
    ctx.resources = _allocation(ctx, h)
    ctx.timeleft_at_start = ctx.timeleft()


def _allocation(ctx: FluxContext, h: Any) -> dict[str, Any]:
    """The resources fluxlite may use: the whole instance for a batch job (it owns it),
    the job's own allocation for a job of an instance."""
    import flux.job  # type: ignore[import-not-found]

    out: dict[str, Any] = {}
    if ctx.jobid_source != "job":
        try:
            import flux.resource  # type: ignore[import-not-found]

            rl = flux.resource.resource_list(h).get()
            out = {"nnodes": rl.all.nnodes, "ncores": rl.all.ncores, "ngpus": rl.all.ngpus,
                   "nodelist": str(rl.all.nodelist), "free_ncores": rl.free.ncores,
                   "source": "instance"}
        except Exception as err:  # noqa: BLE001 - informational only
            logger.debug("flux resource list unavailable: %s", err)
    if ctx.jobid_int is None:
        return out
    # the job's own view (queue, allocation, expiration) lives where the job was submitted
    try:
        info = flux.job.get_job(ctx.where_job_is(), ctx.jobid_int) or {}
    except Exception as err:  # noqa: BLE001 - informational only
        logger.debug("flux job info unavailable: %s", err)
        return out
    ctx.queue = info.get("queue") or None
    if ctx.jobid_source == "job" or not out:
        out = {"nnodes": info.get("nnodes"), "ncores": info.get("ncores"),
               "ngpus": info.get("ngpus"), "nodelist": info.get("nodelist"),
               "ntasks": info.get("ntasks"), "source": "job"}
        if isinstance(out["nodelist"], list):
            out["nodelist"] = ",".join(out["nodelist"])
    exp = info.get("expiration")
    if exp:
        out["expiration"] = exp
    return out
