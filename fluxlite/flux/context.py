"""What fluxlite knows of the Flux instance and job it runs in."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from fluxlite.errors import FluxUnavailable

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class FluxContext:
    handle: Any
    uri: str
    level: int = 0
    jobid: str | None = None  # F58 id of the job fluxlite runs in (the batch job or its own)
    jobid_int: int | None = None
    jobid_source: str = ""  # "instance" (batch job of this instance) or "job" (FLUX_JOB_ID)
    parent_uri: str | None = None
    size: int = 1
    resources: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    timeleft_at_start: float | None = None
    _memo_handle: Any = None

    def info(self) -> dict[str, Any]:
        return {"uri": self.uri, "instance_level": self.level, "jobid": self.jobid,
                "jobid_int": self.jobid_int, "jobid_source": self.jobid_source,
                "parent_uri": self.parent_uri, "size": self.size,
                "resources": self.resources, "queue": self.queue,
                "timeleft": self.timeleft_at_start}

    def timeleft(self) -> float | None:
        import flux.job  # type: ignore[import-not-found]

        try:
            return float(flux.job.timeleft(self.handle))
        except (OSError, ValueError) as err:
            logger.debug("flux timeleft unavailable: %s", err)
            return None

    def memo(self, memo: dict[str, Any]) -> None:
        """Post ``user.fluxlite.*`` memo keys on the job fluxlite runs in (best effort)."""
        if self.jobid_int is None:
            return
        try:
            if self._memo_handle is None:
                import flux  # type: ignore[import-not-found]

                if self.jobid_source == "instance" and self.parent_uri:
                    self._memo_handle = flux.Flux(self.parent_uri)
                else:
                    self._memo_handle = self.handle
            self._memo_handle.rpc("job-manager.memo",
                                  {"id": self.jobid_int, "memo": {"fluxlite": memo}}).get()
        except Exception as err:  # noqa: BLE001 - progress reports must never fail a job
            logger.debug("flux memo failed: %s", err)


def detect(env: dict[str, str] | None = None, warn: bool = True) -> FluxContext | None:
    """The Flux context when FLUX_URI is set and the bindings import; None otherwise."""
    env = os.environ if env is None else env
    uri = env.get("FLUX_URI")
    if not uri:
        return None
    try:
        from fluxlite.flux import import_flux

        flux = import_flux()
    except FluxUnavailable as err:
        if warn:
            logger.warning("FLUX_URI is set but %s; running locally", err)
        return None
    try:
        h = flux.Flux(uri)
    except (OSError, EnvironmentError) as err:
        if warn:
            logger.warning("cannot connect to Flux at %s (%s); running locally", uri, err)
        return None
    ctx = FluxContext(handle=h, uri=uri)
    _fill(ctx, h, env)
    return ctx


def _attr(h: Any, name: str) -> str | None:
    try:
        return h.attr_get(name)
    except (OSError, EnvironmentError):
        return None


def _fill(ctx: FluxContext, h: Any, env: dict[str, str]) -> None:
    from flux.job import JobID  # type: ignore[import-not-found]

    ctx.level = int(_attr(h, "instance-level") or 0)
    ctx.size = int(_attr(h, "size") or 1)
    ctx.parent_uri = _attr(h, "parent-uri")
    job = env.get("FLUX_JOB_ID")
    if job:
        jid = JobID(job)
        ctx.jobid_source = "job"
    elif ctx.level > 0 and _attr(h, "jobid"):
        jid = JobID(_attr(h, "jobid"))
        ctx.jobid_source = "instance"
    elif env.get("FLUX_ENCLOSING_ID"):
        jid = JobID(env["FLUX_ENCLOSING_ID"])
        ctx.jobid_source = "instance"
    else:
        jid = None
    if jid is not None:
        ctx.jobid_int = int(jid)
        ctx.jobid = jid.f58
    try:
        import flux.resource  # type: ignore[import-not-found]

        rl = flux.resource.resource_list(h).get()
        ctx.resources = {
            "nnodes": rl.all.nnodes, "ncores": rl.all.ncores, "ngpus": rl.all.ngpus,
            "nodelist": str(rl.all.nodelist), "free_ncores": rl.free.ncores}
    except Exception as err:  # noqa: BLE001 - informational only
        logger.debug("flux resource list unavailable: %s", err)
    ctx.timeleft_at_start = ctx.timeleft()
    if ctx.jobid_int is not None and ctx.jobid_source == "instance" and ctx.parent_uri:
        try:
            import flux.job  # type: ignore[import-not-found]

            parent = flux.Flux(ctx.parent_uri)
            info = flux.job.get_job(parent, ctx.jobid_int)
            if info:
                ctx.queue = info.get("queue")
        except Exception as err:  # noqa: BLE001
            logger.debug("flux job info unavailable: %s", err)
