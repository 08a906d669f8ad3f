"""The JSON record: the same facts as the kickstart record plus fluxlite's own."""

from __future__ import annotations

import dataclasses

import orjson

from fluxlite.version import __version__
from fluxlite.redact import deep as redact_deep
from fluxlite.record.host import iso
from fluxlite.record.model import Record
from fluxlite.urls import redact

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any


def _stage(stage: Any) -> dict[str, Any]:
    files = []
    for r in stage.results:
        d = dataclasses.asdict(r)
        d["dst"] = redact(r.dst)
        for a in d["attempts"]:
            a["src"], a["dst"] = redact(a["src"]), redact(a["dst"])
        files.append(d)
    secs = stage.duration or 0.0
    return {"direction": stage.direction, "start": stage.start, "duration": round(secs, 6),
            "files": len(stage.results), "succeeded": stage.files, "bytes": stage.bytes,
            "throughput_mb_s": round(stage.bytes / secs / 1e6, 3) if secs > 0 else None,
            "interrupted": stage.interrupted, "error": stage.error, "transfers": files}


def to_dict(rec: Record) -> dict[str, Any]:
    """The record as the JSON record's document."""
    job = rec.job
    task = rec.task
    out: dict[str, Any] = {
        "fluxlite_record": 1,
        "fluxlite_version": __version__,
        "job": None if job is None else {
            "name": job.name, "id": job.id, "site": job.site,
            "workflow": {"label": job.wf_label, "stamp": job.wf_stamp}, "source": job.source,
            "placement": job.placement},
        "start": iso(rec.start), "start_epoch": rec.start, "duration": round(rec.duration, 6),
        "host": {"hostname": rec.hostname, "hostaddr": rec.hostaddr,
                 "interface": rec.interface, **rec.process},
        "workdir": rec.workdir,
        "exit_code": rec.exit_code,
        "success": rec.ok,
        "error": rec.error,
        "failed_phase": rec.failed_phase,
        "phases": [dataclasses.asdict(p) for p in rec.phases],
        "stage_in": [_stage(s) for s in rec.stage_in],
        "stage_out": [_stage(s) for s in rec.stage_out],
        "integrity": [dataclasses.asdict(v) for v in rec.verifications],
        "unverified": rec.unverified,
        "task": None,
        "outputs": [dataclasses.asdict(o) | {"staged_to": redact(o.staged_to)
                                             if o.staged_to else None} for o in rec.outputs],
        "schedule": rec.schedule.as_dict() if rec.schedule else None,
        "signals": [e.as_dict() for e in rec.signals],
        "staged_after_signal": rec.staged_after_signal,
        "flux": rec.flux,
        "jobids": rec.jobids,
        "machine": rec.machine,
        "usage": rec.self_usage,
    }
    if task is not None:
        st = task.status
        out["task"] = {
            "argv": task.argv, "cwd": task.cwd, "executable": rec.executable,
            "executable_stat": rec.executable_stat, "pid": task.pid,
            "start": iso(task.start) if task.start else None, "duration": round(task.duration, 6),
            "status": {"raw": st.raw, "exitcode": st.exitcode, "signal": st.signal,
                       "core": st.core, "error": st.error, "code": st.code},
            "rusage": task.rusage, "timed_out": task.timed_out, "killed": task.killed,
            "monitor": rec.usage.as_dict() if rec.usage else None,
            "stdio": [{"name": f.name, "path": f.path, "size": f.size, "truncated": f.truncated,
                       "tail": None if f.data is None else f.data.decode("utf-8", "replace")}
                      for f in rec.stdio],
        }
    if rec.environment is not None and (not rec.ok or rec.full):
        out["environment"] = rec.environment
    if rec.container is not None:
        out["container"] = rec.container
    if rec.extra_sections:
        out["hooks"] = {k: {kk: (vv if kk != "status" else dataclasses.asdict(vv))
                            for kk, vv in v.items()} for k, v in rec.extra_sections.items()}
    return out


def _clean(value: Any) -> Any:
    """Strings made valid UTF-8: arguments, paths and environment values can carry lone
    surrogates (bytes that were not UTF-8 on the command line, ``\\udcff`` in job.json),
    which orjson refuses; each such code point is written as a backslash escape instead."""
    if isinstance(value, str):
        return value if value.isascii() else value.encode("utf-8", "backslashreplace").decode()
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def render(rec: Record) -> bytes:
    """The JSON record as bytes, ending with a newline."""
    doc = redact_deep(to_dict(rec))  # every string, the environment by its names
    opts = orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE
    try:
        return orjson.dumps(doc, option=opts, default=str)
    except TypeError:  # orjson.JSONEncodeError: a string that is not valid UTF-8
        return orjson.dumps(_clean(doc), option=opts, default=lambda v: _clean(str(v)))
