"""What a cluster writes: a compact kickstart record and a ``[cluster-task ...]`` line per
task attempt, one ``[cluster-summary ...]`` line, and the JSON record of the whole cluster.

Per-task records must be cheap (a cluster may run hundreds of tasks a second): the machine
section is left out (kickstart ``-H``), facts about the host and this process are gathered
once per cluster, the executable's stat is cached per path, and the task's resource usage is
the one ``wait4`` returned, never a scan of the process tree.
"""

from __future__ import annotations

import functools
import logging
import os
import resource
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from fluxlite.cluster.formats import Task
from fluxlite.errors import EXIT_INFRA, SIGNAL_BASE
from fluxlite.execute.base import ExitStatus, TaskResult, rusage_dict
from fluxlite.record import host, kickstart
from fluxlite.record.model import Identity, Record, StdioFile
from fluxlite.redact import text as redact_text

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Attempt:
    """One try of one task, as an executor ran it."""

    task: Task
    number: int  # 1-based
    argv: list[str] = field(default_factory=list)
    start: float = 0.0  # epoch seconds
    duration: float = 0.0
    pid: int = 0
    status: ExitStatus = field(default_factory=lambda: ExitStatus(-1))
    rusage: dict[str, float] = field(default_factory=dict)
    stdout: bytes | None = None  # the embedded tails
    stderr: bytes | None = None
    stdout_info: tuple[bool, int] = (False, 0)  # (truncated, size)
    stderr_info: tuple[bool, int] = (False, 0)
    stdout_path: str = ""
    stderr_path: str = ""
    flux_id: str | None = None
    host: str = ""
    rank: int | None = None  # the Flux rank it ran on, when an executor knows it (pool)
    worker: str | None = None  # the pool worker that ran it
    queue_wait: float | None = None  # seconds from its hand-over to its start on a worker
    stopped: str | None = None  # why fluxlite stopped it: "time limit", "interrupted by SIGTERM"
    failure: str | None = None  # why an attempt whose process exited 0 still failed
    gpus: list[str] = field(default_factory=list)  # the GPU ids a local attempt was given
    record_text: str | None = None  # JSON job tasks: the record the job wrote itself
    job_record: dict[str, Any] | None = None  # JSON job tasks: their JSON record
    t0: float = 0.0  # monotonic start, for the executors

    @property
    def ok(self) -> bool:
        """The attempt did its work: it exited 0, on its own (a task that exits 0 after
        fluxlite sent it TERM was cut short, as ``fluxlite run`` counts it), and what it
        forwarded reached its destination."""
        return self.status.ok and self.stopped is None and self.failure is None

    @property
    def code(self) -> int:
        """The attempt's exit code as the cluster reports it."""
        if self.status.ok and self.stopped is not None:
            return SIGNAL_BASE + signal.SIGTERM  # stopped: work not done, whatever it exited with
        if self.status.ok and self.failure is not None:
            return EXIT_INFRA
        return self.status.code

    @property
    def raw(self) -> int:
        """The wait status the task lines report: the real one, or that of ``code``
        when fluxlite judged an attempt that exited 0 as not done."""
        if self.status.ok and not self.ok:
            return self.code << 8
        return self.status.raw

    @property
    def why(self) -> str | None:
        """Why the attempt did not count although the task exited 0, for the records."""
        if not self.status.ok or self.ok:
            return None
        if self.stopped is not None:
            return f"task stopped by SIGTERM ({self.stopped}); its work is not done"
        return self.failure


class RecordWriter:
    """Formats attempts; holds what is the same for every task of the cluster."""

    def __init__(self, site: str = "local", wf_label: str | None = None,
                 wf_stamp: str | None = None) -> None:
        self.site = site
        self.wf_label, self.wf_stamp = wf_label, wf_stamp
        self.process = host.process_info()
        self.hostname, self.hostaddr, self.interface = host.network()

    def kickstart(self, a: Attempt) -> str:
        """The attempt's kickstart record: the task's own, or one rendered from the attempt."""
        if a.record_text is None and _is_record(a):
            # the task is a kickstart wrapper (as Pegasus's planner writes clustered lines):
            # its own record, with the real transformation and output checksums, is what
            # Pegasus must see, as pegasus-cluster would pass it through
            a.record_text = kickstart.decode(_guard(a.stdout) or b"")
        if a.record_text is not None:
            # a record written by the task or its job: its strings and blocks alike
            text = a.record_text if a.record_text.endswith("\n") else a.record_text + "\n"
            return _guard_text(text)
        t = a.task
        argv = a.argv or [t.app, *t.args]
        job = Identity(name=t.name, id=t.derivation or t.id, site=self.site,
                       wf_label=self.wf_label, wf_stamp=self.wf_stamp, argv=tuple(argv))
        rec = Record(job=job, start=a.start, duration=a.duration, hostname=a.host or
                     self.hostname, hostaddr=self.hostaddr, interface=self.interface,
                     process=self.process, compact=True, cwd=_cwd())
        rec.executable = argv[0]
        rec.executable_stat = _exe_stat(argv[0])
        rec.task = TaskResult(argv=argv, cwd=rec.cwd, start=a.start, duration=a.duration,
                              pid=a.pid, status=a.status, rusage=a.rusage)
        rec.self_usage = rusage_dict(resource.getrusage(resource.RUSAGE_SELF))
        rec.exit_code = a.code
        if a.flux_id:
            rec.jobids["flux"] = a.flux_id
        if a.rank is not None:
            rec.jobids["flux_rank"] = str(a.rank)
        if a.status.error is not None:
            rec.error = a.status.error
        elif a.why is not None:
            rec.error = a.why
        rec.stdio = [StdioFile("stdin", os.devnull),
                     StdioFile("stdout", a.stdout_path, _guard(a.stdout),
                               a.stdout_info[0], a.stdout_info[1]),
                     StdioFile("stderr", a.stderr_path, _guard(a.stderr),
                               a.stderr_info[0], a.stderr_info[1])]
        return _escape_quoted(kickstart.render(rec))

    def task_line(self, a: Attempt, slot: str = "") -> str:
        """The attempt's ``[cluster-task ...]`` line."""
        t = a.task
        # id: the planner's task number when there is one (pegasus-monitord matches task
        # lines to the '#@ N' comments by it), else the task's own id
        parts = [f"id={_v(t.number or t.id)}", f"name={_q(t.name)}",
                 f"start={_q(host.iso(a.start))}",
                 # the raw wait status, as pegasus-mpi-cluster writes it (256 for exit 1, 15
                 # for SIGTERM): pegasus-monitord copies it into the task's raw status
                 f"duration={a.duration:.3f}", f"status={a.raw}"]
        if t.number and t.number != t.id:
            parts.append(f"task={_v(t.id)}")
        if t.line:
            parts.append(f"line={t.line}")
        parts += [f"try={a.number}", f"pid={a.pid}", f"app={_q(t.app)}",
                  f"hostname={_q(a.host or self.hostname)}", f"cpus={t.cores}",
                  *key_values(("gpus", t.gpus), ("memory", t.memory_mb),
                              ("flux_id", a.flux_id and _q(a.flux_id)))]
        if a.rank is not None:
            parts.append(f"rank={a.rank}")
        parts += key_values(("stopped", a.stopped and _q(a.stopped)),
                            ("error", a.failure and _q(a.failure)))
        return "[cluster-task " + ", ".join(parts) + "]\n"

    def not_run_line(self, t: Task, reason: str) -> str:
        """A task that never ran this time, and why. Pegasus's parsers know no such line:
        they pass over it (it is neither a task, a summary nor a record)."""
        parts = [f"id={_v(t.number or t.id)}"]
        if t.number and t.number != t.id:
            parts.append(f"task={_v(t.id)}")
        if t.line:
            parts.append(f"line={t.line}")
        parts.append(f"reason={_q(reason)}")
        return "[cluster-not-run " + ", ".join(parts) + "]\n"


def key_values(*pairs: tuple[str, Any]) -> list[str]:
    """``key=value`` for each pair whose value is set (not None, 0 or empty)."""
    return [f"{k}={v}" for k, v in pairs if v]


def summary_line(summary: dict[str, Any]) -> str:
    """The ``[cluster-summary ...]`` line of a whole cluster."""
    parts = []
    for k, v in summary.items():
        if isinstance(v, float):
            parts.append(f"{k}={v:.3f}")
        elif isinstance(v, int):
            parts.append(f"{k}={v}")
        else:
            parts.append(f"{k}={_q(str(v))}")
    return "[cluster-summary " + ", ".join(parts) + "]\n"


def attempt_dict(a: Attempt) -> dict[str, Any]:
    """An attempt as a JSON-ready dictionary (the cluster's JSON record)."""
    s = a.status
    d: dict[str, Any] = {
        "try": a.number, "start": host.iso(a.start), "start_epoch": a.start,
        "duration": round(a.duration, 6), "exit_code": a.code, "raw": s.raw,
        "signal": s.signal, "error": s.error or a.why, "pid": a.pid, "host": a.host or None,
        "flux_id": a.flux_id, "stopped": a.stopped, "rusage": a.rusage,
        "stdout_bytes": a.stdout_info[1], "stderr_bytes": a.stderr_info[1]}
    if a.rank is not None:
        d["rank"], d["worker"] = a.rank, a.worker
        d["queue_wait"] = None if a.queue_wait is None else round(a.queue_wait, 6)
        d["run_time"] = d["duration"]
    if a.job_record is not None:
        d["job_record"] = a.job_record
    return d


@functools.lru_cache(maxsize=1)
def _cwd() -> str:
    return os.getcwd()


_exe_cache: dict[str, tuple[float, dict[str, Any] | None]] = {}


def _exe_stat(path: str) -> dict[str, Any] | None:
    # one stat per executable per second, not one per task: a cluster runs the same few
    # programs thousands of times
    now = time.monotonic()
    hit = _exe_cache.get(path)
    if hit is not None and now - hit[0] < 1.0:
        return hit[1]
    st = host.stat_info(path)
    _exe_cache[path] = (now, st)
    return st


def _is_record(a: Attempt) -> bool:
    """The task's whole stdout is one kickstart record (a kickstart wrapper's): exactly one
    record start, so that a task cannot pass off records for tasks that never ran."""
    data = a.stdout
    if not data or a.stdout_info[0]:
        return False
    data = data.lstrip()
    return data.startswith(b"- invocation: True") and b"\n- invocation:" not in data


def _guard(data: bytes | None) -> bytes | None:
    """Keep task output from being taken for this cluster's own summary: Pegasus's exitcode
    tool reads the first ``[cluster-summary`` in the file, and a task that is itself a
    cluster prints one."""
    if data and (b"[cluster-" in data or b"[seqexec-" in data):
        return data.replace(b"[cluster-", b"(cluster-").replace(b"[seqexec-", b"(seqexec-")
    return data


def _guard_text(text: str) -> str:
    if "[cluster-" in text or "[seqexec-" in text:
        return text.replace("[cluster-", "(cluster-").replace("[seqexec-", "(seqexec-")
    return text


def _escape_quoted(text: str) -> str:
    """A record this cluster rendered holds strings only as YAML double-quoted scalars
    (task output went through ``_guard`` before): there ``\\x5b`` is a ``[`` to a YAML
    reader, and no ``[cluster-summary`` or ``[cluster-task`` for Pegasus's tools, which
    search the raw text. The task's argv, paths and names stay exact."""
    if "[cluster-" in text or "[seqexec-" in text:
        return text.replace("[cluster-", "\\x5bcluster-").replace(
            "[seqexec-", "\\x5bseqexec-")
    return text


# Pegasus reads '[cluster-task k=v, k="v"]' lines with regular expressions and no escapes:
# a '"' ends a value, a ']' the line, an '=' inside a value makes a key of what precedes
# it, '- invocation:' or '<invocation' make the line an unparseable record, '[cluster-' a
# line of another kind, and a control character a line break. Those are written as %XX
# (UTF-8 bytes), and so is '%' itself.
_Q_TABLE = {ord(c): "".join(f"%{b:02X}" for b in c.encode()) for c in
            '%"[]=<\x7f\x85\u2028\u2029' + "".join(map(chr, range(32)))}


def _q(s: str) -> str:
    s = redact_text(s).translate(_Q_TABLE)  # a URL's credentials never reach a task line
    if "- invocation:" in s:
        s = s.replace("- invocation:", "-%20invocation:")
    return '"' + s + '"'


def _v(s: str) -> str:
    if s and all(c.isalnum() or c in "_.-:+@" for c in s):
        return s
    return _q(s)
