"""Find record files and read them into attempts.

Reads fluxlite's JSON records of jobs (``fluxlite_record``) and of clusters
(``fluxlite_cluster``), and kickstart YAML: a single record, a job's output with its
pegasus-multipart sections, or a cluster's output (records, ``[cluster-task ...]`` lines
and the ``[cluster-summary ...]`` line), as fluxlite, pegasus-kickstart, pegasus-cluster and
pegasus-mpi-cluster write them.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
import yaml

from fluxlite.errors import EXIT_CANNOT_EXEC, EXIT_INFRA, SIGNAL_BASE, NoRecords
from fluxlite.record import yamlload
from fluxlite.record.multipart import SEPARATOR as MULTIPART
from fluxlite.stats.model import EXIT, INFRA, OK, SIGNAL, TIMEOUT, Attempt, epoch_of, merge, ms_key

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)

_SNIFF = 1 << 16
# The most read of one file (docs/stats.md): a larger file is skipped, saying so, rather than
# read into memory (a cluster's output of 100,000 kickstart records is about 450 MB).
MAX_FILE_BYTES = 512 << 20
_GLOB_CHARS = re.compile(r"[*?\[]")
_LINE_FIELD = re.compile(r'(\w+)=("[^"]*"|[^,\]]*)')


class NotARecord(Exception):  # noqa: N818 - a reason to skip a file, never shown as an error
    """A file that holds no record; the message says why, in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Collection:
    """Every attempt read, each once, and what could not be read."""

    attempts: dict[tuple[Any, ...], Attempt] = field(default_factory=dict)
    clusters: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)
    files: int = 0  # files that held at least one record
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def add(self, a: Attempt) -> None:
        """Add an attempt; one already read under the same key is merged with it."""
        old = self.attempts.get(a.key)
        self.attempts[a.key] = a if old is None else merge(old, a)

    def add_cluster(self, cid: tuple[Any, ...], summary: dict[str, Any]) -> None:
        """Add a cluster's summary (the first read of it is kept); ValueError when its
        ``not_run`` count is not a count."""
        not_run = summary.get("not_run")
        if not_run is not None and not (_is_int(not_run) and 0 <= not_run < _INT_LIMIT):
            raise ValueError(f"not_run is not a count: {_short(not_run)}")
        self.clusters.setdefault(cid, summary)

    def skip(self, path: str, reason: str) -> None:
        """Note a file that could not be read, and why."""
        self.skipped.append((path, reason))


# -- what a record may say --------------------------------------------------------------------
# A field outside these bounds, or of another type, makes its record skipped with one line:
# every figure computed from the records is then finite and fits the output formats.
_INT_LIMIT = 1 << 63  # what JSON readers (and orjson) take as an integer
MAX_EPOCH = 32503680000.0  # 3000-01-01: a start or end beyond is no real record's
MAX_SECONDS = 1e9  # about 31 years: longer than any attempt, phase or transfer
_BAD_FIELD = (KeyError, TypeError, ValueError, AttributeError, OverflowError, IndexError)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_secs(name: str, v: Any, low: float = 0.0, high: float = MAX_SECONDS) -> None:
    if v is None:
        return
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not low <= v <= high:
        raise ValueError(f"{name} out of range: {_short(v)}")  # NaN fails the comparison


def checked(a: Attempt) -> Attempt:
    """The attempt, when every field is of its type and within its bounds; else ValueError
    naming the first that is not."""
    _check_secs("start", a.start, 0.0, MAX_EPOCH)
    for name in ("duration", "runtime", "utime", "stime", "secs_in", "secs_out",
                 "integrity_s"):
        _check_secs(name, getattr(a, name))
    _check_secs("end", a.end, 0.0, MAX_EPOCH)
    for name in ("exit_code", "signal", "maxrss_kb", "cores", "try_no", "bytes_in",
                 "bytes_out"):
        v = getattr(a, name)
        if v is not None and not (_is_int(v) and -_INT_LIMIT <= v < _INT_LIMIT):
            raise ValueError(f"{name} is not an integer in range: {_short(v)}")
    for name in ("name", "task_id", "source", "host", "reason"):
        v = getattr(a, name)
        if v is None:
            continue
        if not isinstance(v, str):
            raise ValueError(f"{name} is not a string: {_short(v)}")
        if not v.isascii():  # a lone surrogate (an undecodable byte) cannot be UTF-8 output
            setattr(a, name, v.encode("utf-8", "backslashreplace").decode("utf-8"))
    for ph in a.phases:
        if not isinstance(ph[0], str):
            raise ValueError(f"phase name is not a string: {_short(ph[0])}")
        _check_secs(f"{ph[0]} start", ph[1], 0.0, MAX_EPOCH)
        _check_secs(f"{ph[0]} duration", ph[2])
    hash((a.key, a.task))  # TypeError when a record put a list or a mapping in them
    return a


# -- finding files ---------------------------------------------------------------------------
def expand(paths: list[str], col: Collection) -> Iterator[str]:
    """Files named, found under directories (recursively) and matched by globs; each real
    file once. Links to directories are not followed inside a directory or a ``**`` (a
    link to ``.`` would make the walk endless); a directory that cannot be read is noted."""
    seen: set[tuple[int, int]] = set()

    def once(p: str) -> bool:
        try:
            st = os.stat(p)
        except OSError:
            return False
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            return False
        seen.add(ident)
        return True

    for arg in paths:
        if os.path.isdir(arg):
            for p in _walk(arg, col):
                if os.path.isfile(p) and once(p):
                    yield p
        elif os.path.exists(arg):
            if not os.path.isfile(arg):  # a FIFO or a device: reading could block or never end
                col.skip(arg, "not a regular file")
            elif once(arg):
                yield arg
        elif _GLOB_CHARS.search(arg):
            matches = _glob(arg, col)
            if not matches:
                col.skip(arg, "no file matches")
            for m in matches:
                if os.path.isdir(m):
                    yield from expand([m], col)
                elif os.path.isfile(m) and once(m):
                    yield m
        else:
            col.skip(arg, "no such file or directory")


def _walk(top: str, col: Collection, with_dirs: bool = False) -> Iterator[str]:
    """Every file (and directory) under ``top``, sorted, without following links to
    directories (a link to a file is a file)."""
    def unreadable(err: OSError) -> None:
        col.skip(err.filename or top, f"cannot read the directory: {err.strerror}")

    for root, dirs, files in os.walk(top, onerror=unreadable):
        dirs.sort()
        for name in sorted(files + (dirs if with_dirs else [])):
            yield os.path.join(root, name)


def _glob(pattern: str, col: Collection) -> list[str]:
    """glob's matches; a ``**`` walks the directory itself (glob's would follow links to
    directories without end)."""
    if "**" not in pattern:
        return sorted(glob.glob(pattern))
    parts = pattern.split(os.sep)
    fixed = next(i for i, part in enumerate(parts) if _GLOB_CHARS.search(part))
    top = os.sep.join(parts[:fixed]) or (os.sep if pattern.startswith(os.sep) else ".")
    out: list[str] = []
    if not os.path.isdir(top):
        return out
    for path in _walk(top, col, with_dirs=True):
        if _matches(os.path.relpath(path, top).split(os.sep), parts[fixed:]):
            out.append(path if fixed else os.path.relpath(path))
    return sorted(out)


def _matches(names: list[str], parts: list[str]) -> bool:
    """Whether path components match pattern components as glob's do: ``**`` any number of
    them, a wildcard no name that starts with a dot."""
    if not parts:
        return not names
    part = parts[0]
    if part == "**":
        return _matches(names, parts[1:]) or bool(
            names and not names[0].startswith(".") and _matches(names[1:], parts))
    if not names or (names[0].startswith(".") and not part.startswith(".")):
        return False
    return fnmatch.fnmatchcase(names[0], part) and _matches(names[1:], parts[1:])


def read_paths(paths: list[str]) -> Collection:
    """Read every record found in files, directories and globs."""
    col = Collection()
    for p in expand(paths, col):
        read_file(p, col)
    return col


def read_file(path: str, col: Collection) -> None:
    """Read the records of one file into ``col`` (a file that holds none is noted as skipped)."""
    too_big = f"larger than {MAX_FILE_BYTES >> 20} MiB, the most read of one file"
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size > MAX_FILE_BYTES:
                col.skip(path, too_big)
                return
            head = fh.read(_SNIFF)
            kind = _sniff(head)
            data = _read_rest(fh, head) if kind else b""
    except OSError as err:
        col.skip(path, f"cannot read: {err.strerror}")
        return
    if len(data) > MAX_FILE_BYTES:  # it grew while being read
        col.skip(path, too_big)
        return
    try:
        if kind is None:
            raise NotARecord("empty file" if not head.strip() else "not a record")
        n = _read_json(path, data, col) if kind == "json" else _read_yaml(path, data, col)
    except NotARecord as why:
        col.skip(path, why.reason)
        return
    if n:
        col.files += 1


def _read_rest(fh: Any, head: bytes) -> bytes:
    """The file from its head on, stopping past MAX_FILE_BYTES (a file that grows while it
    is read); one read of a size would reserve that much memory at once."""
    chunks = [head]
    size = len(head)
    while size <= MAX_FILE_BYTES:
        chunk = fh.read(1 << 24)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _sniff(head: bytes) -> str | None:
    start = head.lstrip()[:1]
    if start == b"{":
        return "json"
    if b"- invocation:" in head or b"[cluster-task " in head:
        return "yaml"
    return None


# -- JSON records ----------------------------------------------------------------------------
def _read_json(path: str, data: bytes, col: Collection) -> int:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise NotARecord(f"malformed JSON: {err}") from None
    if not isinstance(doc, dict):
        raise NotARecord("not a record")
    if doc.get("fluxlite_record"):
        try:
            col.add(checked(from_run(doc, path)))
        except _BAD_FIELD as err:
            raise NotARecord(f"not a fluxlite record ({type(err).__name__}: {err})") from None
        return 1
    if doc.get("fluxlite_cluster"):
        return _read_cluster(doc, path, col)
    raise NotARecord("JSON that is not a fluxlite record (no fluxlite_record or "
                     "fluxlite_cluster)")


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _kb(usage: dict[str, Any]) -> int | None:
    v = _num(usage.get("maxrss"))
    return None if v is None else int(v)


def _cause(code: int | None, sig: int | None, timed_out: bool, infra: bool) -> str:
    if code == 0 and not infra:
        return OK
    if timed_out:
        return TIMEOUT
    if infra:
        return INFRA
    if sig is not None or (code is not None and code > SIGNAL_BASE):
        return SIGNAL
    return EXIT


def from_run(doc: dict[str, Any], source: str) -> Attempt:
    """An attempt from the JSON record of one job (``fluxlite run``, ``fluxlite kickstart``,
    a task of a JSON job list)."""
    job = doc.get("job") or {}
    wf = job.get("workflow") or {}
    task = doc.get("task")
    start = float(doc["start_epoch"])
    if task:
        st = task.get("status") or {}
        t_start = epoch_of(task.get("start")) or start
        key = _key(int(task.get("pid") or 0), t_start, job.get("id"))
        runtime = _num(task.get("duration"))
        ru = task.get("rusage") or {}
        sig = st.get("signal")
        timed_out = bool(task.get("timed_out"))
    else:
        key = _key(0, start, job.get("id"))
        runtime, ru, sig, timed_out = None, {}, None, False
    code = doc.get("exit_code")
    phase = doc.get("failed_phase")
    infra = phase not in (None, "task") or (code == EXIT_INFRA and phase != "task")
    phases = [(p["name"], float(p["start"]), float(p["duration"])) for p in doc.get("phases")
              or () if p.get("name") in ("stage-in", "task", "stage-out")]
    name = job.get("name") or os.path.basename(str((task or {}).get("executable") or "?"))
    a = Attempt(key=key, task=_job_task(wf, job.get("id"), key), task_id=job.get("id") or "",
                name=name, source=source, start=start, duration=float(doc.get("duration") or 0),
                rich=2, host=(doc.get("host") or {}).get("hostname") or None, runtime=runtime,
                exit_code=code, signal=sig, cause=_cause(code, sig, timed_out, infra),
                reason=doc.get("error"), utime=_num(ru.get("utime")), stime=_num(ru.get("stime")),
                maxrss_kb=_kb(ru),
                phases=phases)
    _stage(a, "in", doc.get("stage_in") or ())
    _stage(a, "out", doc.get("stage_out") or ())
    integ = sum(float(v.get("duration") or 0) for v in doc.get("integrity") or ())
    integ += sum(float(o.get("checksum_timing") or 0) for o in doc.get("outputs") or ())
    a.integrity_s = integ
    return a


def _stage(a: Attempt, direction: str, stages: Any) -> None:
    n = sum(int(s.get("bytes") or 0) for s in stages)
    secs = sum(float(s.get("duration") or 0) for s in stages)
    if direction == "in":
        a.bytes_in, a.secs_in = n, secs
    else:
        a.bytes_out, a.secs_out = n, secs


def _key(pid: int, start: float, job_id: Any = None) -> tuple[Any, ...]:
    """Which attempt this is, in any of its records: its task's pid and start. A task that
    never started has no pid: its job or cluster task says which it is (several can fail
    to start in one millisecond)."""
    if pid:
        return (pid, ms_key(start))
    return (0, ms_key(start), str(job_id or ""))


def _job_task(wf: dict[str, Any], job_id: Any, key: tuple[Any, ...]) -> tuple[Any, ...]:
    # the tries of a workflow's job share its derivation id; a job outside a workflow is
    # its own task
    if job_id and (wf.get("label") or wf.get("stamp")):
        return ("job", wf.get("label"), wf.get("stamp"), str(job_id))
    return ("attempt", *key)


def _read_cluster(doc: dict[str, Any], path: str, col: Collection) -> int:
    summary = doc.get("summary") or {}
    tasks = doc.get("tasks") or []
    try:
        if not isinstance(summary, dict):
            raise TypeError(f"summary is not a mapping: {_short(summary)}")
        if not isinstance(tasks, list):
            raise TypeError(f"tasks is not a list: {_short(tasks)}")
        cid = _cluster_id(summary, path)
        col.add_cluster(cid, summary)
    except _BAD_FIELD as err:
        raise NotARecord(f"not a fluxlite cluster record ({type(err).__name__}: {err})") \
            from None
    n = 0
    for i, t in enumerate(tasks):
        attempts = t.get("attempts") if isinstance(t, dict) else None
        if not isinstance(attempts, list):
            if attempts:
                col.skip(f"{path}#tasks[{i}]", "not a cluster task (attempts is not a list)")
            continue
        for j, att in enumerate(attempts):
            where = f"{path}#tasks[{i}].attempts[{j}]"
            try:
                col.add(checked(_cluster_attempt(t, att, cid, where)))
            except _BAD_FIELD as err:
                col.skip(where, f"not a cluster attempt ({type(err).__name__}: {err})")
                continue
            n += 1
    return max(n, 1)  # a cluster that ran nothing is still a record


def _cluster_id(summary: dict[str, Any], path: str) -> tuple[Any, ...]:
    if summary.get("start") and summary.get("pid"):
        return ("cluster", str(summary["start"]), int(summary["pid"]))
    return ("cluster", os.path.abspath(path))


def _cluster_attempt(t: dict[str, Any], att: dict[str, Any], cid: tuple[Any, ...],
                     where: str) -> Attempt:
    tid = str(t["id"])
    jr = att.get("job_record")
    code = att.get("exit_code")
    stopped = att.get("stopped")
    if isinstance(jr, dict) and jr.get("fluxlite_record"):
        a = from_run(jr, where)  # a fluxlite job: its own record says the most
        if code is not None and code != a.exit_code:
            a.exit_code = code
            a.cause = _cause(code, a.signal, a.cause == TIMEOUT or stopped == "time limit",
                             code == EXIT_INFRA)
    else:
        start = float(att["start_epoch"])
        sig = att.get("signal")
        err = att.get("error")
        ru = att.get("rusage") or {}
        dur = float(att.get("duration") or 0)
        a = Attempt(key=_key(int(att.get("pid") or 0), start), task=(), task_id=tid,
                    name=str(t.get("name") or t.get("app") or tid), source=where, start=start,
                    duration=dur, rich=2, runtime=dur, exit_code=code, signal=sig,
                    cause=_cause(code, sig, stopped == "time limit",
                                 code == EXIT_INFRA and sig is None),
                    reason=err or _describe(code, sig, stopped), utime=_num(ru.get("utime")),
                    stime=_num(ru.get("stime")),
                    maxrss_kb=_kb(ru))
    if stopped == "interrupted" and a.cause == EXIT:
        a.cause = SIGNAL
    a.task, a.task_id = (*cid, tid), tid
    a.try_no = int(att.get("try") or 1)
    if a.key[0] == 0:
        a.key = (0, a.key[1], tid, a.try_no)
    a.host = att.get("host") or a.host
    a.cores = int(t.get("cores") or 1)
    return a


def _describe(code: int | None, sig: int | None, stopped: str | None = None) -> str | None:
    if sig is not None:
        import signal as _signal

        try:
            name = _signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"killed by {name}" + (f" ({stopped})" if stopped else "")
    if code:
        return f"exited with code {code}" + (f" ({stopped})" if stopped else "")
    return None


# -- kickstart YAML --------------------------------------------------------------------------
@dataclass(slots=True)
class _Chunk:
    line: int  # 1-based line of "- invocation"
    text: list[str]
    before: list[str]  # text lines at column 0 between the previous record and this one
    multipart: list[list[str]] = field(default_factory=list)
    task_line: dict[str, str] | None = None


def _split(text: str) -> tuple[list[_Chunk], dict[str, str] | None]:
    chunks: list[_Chunk] = []
    summary: dict[str, str] | None = None
    cur: list[str] | None = None  # the YAML lines being collected
    noise: list[str] = []
    for i, line in enumerate(text.split("\n"), 1):
        if line.startswith("- invocation:"):
            cur = [line]
            chunks.append(_Chunk(i, cur, noise))
            noise = []
        elif line.startswith(MULTIPART):
            cur = []
            if chunks:
                chunks[-1].multipart.append(cur)
        elif line.startswith("[cluster-task ") or line.startswith("[seqexec-task "):
            if chunks and chunks[-1].task_line is None:
                chunks[-1].task_line = _fields(line)
            cur = None
        elif line.startswith("[cluster-summary ") or line.startswith("[seqexec-summary "):
            summary = _fields(line)
            cur = None
        elif cur is not None and (not line or line[0] in " -\t"):
            cur.append(line)
        elif line.strip():
            cur = None
            noise.append(line)
    return chunks, summary


def _fields(line: str) -> dict[str, str]:
    body = line[line.index(" ") + 1: line.rindex("]") if "]" in line else len(line)]
    return {k: v.strip('"') for k, v in _LINE_FIELD.findall(body)}


# Lines of a kickstart record that no figure needs, each at the indent where the record
# has it (a task's embedded output is indented deeper and never matches): building Python
# objects is most of the cost of reading YAML, and these are two thirds of a record.
_UNUSED = re.compile(
    r"^(?:  (?:version|interface|pid|uid|user|gid|group|umask|cwd): .*"
    r"|    (?:utime|stime|maxrss|minflt|majflt|nswap|inblock|outblock|msgsnd|msgrcv|nsignals"
    r"|nvcsw|nivcsw|page-size|uname_system|uname_release|uname_machine|ram_\w+|swap_\w+"
    r"|cpu_\w+|load_\w+|procs_\w+|task_\w+): .*"
    r"|      (?:minflt|majflt|nswap|inblock|outblock|msgsnd|msgrcv|nsignals|nvcsw|nivcsw"
    r"|mode|size|inode|nlink|blksize|blocks|mtime|atime|ctime|uid|user|gid|group"
    r"|descriptor|temporary_name|data_truncated): .*)\n", re.MULTILINE)


def _read_yaml(path: str, data: bytes, col: Collection) -> int:
    raw = data.decode("utf-8", "replace")
    lines = list(_record_lines(raw))
    text = _UNUSED.sub("", raw)
    del raw  # before the split: one copy of the file's text at a time
    chunks, summary = _split(text)
    for c, line in zip(chunks, lines, strict=False):
        c.line = line  # the file's own line, before unused lines were dropped
    if not chunks:
        raise NotARecord("no kickstart record in it")
    cid: tuple[Any, ...] | None = None
    if summary is not None or any(c.task_line for c in chunks):
        s = summary or {}
        cid = (("cluster", s["start"], int(s["pid"])) if s.get("start") and
               s.get("pid", "").isdigit() else ("cluster", os.path.abspath(path)))
        try:
            col.add_cluster(cid, {k: _int_or(v) for k, v in s.items()})
        except ValueError as err:  # the tasks' records still count
            col.skip(path, f"cluster summary line left out ({err})")
    n = 0
    bad: list[str] = []
    for c in chunks:
        try:
            docs = yamlload.load("\n".join(c.text))
            inv = docs[0] if isinstance(docs, list) and docs and isinstance(docs[0], dict) \
                else None
            if inv is None or inv.get("invocation") is not True:
                raise ValueError("not an invocation record")
            parts = []
            for m in c.multipart:
                try:
                    got = yamlload.load("\n".join(m))
                except yaml.YAMLError:
                    continue  # a broken section loses its figures, not the record
                if isinstance(got, list):
                    parts += [p for p in got if isinstance(p, dict)]
            a = from_kickstart(inv, parts, f"{path}:{c.line}", c)
            if cid is not None and c.task_line is not None:
                _apply_task_line(a, c.task_line, cid)
            col.add(checked(a))
        except (yaml.YAMLError, *_BAD_FIELD) as err:
            bad.append(f"line {c.line}: {_one_line(err)}")
            continue
        n += 1
    if bad:
        what = f"{len(bad)} of {len(chunks)} kickstart records unreadable"
        if not n:
            raise NotARecord(f"{what} ({bad[0]})")
        col.skip(path, f"{what} ({bad[0]})")
    return n


_RECORD_START = re.compile(r"^- invocation:", re.MULTILINE)


def _record_lines(text: str) -> Iterator[int]:
    """The line numbers of the records' first lines (the dropped lines never are one)."""
    line, pos = 1, 0
    for m in _RECORD_START.finditer(text):
        line += text.count("\n", pos, m.start())
        pos = m.start()
        yield line


def _int_or(v: str) -> Any:
    try:
        return int(v)
    except ValueError:
        return v


def _one_line(err: BaseException) -> str:
    msg = " ".join(str(err).split())
    if isinstance(err, yaml.MarkedYAMLError) and err.problem:
        msg = f"truncated or malformed YAML: {err.problem}"
    return msg[:200]


def from_kickstart(inv: dict[str, Any], parts: list[dict[str, Any]], source: str,
                   chunk: _Chunk | None = None) -> Attempt:
    """The attempt a kickstart invocation record tells of, with its multipart sections."""
    main = inv.get("mainjob") or {}
    start = epoch_of(inv.get("start"))
    if start is None:
        raise ValueError("no start time")
    m_start = epoch_of(main.get("start")) or start
    st = main.get("status") or {}
    pid = int(main.get("pid") or 0)
    key = _key(pid, m_start, inv.get("derivation"))
    ru = (main.get("usage") or {}) if pid else {}  # no task ran: no usage to speak of
    sig = st.get("signalled_signal")
    error = st.get("failure_error")
    code: int | None
    if sig is not None:
        code = SIGNAL_BASE + int(sig)
    elif error is not None:
        code = EXIT_CANNOT_EXEC
    else:
        code = int(st.get("regular_exitcode", st.get("raw", 0)) or 0)
    machine = inv.get("machine") or {}
    host = inv.get("hostname") or machine.get("uname_nodename") or inv.get("hostaddr")
    # fluxlite's records say so; pegasus-kickstart says so on its output before the record
    # when its -k fired
    timed_out = bool(main.get("timed_out")) or (
        chunk is not None and any("timed out" in ln for ln in chunk.before))
    a = Attempt(key=key, task=(), task_id=str(inv.get("derivation") or ""),
                name=str(inv.get("transformation") or os.path.basename(
                    str((main.get("executable") or {}).get("file_name") or "?"))),
                source=source, start=start, duration=float(inv.get("duration") or 0),
                host=str(host) if host else None,
                runtime=_num(main.get("duration")) if pid else None,
                exit_code=code, signal=int(sig) if sig is not None else None,
                utime=_num(ru.get("utime")), stime=_num(ru.get("stime")),
                maxrss_kb=_kb(ru))
    wf = {"label": inv.get("wf-label"), "stamp": inv.get("wf-stamp")}
    a.task = _job_task(wf, a.task_id, key)
    infra = _multipart(a, parts, m_start)
    integ = sum(float(f.get("checksum_timing") or 0) for f in (inv.get("files") or {}).values()
                if isinstance(f, dict))
    a.integrity_s = (a.integrity_s or 0.0) + integ
    if infra and (error is not None or code == 0):
        code = a.exit_code = EXIT_INFRA
    a.cause = _cause(code, a.signal, timed_out, infra)
    reason = error or _describe(code, a.signal, "time limit" if timed_out else None)
    if infra and error is None:
        reason = ("a transfer or a checksum failed" if code == EXIT_INFRA
                  else f"{reason}; a transfer or a checksum failed")
    a.reason = reason
    return a


def _multipart(a: Attempt, parts: list[dict[str, Any]], task_start: float) -> bool:
    """Transfer and integrity figures from the multipart sections; True when a file never
    arrived or a checksum did not match."""
    failed = False
    lfn_ok: dict[tuple[str, str], bool] = {}
    for part in parts:
        for t in part.get("transfer_attempts") or ():
            if not isinstance(t, dict):
                continue
            direction = t.get("direction")
            if direction not in ("stage-in", "stage-out"):
                # pegasus-transfer's sections do not say: stage-in happens before the task
                t0 = epoch_of(t.get("start"))
                direction = "stage-in" if t0 is not None and t0 < task_start else "stage-out"
            k = (direction, str(t.get("lfn")))
            ok = t.get("success") is True or str(t.get("success")).lower() == "true"
            lfn_ok[k] = lfn_ok.get(k, False) or ok
            n = int(t.get("bytes") or 0) if ok else 0
            secs = float(t.get("duration") or 0)
            if direction == "stage-in":
                a.bytes_in, a.secs_in = (a.bytes_in or 0) + n, (a.secs_in or 0.0) + secs
            else:
                a.bytes_out, a.secs_out = (a.bytes_out or 0) + n, (a.secs_out or 0.0) + secs
        for v in part.get("integrity_verification_attempts") or ():
            if isinstance(v, dict) and v.get("success") is False:
                failed = True
        summ = part.get("integrity_summary")
        if isinstance(summ, dict):
            a.integrity_s = (a.integrity_s or 0.0) + float(summ.get("duration") or 0)
            if int(summ.get("failed") or 0) > 0:
                failed = True
    return failed or not all(lfn_ok.values())


def _apply_task_line(a: Attempt, line: dict[str, str], cid: tuple[Any, ...]) -> None:
    """What a cluster says about the task it ran: which task and try, its cores, and its
    exit status (the record may be a job's own, whose task is not what the cluster ran)."""
    tid = line.get("task") or line.get("id") or a.task_id
    a.task, a.task_id = (*cid, tid), tid
    if line.get("try", "").isdigit():
        a.try_no = int(line["try"])
    if a.key[0] == 0:
        a.key = (0, a.key[1], tid, a.try_no or 1)
    if line.get("cpus", "").isdigit():
        a.cores = int(line["cpus"])
    if line.get("hostname"):
        a.host = a.host or line["hostname"]
    raw = line.get("status", "")
    if raw.lstrip("-").isdigit():
        raw_i = int(raw)
        code = raw_i >> 8 if raw_i >= 0 and raw_i & 0x7F == 0 else (
            SIGNAL_BASE + (raw_i & 0x7F) if raw_i > 0 else EXIT_CANNOT_EXEC)
        if code != a.exit_code:
            sig = raw_i & 0x7F if raw_i > 0 and raw_i & 0x7F else None
            a.exit_code, a.signal = code, sig if sig is not None else a.signal
            stopped = line.get("stopped")
            a.cause = _cause(code, sig, stopped == "time limit", code == EXIT_INFRA)
            a.reason = _describe(code, sig, stopped) or a.reason
        elif line.get("stopped") == "time limit" and a.cause != OK:
            a.cause = TIMEOUT


# -- what the commands share ------------------------------------------------------------------
MAX_SKIP_LINES = 20


def load(paths: list[str], err: Any, quiet: bool = False) -> Collection:
    """Read the records under ``paths``; one line on ``err`` per file that held none (past
    MAX_SKIP_LINES, one line for the rest); ``quiet``: one line for them all.
    :class:`~fluxlite.errors.NoRecords` when not one record was found."""
    col = read_paths(paths)
    shown = 0 if quiet else MAX_SKIP_LINES
    for path, reason in col.skipped[:shown]:
        err.write(f"fluxlite: skipped {path}: {reason}\n")
    rest = len(col.skipped) - shown
    if rest > 0:
        more = "" if quiet else " more"
        err.write(f"fluxlite: skipped {rest}{more} {'file' if rest == 1 else 'files'} "
                  "that hold no record\n")
    if not col.attempts and not col.clusters:
        raise NoRecords(paths)
    return col
