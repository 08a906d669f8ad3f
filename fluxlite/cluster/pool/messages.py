"""The messages between the pool's coordinator, its workers and their guards, over Flux RPCs.

The coordinator registers the service ``SERVICE`` on its broker; each worker registers
``SERVICE-w<N>`` on its own, and each worker's guard ``SERVICE-g<N>``. Topics and payloads
(JSON, many tasks or results a message):

- ``SERVICE.hello`` (worker → coordinator): ``{worker, rank, host, pid, guard, memory_mb}``;
  answered with the worker's share of its node: ``{slots, gpus, memory_mb}``.
- ``SERVICE.want`` (worker → coordinator): ``{worker, results: [...], starved}``: the
  results the worker has gathered, and a request for more work (``starved``: the seconds
  it has spent so far with free slots and nothing to start, waiting for the answer to a
  'want' that brought tasks). Answered with ``{tasks: [...]}`` as soon as there is work
  that fits what the coordinator gives that worker (its slots, and a bounded queue beyond
  them: see ``coordinator``), or ``{stop: true}`` at the end; held until then (one per
  worker).
- ``SERVICE.done`` (worker → coordinator): ``{worker, results: [...]}``, answered at once;
  sent only while a ``want`` is held, one in flight per worker.

  A worker sends its results in batches: when a third of what it was given has ended,
  when nothing it holds waits to start any more, or ``FLUSH_AFTER`` after the first one;
  so a busy worker's results and its next tasks travel in one round trip.
- ``SERVICE.gone`` (guard or worker → coordinator): ``{worker, by, why, killed: [...],
  queued: [...]}``: the worker is gone and every process of its attempts was killed (by
  its guard, or by the worker itself when it lost its guard); ``killed`` says what is known
  of each attempt that ran, ``queued`` names the attempts that waited on the worker and
  never started.
- ``SERVICE-w<N>.signal`` (coordinator → worker): ``{signum, reason}`` for every task the
  worker runs, and for those that reach it later.
- ``SERVICE-w<N>.ping`` (coordinator → worker): liveness; a worker that is gone answers
  with an error at once (its service went with its connection).
- ``SERVICE-w<N>.hold`` (coordinator → worker): ``{reason}``: start nothing more of what
  waits on the worker; it comes back as not started (``--fail-fast``).
- ``SERVICE-w<N>.give`` (coordinator → worker): ``{count}``: give back up to ``count`` of
  the attempts that wait on the worker (the last given first), for a worker with free
  slots; answered with their keys, ``{keys: [...]}``: they never started there.
- ``SERVICE-w<N>.stop`` (coordinator → worker): kill what runs, clean up, exit.
- ``SERVICE-g<N>.kill`` (coordinator → guard): kill the worker and every process below it,
  answered with ``{worker, by, why, killed}`` once none is left.

Every request is sealed: a MAC (HMAC-SHA256 with the pool's secret, over the topic and the
JSON) then the JSON. The secret reaches the workers through the KVS, under a key removed
once every worker has it, before any task starts: it is in no argv and no environment a
task sees. A request that is not sealed with it, not JSON, or whose fields are not of their
types and ranges raises :class:`BadMessage`; the receiver logs one line and drops it.

Bytes (task output) travel as latin-1 text: every byte is one character, no escapes for
the ASCII that task output mostly is.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import math
import signal

import orjson

from fluxlite.cluster.formats import Task
from fluxlite.cluster.attempt import Attempt
from fluxlite.errors import FluxliteError
from fluxlite.execute.base import ExitStatus

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

HELLO, WANT, DONE, GONE = "hello", "want", "done", "gone"
SIGNAL, PING, STOP, KILL, HOLD, GIVE = "signal", "ping", "stop", "kill", "hold", "give"

#: seconds a worker keeps a result before it sends it, when it still has work waiting
FLUSH_AFTER = 0.1

_MAC = 64  # hex digits of a SHA-256 MAC
_INT_MAX = 2**63 - 1
_TEXT_MAX = 1 << 30  # a captured tail, a record: bounded by stdio_bytes, far below this


class BadMessage(FluxliteError):
    """A message that is not the pool's, or not well formed: dropped."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why

    def __str__(self) -> str:
        return self.why


class Seal:
    """Seals and opens the pool's requests with its secret (the module's doc)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise BadMessage("the pool's secret is too short")
        self._key = secret

    def _mac(self, topic: str, body: bytes) -> bytes:
        return hmac.new(self._key, topic.encode() + b"\0" + body,
                        hashlib.sha256).hexdigest().encode()

    def seal(self, topic: str, doc: dict[str, Any]) -> bytes:
        """A request's payload: its MAC, then its JSON."""
        body = orjson.dumps(doc)
        return self._mac(topic, body) + body

    def open(self, topic: str, payload: str | bytes | None) -> dict[str, Any]:
        """The JSON object a sealed payload holds; BadMessage unless the MAC is the pool's."""
        raw = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else (
            payload or b"")
        mac, body = raw[:_MAC], raw[_MAC:]
        if len(mac) < _MAC or not hmac.compare_digest(mac, self._mac(topic, body)):
            raise BadMessage("not sealed with the pool's secret")
        return loads(body)


def payload(msg: Any) -> str | None:
    """A received message's payload as text; BadMessage when it is not UTF-8."""
    try:
        return msg.payload_str
    except (UnicodeDecodeError, OSError) as err:
        raise BadMessage("a payload that is not UTF-8 text") from err


_libc: Any = None


def route(msg: Any) -> list[str]:
    """The hops a request came through as Flux records them (uuids cut to 8 characters:
    the sender's connection first, then each broker on the way, this one last); [] when
    they cannot be read."""
    global _libc
    try:
        import ctypes

        from _flux._core import ffi, lib  # type: ignore[import-not-found]

        p = lib.flux_msg_route_string(msg.handle)
        if p == ffi.NULL:
            return []
        try:
            return ffi.string(p).decode("ascii", "replace").split("!")
        finally:
            if _libc is None:
                _libc = ctypes.CDLL(None)
            _libc.free(ctypes.c_void_p(int(ffi.cast("uintptr_t", p))))
    except (ImportError, AttributeError, OSError):
        return []


#: what a handler's checks raise; the last three only if a check missed something
MALFORMED = (BadMessage, KeyError, TypeError, ValueError)


def as_bad(err: Exception) -> BadMessage:
    """A handler's error as the BadMessage it stands for."""
    return err if isinstance(err, BadMessage) else BadMessage(
        f"{type(err).__name__}: {str(err)[:80]}")


def refuse(h: Any, msg: Any, err: BadMessage) -> None:
    """Answer a bad request with an error (EPROTO), so that its sender does not wait."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        h.flux_respond_error(msg.handle, errno.EPROTO, str(err)[:200].encode())


def secret_key(service: str) -> str:
    """The KVS key that holds the pool's secret while its workers start."""
    return f"fluxlite.pool.{service.replace('.', '_')}"


def dumps(doc: dict[str, Any]) -> bytes:
    """A message's payload (answers: they go back only to who asked)."""
    return orjson.dumps(doc)


def loads(text: str | bytes | None) -> dict[str, Any]:
    """A payload's JSON object; BadMessage for anything else."""
    try:
        doc = orjson.loads(text or b"")
    except orjson.JSONDecodeError as err:
        raise BadMessage(f"not JSON: {str(err).splitlines()[0][:80]}") from err
    if not isinstance(doc, dict):
        raise BadMessage(f"not a JSON object but {type(doc).__name__}")
    return doc


# -- fields ------------------------------------------------------------------------------
def _int(doc: dict[str, Any], name: str, lo: int = 0, hi: int = _INT_MAX) -> int:
    v = doc.get(name)
    if type(v) is not int or not lo <= v <= hi:
        raise BadMessage(f"{name}: not an integer in [{lo}, {hi}]: {_show(v)}")
    return v


def _num(doc: dict[str, Any], name: str, lo: float = 0.0, hi: float = 1e12) -> float:
    v = doc.get(name)
    if type(v) not in (int, float) or not math.isfinite(v) or not lo <= v <= hi:
        raise BadMessage(f"{name}: not a number in [{lo:g}, {hi:g}]: {_show(v)}")
    return float(v)


def _str(doc: dict[str, Any], name: str, limit: int = 4096, optional: bool = False
         ) -> str | None:
    v = doc.get(name)
    if v is None and optional:
        return None
    if not isinstance(v, str) or len(v) > limit:
        raise BadMessage(f"{name}: not a string of at most {limit} characters: {_show(v)}")
    return v


def _strs(v: Any, name: str, limit: int = 1 << 16) -> list[str]:
    if not isinstance(v, list) or len(v) > limit or not all(isinstance(x, str) for x in v):
        raise BadMessage(f"{name}: not a list of strings: {_show(v)}")
    return v


def _pairs(v: Any, name: str) -> list[tuple[str, str]]:
    if not isinstance(v, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
            for p in v):
        raise BadMessage(f"{name}: not a list of [name, path] pairs: {_show(v)}")
    return [(p[0], p[1]) for p in v]


def _known(doc: dict[str, Any], fields: frozenset[str], what: str) -> None:
    extra = set(doc) - fields
    if extra:
        raise BadMessage(f"{what}: unknown field {_show(sorted(extra)[0])}")


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def worker_of(doc: dict[str, Any], workers: int) -> int:
    """The worker index a message names, in [0, workers)."""
    return _int(doc, "worker", 0, max(0, workers - 1))


_HELLO = frozenset({"worker", "rank", "host", "pid", "guard", "memory_mb"})


def check_hello(doc: dict[str, Any], workers: int) -> dict[str, Any]:
    """A worker's hello, its fields checked."""
    _known(doc, _HELLO, "hello")
    worker_of(doc, workers)
    _int(doc, "rank", 0, 1 << 31)
    _str(doc, "host", 255)
    _int(doc, "pid", 1, 1 << 31)
    _int(doc, "guard", 1, 1 << 31)
    _int(doc, "memory_mb", 0, 1 << 40)
    return doc


def check_reports(doc: dict[str, Any], fields: frozenset[str], what: str,
                  workers: int) -> list[dict[str, Any]]:
    """The results a 'want' or 'done' carries, each checked."""
    _known(doc, fields, what)
    worker_of(doc, workers)
    if "starved" in doc:
        _num(doc, "starved", 0.0, 1e9)
    results = doc.get("results", [])
    if not isinstance(results, list):
        raise BadMessage(f"results: not a list: {_show(results)}")
    return [check_result(r) for r in results]


WANT_FIELDS = frozenset({"worker", "results", "starved"})
DONE_FIELDS = frozenset({"worker", "results"})
_GONE = frozenset({"worker", "by", "why", "killed", "left", "queued"})


def check_gone(doc: dict[str, Any], workers: int) -> dict[str, Any]:
    """A guard's (or a worker's) word that a worker is gone and what it killed."""
    _known(doc, _GONE, "gone")
    worker_of(doc, workers)
    if doc.get("by") not in ("guard", "worker"):
        raise BadMessage(f"by: neither 'guard' nor 'worker': {_show(doc.get('by'))}")
    _str(doc, "why", 500)
    _int(doc, "left", 0, 1 << 31)
    killed = doc.get("killed")
    if not isinstance(killed, list) or len(killed) > 1 << 20:
        raise BadMessage(f"killed: not a list: {_show(killed)}")
    for k in killed:
        if not isinstance(k, dict):
            raise BadMessage(f"killed: not an object: {_show(k)}")
        _known(k, frozenset({"key", "pid", "start", "end"}), "killed")
        _int(k, "key", 1)
        _int(k, "pid", 0, 1 << 31)
        _num(k, "start", 0.0, 1e11)
        _num(k, "end", 0.0, 1e11)
    keys(doc.get("queued", []), "queued")
    return doc


def keys(v: Any, name: str) -> list[int]:
    """A list of attempt keys."""
    if not isinstance(v, list) or len(v) > 1 << 20 or not all(
            type(k) is int and 1 <= k <= _INT_MAX for k in v):
        raise BadMessage(f"{name}: not a list of attempt keys: {_show(v)}")
    return v


def check_give(doc: dict[str, Any]) -> int:
    """A give request's count."""
    _known(doc, frozenset({"count"}), "give")
    return _int(doc, "count", 1, 1 << 20)


def check_given(doc: dict[str, Any]) -> list[int]:
    """The keys a worker gave back."""
    _known(doc, frozenset({"keys"}), "given")
    return keys(doc.get("keys"), "keys")


def check_kill(doc: dict[str, Any], index: int) -> str:
    """A kill request to the guard of worker ``index``: why the coordinator gave up."""
    _known(doc, frozenset({"worker", "why"}), "kill")
    if worker_of(doc, index + 1) != index:
        raise BadMessage(f"worker: not this guard's ({doc['worker']})")
    return _str(doc, "why", 500) or "the coordinator gave up on it"


def check_signal(doc: dict[str, Any]) -> tuple[int, str]:
    """A signal request's signal (one the system knows) and reason."""
    _known(doc, frozenset({"signum", "reason"}), "signal")
    signum = _int(doc, "signum", 1, 64)
    if signum not in {int(s) for s in signal.valid_signals()}:
        raise BadMessage(f"signum: not a signal: {signum}")
    return signum, _str(doc, "reason", 200, optional=True) or "stopped"


def check_hold(doc: dict[str, Any]) -> str:
    """A hold request's reason."""
    _known(doc, frozenset({"reason"}), "hold")
    return _str(doc, "reason", 200, optional=True) or "held"


def worker_service(service: str, worker: int) -> str:
    """The name of a worker's own service (what the coordinator asks it through)."""
    return f"{service}-w{worker}"


def guard_service(service: str, worker: int) -> str:
    """The name of a worker's guard's service."""
    return f"{service}-g{worker}"


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


_TASK = frozenset({"key", "id", "seq", "try", "cores", "gpus", "memory_mb", "argv", "command",
                   "pipe_forward", "file_forward", "job_doc"})


def decode_task(d: Any) -> tuple[int, Attempt]:
    """The worker's copy of an attempt (enough of its task to run it); BadMessage when a
    field is not of its type."""
    if not isinstance(d, dict):
        raise BadMessage(f"task: not an object: {_show(d)}")
    _known(d, _TASK, "task")
    argv = d.get("argv")
    t = Task(id=_str(d, "id") or "", seq=_int(d, "seq"),
             argv=None if argv is None else _strs(argv, "argv"),
             command=_str(d, "command", 1 << 20, optional=True),
             cores=_int(d, "cores", 1, 1 << 20), gpus=_int(d, "gpus", 0, 1 << 16),
             memory_mb=_int(d, "memory_mb", 0, 1 << 40),
             pipe_forward=_pairs(d.get("pipe_forward", []), "pipe_forward"),
             file_forward=_pairs(d.get("file_forward", []), "file_forward"))
    if t.argv is None and t.command is None and d.get("job_doc") is None:
        raise BadMessage("task: neither argv, command nor job_doc")
    if d.get("job_doc") is not None:
        from fluxlite.spec import JobSpec

        if not isinstance(d["job_doc"], dict):
            raise BadMessage(f"job_doc: not an object: {_show(d['job_doc'])}")
        t.job_doc = d["job_doc"]
        try:
            t.job = JobSpec.from_dict(t.job_doc, source=t.id)
        except FluxliteError as err:
            raise BadMessage(f"job_doc: {err}") from err
    return _int(d, "key", 1), Attempt(task=t, number=_int(d, "try", 1, 1 << 20))


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


_RESULT = frozenset({"key", "argv", "start", "duration", "pid", "status", "rusage", "stdout",
                     "stderr", "stdout_info", "stderr_info", "stdout_path", "stderr_path",
                     "stopped", "failure", "record_text", "job_record", "flux_id", "gpus"})


def check_result(r: Any) -> dict[str, Any]:
    """A reported result, its fields checked (:func:`apply_result` then trusts them)."""
    if not isinstance(r, dict):
        raise BadMessage(f"result: not an object: {_show(r)}")
    _known(r, _RESULT, "result")
    _int(r, "key", 1)
    _strs(r.get("argv"), "argv")
    _num(r, "start", 0.0, 1e11)
    _num(r, "duration", 0.0, 1e9)
    _int(r, "pid", 0, 1 << 31)
    st = r.get("status")
    if not (isinstance(st, list) and len(st) == 5 and _ok_status(st)):
        raise BadMessage(f"status: not [raw, exitcode, signal, core, error]: {_show(st)}")
    ru = r.get("rusage")
    if not isinstance(ru, dict) or not all(
            isinstance(k, str) and type(v) in (int, float) and math.isfinite(v)
            for k, v in ru.items()):
        raise BadMessage(f"rusage: not an object of numbers: {_show(ru)}")
    for name in ("stdout", "stderr"):
        _str(r, name, _TEXT_MAX, optional=True)
        info = r.get(f"{name}_info")
        if not (isinstance(info, list) and len(info) == 2 and isinstance(info[0], bool)
                and type(info[1]) is int and info[1] >= 0):
            raise BadMessage(f"{name}_info: not [truncated, size]: {_show(info)}")
        _str(r, f"{name}_path")
    for name in ("stopped", "failure", "flux_id"):
        _str(r, name, optional=True)
    _str(r, "record_text", _TEXT_MAX, optional=True)
    if r.get("job_record") is not None and not isinstance(r["job_record"], dict):
        raise BadMessage(f"job_record: not an object: {_show(r['job_record'])}")
    _strs(r.get("gpus", []), "gpus")
    return r


def _ok_status(st: list[Any]) -> bool:
    raw, code, sig, core, err = st
    return (type(raw) is int and -1 <= raw <= 0xFFFF
            and (code is None or (type(code) is int and 0 <= code <= 255))
            and (sig is None or (type(sig) is int and 0 < sig < 128))
            and isinstance(core, bool) and (err is None or isinstance(err, str)))


def apply_result(a: Attempt, d: dict[str, Any]) -> None:
    """Copy what a worker reported (checked by :func:`check_result`) onto the coordinator's
    attempt."""
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
