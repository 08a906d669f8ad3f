"""The messages between the pool's coordinator and its workers, over Flux RPCs.

The coordinator registers the service ``SERVICE`` on its broker; each worker registers
``SERVICE-w<N>`` on its own. Topics and payloads (JSON, many tasks or results a message):

- ``SERVICE.hello`` (worker → coordinator): ``{worker, rank, host, pid, memory_mb}``;
  answered with the worker's share of its node: ``{slots, gpus, memory_mb}``.
- ``SERVICE.want`` (worker → coordinator): the worker has free slots (and, when no
  ``done`` of its is in flight, the results it has gathered ride along). Answered with
  ``{tasks: [...]}`` as soon as there is work that fits what the coordinator knows to be
  free on that worker, or ``{stop: true}`` at the end; held until then (one per worker).
- ``SERVICE.done`` (worker → coordinator): ``{worker, results: [...]}``, answered at once;
  one in flight per worker, so results batch up behind it.
- ``SERVICE-w<N>.signal`` (coordinator → worker): ``{signum, reason}`` for every task the
  worker runs, and for those that reach it later.
- ``SERVICE-w<N>.ping`` (coordinator → worker): liveness; a worker that is gone answers
  with an error at once (its service went with its connection).
- ``SERVICE-w<N>.stop`` (coordinator → worker): kill what runs, clean up, exit.

Bytes (task output) travel as latin-1 text: every byte is one character, no escapes for
the ASCII that task output mostly is.
"""

from __future__ import annotations

from typing import Any

import orjson

from fluxlite.cluster.formats import Task
from fluxlite.cluster.records import Attempt
from fluxlite.execute.base import ExitStatus

HELLO, WANT, DONE = "hello", "want", "done"
SIGNAL, PING, STOP = "signal", "ping", "stop"


def dumps(doc: dict[str, Any]) -> bytes:
    """A message's payload."""
    return orjson.dumps(doc)


def loads(text: str | None) -> dict[str, Any]:
    """A payload's message: {} for an empty or non-object one."""
    if not text:
        return {}
    doc = orjson.loads(text)
    return doc if isinstance(doc, dict) else {}


def worker_service(service: str, worker: int) -> str:
    """The name of a worker's own service (what the coordinator asks it through)."""
    return f"{service}-w{worker}"


def _b(data: bytes | None) -> str | None:
    return None if data is None else data.decode("latin-1")


def _unb(text: str | None) -> bytes | None:
    return None if text is None else text.encode("latin-1")


def encode_task(key: int, a: Attempt) -> dict[str, Any]:
    """An attempt as a worker needs it to run the task."""
    t = a.task
    d: dict[str, Any] = {"key": key, "id": t.id, "seq": t.seq, "try": a.number,
                         "cores": t.cores, "gpus": t.gpus, "memory_mb": t.memory_mb}
    if t.argv is not None:
        d["argv"] = t.argv
    if t.command is not None:
        d["command"] = t.command
    if t.pipe_forward:
        d["pipe_forward"] = t.pipe_forward
    if t.file_forward:
        d["file_forward"] = t.file_forward
    if t.job_doc is not None:
        d["job_doc"] = t.job_doc
    return d


def decode_task(d: dict[str, Any]) -> tuple[int, Attempt]:
    """The worker's copy of an attempt (enough of its task to run it)."""
    t = Task(id=d["id"], seq=d["seq"], argv=d.get("argv"), command=d.get("command"),
             cores=d["cores"], gpus=d["gpus"], memory_mb=d["memory_mb"],
             pipe_forward=[tuple(p) for p in d.get("pipe_forward", ())],  # type: ignore[misc]
             file_forward=[tuple(p) for p in d.get("file_forward", ())])  # type: ignore[misc]
    if d.get("job_doc") is not None:
        from fluxlite.spec import JobSpec

        t.job_doc = d["job_doc"]
        t.job = JobSpec.from_dict(t.job_doc, source=t.id)
    return d["key"], Attempt(task=t, number=d["try"])


def encode_result(key: int, a: Attempt) -> dict[str, Any]:
    """An attempt that ended, as a worker reports it (:func:`apply_result` reads it)."""
    s = a.status
    d: dict[str, Any] = {
        "key": key, "argv": a.argv, "start": a.start, "duration": a.duration, "pid": a.pid,
        "status": [s.raw, s.exitcode, s.signal, s.core, s.error], "rusage": a.rusage,
        "stdout": _b(a.stdout), "stderr": _b(a.stderr), "stdout_info": a.stdout_info,
        "stderr_info": a.stderr_info, "stdout_path": a.stdout_path,
        "stderr_path": a.stderr_path}
    for attr in ("stopped", "failure", "record_text", "job_record", "flux_id"):
        v = getattr(a, attr)
        if v is not None:
            d[attr] = v
    if a.gpus:
        d["gpus"] = a.gpus
    return d


def apply_result(a: Attempt, d: dict[str, Any]) -> None:
    """Copy what a worker reported onto the coordinator's attempt."""
    raw, code, sig, core, err = d["status"]
    a.status = ExitStatus(raw, code, sig, core, err)
    a.argv = d["argv"] or a.argv
    a.start, a.duration, a.pid = d["start"], d["duration"], d["pid"]
    a.rusage = d["rusage"]
    a.stdout, a.stderr = _unb(d["stdout"]), _unb(d["stderr"])
    a.stdout_info = tuple(d["stdout_info"])  # type: ignore[assignment]
    a.stderr_info = tuple(d["stderr_info"])  # type: ignore[assignment]
    a.stdout_path, a.stderr_path = d["stdout_path"], d["stderr_path"]
    # a stop the coordinator decided stands even when the worker did not see it
    a.stopped = a.stopped or d.get("stopped")
    a.failure = d.get("failure")
    a.record_text = d.get("record_text")
    a.job_record = d.get("job_record")
    a.flux_id = a.flux_id or d.get("flux_id")
    a.gpus = d.get("gpus", [])
