"""The kickstart 3.0 YAML invocation record, as pegasus-kickstart writes it.

Written by hand rather than with a YAML library: the layout (key order, unquoted
timestamps, octal modes, ``data: |`` blocks) is what Pegasus's tools and people expect, and
every string goes through ``q()`` so that any bytes a task prints still make a record that
Pegasus's parser accepts.
"""

from __future__ import annotations

import re

from fluxlite.record import multipart
from fluxlite.record.host import iso
from fluxlite.record.model import Record
from fluxlite.redact import text as redact_text
from fluxlite.urls import redact

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import IO, Any


# What may stand unescaped in a double-quoted scalar or a block, for every YAML reader a
# record meets (PyYAML's Python and C loaders, Pegasus's parser): printable characters
# (the readers' set) less the ones any of them takes for a line break (NEL U+0085, U+2028,
# U+2029: a block would end there and a quoted scalar fold) or skips (the byte order mark
# U+FEFF, which libyaml drops at the start of a line). Compiled on first use of non-ASCII
# text: the character classes are slow to compile and most records are plain ASCII.
_SAFE = "\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff"
_PLAIN_BAD_SET = f"[^\x20-\x7e{_SAFE}]"
_BLOCK_BAD_SET = f"[^\t\n\x20-\x7e{_SAFE}]"
_ASCII_BAD = re.compile("[^\x20-\x7e]")
_ASCII_BLOCK_BAD = re.compile("[^\t\n\x20-\x7e]")
_compiled: dict[str, re.Pattern[str]] = {}


def _bad(text: str, block: bool) -> re.Pattern[str]:
    if text.isascii():
        return _ASCII_BLOCK_BAD if block else _ASCII_BAD
    key = _BLOCK_BAD_SET if block else _PLAIN_BAD_SET
    pat = _compiled.get(key)
    if pat is None:
        pat = _compiled[key] = re.compile(key)
    return pat


_ESC = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\x00": "\\0",
        "\x07": "\\a", "\x08": "\\b", "\x0b": "\\v", "\x0c": "\\f", "\x1b": "\\e",
        "\x85": "\\N", "\u2028": "\\L", "\u2029": "\\P"}


def _escape_char(m: re.Match[str]) -> str:
    c = m.group(0)
    if c in _ESC:
        return _ESC[c]
    o = ord(c)
    if o <= 0xFF:
        return f"\\x{o:02x}"
    if o <= 0xFFFF:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def q(value: object) -> str:
    """A YAML double-quoted scalar that round-trips any string."""
    s = str(value)
    s = s.replace("\\", "\\\\").replace('"', '\\"')
    if not (s.isascii() and s.isprintable()):
        s = _bad(s, False).sub(_escape_char, s)
    return f'"{s}"'


# Words YAML 1.1 reads as booleans or null when unquoted.
_WORDS = frozenset({"y", "yes", "n", "no", "true", "false", "on", "off", "null"})
_PLAIN = re.compile(r"[A-Za-z][\w.-]*|\d{1,3}(?:\.\d{1,3}){3}")


def plain(value: object) -> str:
    """A name as kickstart writes it, unquoted (a host name, an address, a user), when YAML
    reads it back as that very string; else quoted."""
    s = str(value)
    return s if _PLAIN.fullmatch(s) and s.lower() not in _WORDS else q(s)


def decode(data: bytes) -> str:
    """Task output as text: invalid UTF-8 bytes become U+FFFD-free escapes via surrogates."""
    return data.decode("utf-8", errors="backslashreplace")


def block_or_quoted(text: str, indent: str) -> str:
    """``|`` block (kickstart's style) when the text allows it exactly, else a quoted scalar."""
    if not text:
        return '""'
    ok = (not _bad(text, True).search(text) and not text[0].isspace() and "\n\n\n" not in text[-3:]
          and not text.endswith("\n\n") and not any(
              ln != ln.rstrip(" ") and not ln.strip() for ln in text.split("\n")))
    if ok:
        body = text[:-1] if text.endswith("\n") else text
        head = "|" if text.endswith("\n") else "|-"
        lines = "\n".join((indent + ln) if ln else "" for ln in body.split("\n"))
        return f"{head}\n{lines}"
    return q(text)


def _num(v: float, nd: int = 3) -> str:
    return f"{v:.{nd}f}"


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _num(v)
    if v is None:
        return "null"
    return q(v)


class _W:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def kv(self, depth: int, key: str, value: str) -> None:
        self.lines.append(f"{'  ' * depth}{key}: {value}")

    def key(self, depth: int, key: str) -> None:
        self.lines.append(f"{'  ' * depth}{key}:")

    def item(self, depth: int, value: str) -> None:
        self.lines.append(f"{'  ' * depth}- {value}")

    def mapping(self, depth: int, d: dict[str, Any]) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                self.key(depth, k)
                self.mapping(depth + 1, v)
            elif isinstance(v, list):
                self.key(depth, k)
                for x in v:
                    if isinstance(x, dict):
                        self._dict_item(depth + 1, x)
                    else:
                        self.item(depth + 1, _scalar(x))
            else:
                self.kv(depth, k, _scalar(v))

    def _dict_item(self, depth: int, d: dict[str, Any]) -> None:
        first = True
        for k, v in d.items():
            prefix = "  " * depth + ("- " if first else "  ")
            first = False
            if isinstance(v, (dict, list)):
                self.lines.append(f"{prefix}{k}:")
                sub = _W()
                sub.mapping(0, {"_": v})
                for ln in sub.lines[1:]:
                    self.lines.append("  " * (depth + 1) + ln)
            else:
                self.lines.append(f"{prefix}{k}: {_scalar(v)}")

    def statinfo(self, depth: int, st: dict[str, Any]) -> None:
        self.text(statinfo_text(depth, st))

    def text(self, text: str) -> None:
        """Lines already rendered (each ending with a newline)."""
        if text:
            self.lines.append(text[:-1])


def statinfo_text(depth: int, st: dict[str, Any]) -> str:
    """A statinfo's lines (``host.stat_info``'s fields) at ``depth``, each ending with a
    newline."""
    ind = "  " * depth
    out = []
    for k, v in st.items():
        if k == "mode":
            out.append(f"{ind}{k}: 0o{v:o}\n")
        elif k in ("mtime", "atime", "ctime"):
            out.append(f"{ind}{k}: {v}\n")
        elif k in ("user", "group"):
            out.append(f"{ind}{k}: {plain(v)}\n")
        else:
            out.append(f"{ind}{k}: {v}\n")
    return "".join(out)


def host_text(interface: str, hostaddr: str, hostname: str, process: dict[str, Any]) -> str:
    """The record's lines of the host and of the process that wrote it (interface to
    umask), each ending with a newline."""
    p = process
    return (f"  interface: {plain(interface or 'lo')}\n"
            f"  hostaddr: {plain(hostaddr or '127.0.0.1')}\n"
            f"  hostname: {plain(hostname or 'localhost')}\n"
            f"  pid: {p.get('pid', 0)}\n  uid: {p.get('uid', 0)}\n"
            f"  user: {q(p.get('user', ''))}\n  gid: {p.get('gid', 0)}\n"
            f"  group: {q(p.get('group', ''))}\n  umask: 0o{p.get('umask', 0o022):04o}\n")


_USAGE: dict[int, str] = {}
_ZEROS = (0,) * 13


def usage_template(depth: int) -> str:
    """The ``%`` template of a resource usage's lines at ``depth``: kickstart's fields in
    its order, times in seconds to the millisecond, counts as integers."""
    tmpl = _USAGE.get(depth)
    if tmpl is None:
        from fluxlite.execute.base import RUSAGE_FIELDS

        ind = "  " * depth
        tmpl = _USAGE[depth] = "".join(
            f"{ind}{k}: %.3f\n" if k in ("utime", "stime") else f"{ind}{k}: %d\n"
            for k in RUSAGE_FIELDS)
    return tmpl


def usage_text(depth: int, ru: dict[str, float]) -> str:
    """A resource usage's lines at ``depth`` (:func:`usage_template`; a missing field is 0)."""
    from fluxlite.execute.base import RUSAGE_FIELDS

    return usage_template(depth) % tuple(map(ru.get, RUSAGE_FIELDS, _ZEROS))


def render(rec: Record) -> str:
    """The whole record as text, multipart sections included, ending with a newline."""
    w = _W()
    job = rec.job
    w.lines.append("- invocation: True")
    w.kv(1, "version", "3.0")
    w.kv(1, "start", iso(rec.start))
    w.kv(1, "duration", _num(rec.duration))
    if job is not None:
        w.kv(1, "transformation", q(job.name))
        w.kv(1, "derivation", q(job.id))
        w.kv(1, "resource", q(job.site))
        if job.wf_label:
            w.kv(1, "wf-label", q(job.wf_label))
        if job.wf_stamp:
            w.kv(1, "wf-stamp", q(job.wf_stamp))
    w.text(host_text(rec.interface, rec.hostaddr, rec.hostname, rec.process))

    for name, section in rec.extra_sections.items():
        if name in ("setup", "prejob"):
            _job_section(w, name, section)

    if not rec.main_skipped:
        _mainjob(w, rec)

    for name, section in rec.extra_sections.items():
        if name in ("postjob", "cleanup"):
            _job_section(w, name, section)

    if rec.jobids:
        w.key(1, "jobids")
        for k, v in rec.jobids.items():
            w.kv(2, k, q(v))
    else:
        w.key(1, "jobids")
    w.kv(1, "cwd", q(rec.cwd) if rec.cwd else '""')
    w.key(1, "usage")
    for k, u in rec.self_usage.items():
        w.kv(2, k, _num(u) if k in ("utime", "stime") else str(int(u)))
    if rec.machine is not None and not rec.compact:
        w.key(1, "machine")
        for k, v in rec.machine.items():
            w.kv(2, k, _scalar(v) if not isinstance(v, float) else f"{v:.2f}")
    _files(w, rec)
    if not rec.ok or rec.full:  # after files, where pegasus-kickstart writes them
        if rec.environment is not None:
            w.key(1, "environment")
            for k, v in rec.environment.items():
                w.kv(2, q(k), q(v))
        if rec.rlimits is not None:
            w.key(1, "limits")
            for k, v in rec.rlimits.items():
                w.kv(2, k, str(v))
    text = "\n".join(w.lines) + "\n"
    # every URL written anywhere in the record (arguments, errors, output tails) redacted
    return redact_text(text + multiparts(rec))


def _status(w: _W, depth: int, status: Any) -> None:
    w.text(status_text(depth, status))


def status_text(depth: int, status: Any) -> str:
    """An ExitStatus's ``status`` entry at ``depth``, each line ending with a newline."""
    ind, sub = "  " * depth, "  " * (depth + 1)
    head = f"{ind}status:\n{sub}raw: {status.raw}\n"
    if status.error is not None:
        return f"{head}{sub}failure_error: {q(status.error)}\n"
    if status.signal is not None:
        from fluxlite.execute.base import signal_name

        # kickstart's key is misspelt; write both so either reader finds it
        return (f"{head}{sub}signalled_signal: {status.signal}\n"
                f"{sub}singalled_name: {q(_strsignal(status.signal))}\n"
                f"{sub}signalled_name: {q(signal_name(status.signal))}\n"
                f"{sub}corefile: {'true' if status.core else 'false'}\n")
    return f"{head}{sub}regular_exitcode: {status.exitcode}\n"


def _strsignal(sig: int) -> str:
    import signal

    return signal.strsignal(sig) or f"signal {sig}"


def _mainjob(w: _W, rec: Record) -> None:
    from fluxlite.execute.base import ExitStatus

    task = rec.task
    w.key(1, "mainjob")
    w.kv(2, "start", iso(task.start if task and task.start else rec.start))
    w.kv(2, "duration", _num(task.duration if task else 0.0))
    w.kv(2, "pid", str(task.pid if task else 0))
    w.key(2, "usage")
    w.text(usage_text(3, task.rusage if task and task.rusage else {}))
    status = task.status if task else ExitStatus.failed_to_start(rec.error or "task not run")
    if task is not None and task.pid == 0 and status.error is None and status.raw == -1:
        status = ExitStatus.failed_to_start(rec.error or "task not run")
    _status(w, 2, status)
    if task is not None and task.timed_out:
        # a time limit's TERM (or KILL) is a signal to Pegasus; this says whose it was
        w.kv(2, "timed_out", q(task.timed_out))
    w.key(2, "executable")
    w.kv(3, "file_name", q(rec.executable) if rec.executable else '""')
    if rec.executable_stat:
        w.statinfo(3, rec.executable_stat)
    w.key(2, "argument_vector")
    for a in (task.argv[1:] if task else list(rec.job.argv[1:]) if rec.job else []):
        w.item(3, q(a))
    w.key(2, "procs")


def _job_section(w: _W, name: str, sec: dict[str, Any]) -> None:
    """setup/prejob/postjob/cleanup hooks (kickstart's environment hooks)."""
    w.key(1, name)
    w.kv(2, "start", iso(sec["start"]))
    w.kv(2, "duration", _num(sec["duration"]))
    w.kv(2, "pid", str(sec.get("pid", 0)))
    _status(w, 2, sec["status"])
    w.key(2, "executable")
    w.kv(3, "file_name", q(sec.get("executable", "")))
    w.key(2, "argument_vector")
    for a in sec.get("argv", [])[1:]:
        w.item(3, q(a))


# lfns that cannot be keys of `files`: Pegasus's parser passes the entries to a method as
# keyword arguments (an lfn "self" makes it reject the whole record), and the stdio entries
# share the mapping (a second "stdout" key would replace one of the two). Such files stay in
# the JSON record.
_RESERVED_KEYS = frozenset({"self", "stdin", "stdout", "stderr", "metadata"})


def _files(w: _W, rec: Record) -> None:
    outputs = [o for o in rec.outputs if (o.stat is not None or o.error is not None)
               and o.lfn not in _RESERVED_KEYS]
    if not rec.stdio and not outputs:
        return  # an empty `files:` would be null, which Pegasus's parser cannot take
    w.key(1, "files")
    for out in outputs:
        w.key(2, q(out.lfn))
        if out.stat is None:  # a -S/-s file that could not be stat'ed, as kickstart says it
            w.kv(3, "error", str(out.error))
            w.kv(3, "lfn", q(out.lfn))
            w.kv(3, "file_name", q(out.path))
            continue
        w.kv(3, "lfn", q(out.lfn))
        w.kv(3, "file_name", q(out.path))
        w.statinfo(3, out.stat)
        if out.output:  # without it, Pegasus counts the file as an input (kickstart -S)
            w.kv(3, "output", "True")
        if out.sha256:
            w.kv(3, "sha256", out.sha256)
            w.kv(3, "checksum_timing", f"{out.checksum_timing:.2f}")
    for f in rec.stdio:
        from fluxlite.record.host import stat_info

        w.key(2, f.name)
        if f.kind == "fd":  # shared with fluxlite (kickstart "-"), as kickstart writes it
            st = stat_info(f"/proc/self/fd/{f.fd}")
            w.kv(3, "descriptor_number", str(f.fd))
        elif f.name == "stdin" or f.kind == "file":
            st = stat_info(f.path)
            w.kv(3, "file_name", q(f.path))
        else:
            st = stat_info(f.path)
            w.kv(3, "temporary_name", q(f.path))
        if st:
            w.statinfo(3, st)
        if f.data is not None:
            w.kv(3, "data_truncated", "true" if f.truncated else "false")
            w.kv(3, "data", block_or_quoted(decode(f.data), "        "))


def multiparts(rec: Record) -> str:
    """Transfer attempts and integrity results as pegasus-multipart sections."""
    parts: list[list[str]] = []
    attempts: list[dict[str, Any]] = []
    for stage in rec.stage_in + rec.stage_out:
        for res in stage.results:
            for a in res.attempts:
                attempts.append({"lfn": a.lfn, "src_url": redact(a.src), "dst_url": redact(a.dst),
                                 "direction": stage.direction, "round": a.round,
                                 "start": iso(a.start), "duration": round(a.duration, 3),
                                 "bytes": a.bytes, "success": a.success,
                                 **({"error": a.error} if a.error else {})})
    if attempts:
        parts.append([multipart.SEPARATOR, *multipart.section(
            "transfer_attempts", ({k: _scalar(v) for k, v in a.items()} for a in attempts))])
    if rec.verifications:
        checks = [{k: _scalar(v) for k, v in {
            "lfn": v.lfn, "pfn": v.lfn, "sha256": v.actual, "expected": v.expected or "",
            "success": v.success}.items()} for v in rec.verifications]
        parts.append([multipart.SEPARATOR, *multipart.integrity(
            checks, sum(1 for v in rec.verifications if v.success),
            _num(sum(v.duration for v in rec.verifications)))])
    return "".join(multipart.text(p) for p in parts)


def write(rec: Record, fh: IO[str]) -> None:
    """Write the kickstart YAML record to a text file."""
    fh.write(render(rec))
