"""The resolved plan of a job, for --dry-run."""

from __future__ import annotations

from fluxlite.execute.timelimit import from_limits
from fluxlite.spec import JobSpec
from fluxlite.redact import text as redact_text
from fluxlite.urls import redact
from fluxlite.workdir import candidates


def describe(spec: JobSpec) -> str:
    """The resolved plan of a job, as ``--dry-run`` prints it."""
    lines = [f"job {spec.name} ({spec.id or 'no id'}) at site {spec.site}",
             f"worker directory in the first usable of: {', '.join(candidates(spec.workdir))}"
             f" (keep: {spec.workdir.keep}, at least {spec.workdir.min_free_mb:g} MB free)"]
    for f in spec.inputs + ((spec.staged_executable,) if spec.staged_executable else ()):
        how = "link" if f.symlink else "copy"
        check = f"sha256 {f.sha256[:12]}…" if f.sha256 else "no checksum"
        srcs = " | ".join(redact(s.url) for s in f.sources)
        lines.append(f"stage-in  {f.lfn} <- {srcs} ({how}, {check})")
    for c in spec.checkpoints:
        lines.append(f"checkpoint {c.lfn} <-> {redact(c.url)}")
    lines.append("task      " + " ".join([spec.executable, *spec.arguments]) +
                 f" (placement: {spec.placement})")
    if spec.container is not None:
        from fluxlite.container import describe as describe_container

        lines.append(describe_container(spec.container))
    s = from_limits(maxwalltime=spec.limits.maxwalltime,
                    checkpoint_time=spec.limits.checkpoint_time, kill_grace=spec.limits.kill_grace)
    if s.term_after is not None:
        lines.append(f"limits    TERM after {s.term_after:g} s, KILL after {s.kill_after:g} s")
    for o in spec.outputs:
        lines.append(f"stage-out {o.lfn} -> {' | '.join(redact(u) for u in o.urls)}"
                     + (" (optional)" if o.optional else ""))
    if spec.meta:
        lines.append(f"checksums from {', '.join(spec.meta)} (integrity: {spec.integrity})")
    lines.append(f"records   kickstart: {spec.records.kickstart or 'none'}, "
                 f"json: {spec.records.json or 'none'}")
    return redact_text("\n".join(lines) + "\n")
