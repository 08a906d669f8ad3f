"""What a cluster writes: a compact kickstart record and a ``[cluster-task ...]`` line per
task attempt, one ``[cluster-summary ...]`` line, and the JSON record of the whole cluster.

Per-task records must be cheap (a cluster may run hundreds of tasks a second): the machine
section is left out (kickstart ``-H``), facts about the host and this process are gathered
once per cluster, the executable's stat is cached per path, and the task's resource usage is
the one ``wait4`` returned, never a scan of the process tree.
"""

from __future__ import annotations

import logging
import operator
import os
import resource
import time

from fluxlite.cluster.attempt import Attempt
from fluxlite.cluster.formats import Task
from fluxlite.execute.base import RUSAGE_FIELDS, ExitStatus, TaskResult, rusage_dict
from fluxlite.record import host, kickstart
from fluxlite.record.model import Identity, Record, StdioFile
from fluxlite.redact import text as redact_text

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)


# A record's own ``usage`` is the cluster process's (kickstart's is kickstart's), read at
# most this often (seconds); Pegasus reads only the task's (``mainjob``)
USAGE_EVERY = 0.1


class RecordWriter:
    """Formats attempts. What is the same for every attempt of the cluster (the site and
    workflow, the host's and this process's facts, the cwd, the stat of the tasks' stdin) is
    rendered once, the host lines once per host (a pool's), the executable's statinfo once
    per version of the file (:class:`StatCache`), this process's own usage at most every
    ``USAGE_EVERY`` seconds; an attempt adds only its own lines.
    :meth:`record` is the same record as a :class:`~fluxlite.record.model.Record`, which
    ``kickstart.render`` renders to the same text."""

    def __init__(self, site: str = "local", wf_label: str | None = None,
                 wf_stamp: str | None = None) -> None:
        self.site = site
        self.wf_label, self.wf_stamp = wf_label, wf_stamp
        self.process = host.process_info()
        self.hostname, self.hostaddr, self.interface = host.network()
        self.cwd = os.getcwd()
        self.exe_stats = StatCache()
        q = kickstart.q
        self._site = "".join((f"  resource: {q(site)}\n",
                              f"  wf-label: {q(wf_label)}\n" if wf_label else "",
                              f"  wf-stamp: {q(wf_stamp)}\n" if wf_stamp else ""))
        # the tasks' stdin is /dev/null, the same device node for the whole cluster
        self._stdin = (f"    stdin:\n      file_name: {q(os.devnull)}\n"
                       + kickstart.statinfo_text(3, host.stat_info(os.devnull) or {}))
        self._cwd = f"  cwd: {q(self.cwd) if self.cwd else chr(34) * 2}\n"
        self._hosts: dict[str, tuple[str, str]] = {}  # host -> (record lines, task line's)
        self._statuses: dict[tuple[Any, ...], str] = {}
        self._when = (-1.0, "")  # the last start and its text: a record and its task line
        self._usage = (-USAGE_EVERY, "")  # when this process's usage was read, its lines

    def _iso(self, t: float) -> str:
        if t != self._when[0]:
            self._when = (t, host.iso(t))
        return self._when[1]

    def _host(self, name: str) -> tuple[str, str]:
        hit = self._hosts.get(name)
        if hit is None:
            hit = (kickstart.host_text(self.interface, self.hostaddr, name, self.process),
                   f"hostname={_q(name)}")
            if len(self._hosts) < 4096:  # a pool's nodes; more are rendered each time
                self._hosts[name] = hit
        return hit

    def _status(self, s: ExitStatus) -> str:
        key = (s.raw, s.exitcode, s.signal, s.core, s.error)
        text = self._statuses.get(key)
        if text is None:
            text = kickstart.status_text(2, s)
            if len(self._statuses) < 256:
                self._statuses[key] = text
        return text

    def _own_usage(self) -> str:
        # getrusage costs this loaded process 10-30 µs: read at most every USAGE_EVERY
        now = time.monotonic()
        if now - self._usage[0] >= USAGE_EVERY:
            self._usage = (now, usage_lines(resource.getrusage(resource.RUSAGE_SELF)))
        return self._usage[1]

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
        q = kickstart.q
        t = a.task
        argv = a.argv or [t.app, *t.args]
        exe = argv[0]
        start = self._iso(a.start)
        dur = f"{a.duration:.3f}"
        status = a.status
        if a.pid == 0 and status.error is None and status.raw == -1:
            status = ExitStatus.failed_to_start(a.why or "task not run")
        parts = ["- invocation: True\n  version: 3.0\n  start: ", start, "\n  duration: ",
                 dur, "\n  transformation: ", q(t.name), "\n  derivation: ",
                 q(t.derivation or t.id), "\n", self._site, self._host(a.host or self.hostname)[0],
                 "  mainjob:\n    start: ", start, "\n    duration: ", dur, "\n    pid: ",
                 str(a.pid), "\n    usage:\n", kickstart.usage_text(3, a.rusage),
                 self._status(status), "    executable:\n      file_name: ",
                 q(exe) if exe else '""', "\n",
                 self.exe_stats.text(exe, a.start) if exe else "",
                 "    argument_vector:\n"]
        parts += [f"      - {q(x)}\n" for x in argv[1:]]
        parts.append("    procs:\n  jobids:\n")
        if a.flux_id:
            parts.append(f"    flux: {q(a.flux_id)}\n")
        if a.rank is not None:
            parts.append(f"    flux_rank: {q(str(a.rank))}\n")
        parts += [self._cwd, "  usage:\n",
                  self._own_usage(),
                  "  files:\n", self._stdin,
                  _stdio("stdout", a.stdout_path, a.stdout, a.stdout_info[0]),
                  _stdio("stderr", a.stderr_path, a.stderr, a.stderr_info[0])]
        # every URL written anywhere in the record (arguments, errors, output tails) redacted
        return _escape_quoted(redact_text("".join(parts)))

    def record(self, a: Attempt) -> Record:
        """The attempt's record as the provenance model (for an attempt without a record of
        its own): what :meth:`kickstart` renders, every fact gathered afresh."""
        t = a.task
        argv = a.argv or [t.app, *t.args]
        job = Identity(name=t.name, id=t.derivation or t.id, site=self.site,
                       wf_label=self.wf_label, wf_stamp=self.wf_stamp, argv=tuple(argv))
        rec = Record(job=job, start=a.start, duration=a.duration, hostname=a.host or
                     self.hostname, hostaddr=self.hostaddr, interface=self.interface,
                     process=self.process, compact=True, cwd=self.cwd)
        rec.executable = argv[0]
        rec.executable_stat = host.stat_info(argv[0]) if argv[0] else None
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
        return rec

    def task_line(self, a: Attempt, slot: str = "") -> str:
        """The attempt's ``[cluster-task ...]`` line."""
        t = a.task
        # id: the planner's task number when there is one (pegasus-monitord matches task
        # lines to the '#@ N' comments by it), else the task's own id
        parts = [f"id={_v(t.number or t.id)}", f"name={_q(t.name)}",
                 f"start={_q(self._iso(a.start))}",
                 # the raw wait status, as pegasus-mpi-cluster writes it (256 for exit 1, 15
                 # for SIGTERM): pegasus-monitord copies it into the task's raw status
                 f"duration={a.duration:.3f}", f"status={a.raw}"]
        if t.number and t.number != t.id:
            parts.append(f"task={_v(t.id)}")
        if t.line:
            parts.append(f"line={t.line}")
        parts += [f"try={a.number}", f"pid={a.pid}", f"app={_q(t.app)}",
                  self._host(a.host or self.hostname)[1], f"cpus={t.cores}",
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


class StatCache:
    """The statinfo lines of the executables tasks run, by path.

    What a record claims: the executable's statinfo as the file was at some moment between
    the attempt's start and the writing of its record. A stat taken at or after an
    attempt's start serves it, and every other attempt that had started by then (all those
    in flight); an attempt that started later gets a stat of its own, so a file replaced or
    changed before an attempt started is always seen in its record. A stat whose result is
    what the last one was keeps the lines rendered then."""

    def __init__(self, size: int = 1024) -> None:
        self.size = size
        self.stats = 0  # stat calls made
        self._entries: dict[str, tuple[float, tuple[Any, ...] | None, str]] = {}

    def text(self, path: str, since: float) -> str:
        """The statinfo lines (depth 3) of ``path`` from a stat taken at or after ``since``
        (epoch seconds); "" when it cannot be stat'ed."""
        hit = self._entries.get(path)
        if hit is not None and hit[0] >= since:
            return hit[2]
        taken = time.time()  # before the stat: the stat is no older than this
        self.stats += 1
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            key: tuple[Any, ...] | None = None
        else:
            key = (st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid,
                   st.st_size, st.st_blksize, st.st_blocks, st.st_mtime, st.st_atime,
                   st.st_ctime)
        if hit is not None and hit[1] == key:
            text = hit[2]
        else:
            text = "" if key is None else kickstart.statinfo_text(3, host.stat_dict(st))
        if hit is None and len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]  # the oldest path
        self._entries[path] = (taken, key, text)
        return text


_RUSAGE = operator.attrgetter(*("ru_oublock" if k == "outblock" else "ru_" + k
                                 for k in RUSAGE_FIELDS))


def usage_lines(ru: Any) -> str:
    """A ``struct_rusage`` as a record's top-level ``usage`` lines: what
    ``kickstart.usage_text(2, rusage_dict(ru))`` renders, without the dictionary."""
    v = _RUSAGE(ru)
    return kickstart.usage_template(2) % (round(v[0], 3), round(v[1], 3), *v[2:])


def _stdio(name: str, path: str, data: bytes | None, truncated: bool) -> str:
    """A captured stream's entry in ``files``: its temporary file (removed once read, so no
    statinfo) and its tail."""
    head = f"    {name}:\n      temporary_name: {kickstart.q(path)}\n"
    if data is None:
        return head
    if not data:
        return f"{head}      data_truncated: {'true' if truncated else 'false'}\n      data: \"\"\n"
    return (f"{head}      data_truncated: {'true' if truncated else 'false'}\n      data: "
            f"{kickstart.block_or_quoted(kickstart.decode(_guard(data) or b''), '        ')}\n")


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
