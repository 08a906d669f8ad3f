"""Cluster inputs -> TaskGraph: PMC DAGs, pegasus-cluster lists and JSON job lists.

The format is recognised by content, not by file name, because Pegasus names its cluster
files after jobs (``merge_ID1.in``). Every problem is reported as one line naming the file
and the line (or the JSON path) before anything runs: a cluster that fails half-way through
because of a typo on its last line wastes the whole allocation.
"""

from __future__ import annotations

import functools
import gc
import math
import os
import re
import sys
from dataclasses import dataclass, field

from fluxlite.errors import SpecError, UsageError, one_line
from fluxlite.lazylog import get_logger

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any
    from fluxlite.spec import JobSpec

logger = get_logger(__name__)

FORMATS = ("pmc", "list", "json")
# Characters with no special meaning to /bin/sh: a line made only of these means the same
# split on blanks as run by the shell, so it is exec'd directly (one fork less per task).
_SHELL_PLAIN = re.compile(r"[A-Za-z0-9_./:,+@%=\- \t]*")
# ...unless its first word means something to the shell itself: a leading NAME=value is an
# assignment, and builtins and keywords have no program on PATH to exec ('exit 0', 'cd d').
_SHELL_ASSIGN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_SHELL_WORDS = frozenset((
    ":", ".", "alias", "bg", "break", "case", "cd", "command", "continue", "do", "done",
    "elif", "else", "esac", "eval", "exec", "exit", "export", "fc", "fg", "fi", "for",
    "function", "getopts", "hash", "if", "jobs", "local", "read", "readonly", "return",
    "select", "set", "shift", "source", "then", "time", "times", "trap", "type", "typeset",
    "ulimit", "umask", "unalias", "unset", "until", "wait", "while"))
# JSON starts with '[' or '{' followed by what a job list can hold next; '[ -e f ]' and
# '{ cmd; }' are shell lines of a pegasus-cluster list
_JSON_START = re.compile(r'\s*(\[\s*[\[{\]"]|\{\s*["}])')
_JSON_CLUSTER_KEYS = {"after", "tries", "priority", "placement"}
PLACEMENTS = ("auto", "flux")  # "flux": a Flux job of its own, even beside a pool
# Only these end or separate words, as for /bin/sh and PMC: never form feeds, U+0085 or
# U+2028, which str.split() and str.splitlines() would take for breaks
_BLANKS = " \t"
_BLANK_RUN = re.compile(r"[ \t]+")
# A TASK line without quotes or backslashes splits like str.split on blanks (pmc_split is
# slower)
_NEEDS_PMC_SPLIT = re.compile(r"['\"\\\r]")
# Bounds of the numbers a task may ask for (as PMC: integers; -m and -c may be decimal)
LIMITS = {"cores": 1 << 20, "gpus": 1 << 20, "memory_mb": 1 << 40, "tries": 1_000_000,
          "priority": (1 << 31) - 1, "nodes": 1 << 20}


class ClusterInputError(UsageError):
    """An invalid cluster input: ``file:line: problem`` (or ``file: json.path: problem``)."""

    def __init__(self, path: str, problem: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(one_line(f"{where}: {problem}"))
        self.path = path
        self.line = line
        self.problem = problem


@dataclass(slots=True)
class Task:
    """One task of a cluster, as its input describes it: what runs, what it needs, its edges."""

    id: str
    line: int = 0  # where it was defined (0 for JSON tasks: see ``where``)
    seq: int = 0  # order in the input: the tie-breaker after priority
    argv: list[str] | None = None  # exec'd without a shell
    command: str | None = None  # a shell command line (pegasus-cluster lists only)
    name: str = ""  # the transformation
    derivation: str = ""
    number: str = ""  # N of the planner's '#@ N TR ID' comment: what pegasus-monitord keys on
    cores: int = 1
    gpus: int = 0
    memory_mb: int = 0
    tries: int = 0  # 0: not said, the cluster's --tries applies
    priority: int = 0
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    pipe_forward: list[tuple[str, str]] = field(default_factory=list)  # PMC -f VAR=FILE
    file_forward: list[tuple[str, str]] = field(default_factory=list)  # PMC -F SRC=DEST
    nodes: int = 0  # PMC -N: nodes it spans (0: one, not said); more than one: a Flux job
    placement: str = ""  # JSON lists: "flux" sends it to a Flux job of its own
    job: JobSpec | None = None  # JSON job lists: a whole fluxlite job
    job_doc: dict[str, Any] | None = None
    where: str = ""  # JSON job lists: "tasks[2]", for messages (others have their line)

    @property
    def app(self) -> str:
        """The program the task runs: the job's executable, argv[0], or the shell command's
        first word."""
        if self.job is not None:
            return self.job.executable
        if self.argv:
            return self.argv[0]
        return (self.command or "").split(None, 1)[0] if (self.command or "").strip() else ""

    @property
    def args(self) -> list[str]:
        """The task's arguments after the program (``-c LINE`` for a shell command)."""
        if self.job is not None:
            return list(self.job.arguments)
        if self.argv:
            return self.argv[1:]
        return ["-c", self.command or ""]


@dataclass(slots=True)
class TaskGraph:
    """The tasks of one cluster input, by id, with the format and size it was read from."""

    path: str
    format: str
    tasks: dict[str, Task] = field(default_factory=dict)
    lines: int = 0  # lines read (pegasus-cluster reports it in its summary)

    def __len__(self) -> int:
        return len(self.tasks)

    def check_fits(self, cores: int, gpus: int, memory_mb: int, what: str) -> None:
        """Refuse tasks that could never start on the resources the executor has."""
        for t in self.tasks.values():
            problem = None
            if t.cores > cores:
                problem = f"task '{t.id}' asks for {t.cores} cores but {what} has {cores}"
            elif t.gpus > gpus:
                problem = f"task '{t.id}' asks for {t.gpus} gpus but {what} has {gpus}"
            elif memory_mb and t.memory_mb > memory_mb:
                problem = (f"task '{t.id}' asks for {t.memory_mb} MB of memory but {what} "
                           f"has {memory_mb} MB")
            if problem:
                raise _error(self.path, t, problem)


def _error(path: str, t: Task, problem: str) -> ClusterInputError:
    if t.line:
        return ClusterInputError(path, problem, t.line)
    return ClusterInputError(path, f"{t.where}: {problem}" if t.where else problem)


def lines(text: str) -> list[str]:
    """The lines of an input: only ``\n`` ends one (a ``\r`` before it is dropped), as in
    PMC; form feeds, U+0085 and U+2028 are characters of the line."""
    out = text.split("\n")
    if out and out[-1] == "":
        out.pop()
    return out


def _strip(raw: str) -> str:
    return raw.strip(" \t\r")


def detect(text: str, path: str = "<input>") -> str:
    """'json', 'pmc' or 'list', from the first meaningful characters of the input. A line
    that begins with a character nobody can see is not guessed to be a shell command."""
    if _JSON_START.match(text):
        return "json"
    for n, raw in enumerate(lines(text), 1):
        s = _strip(raw)
        if not s or s.startswith("#"):
            continue
        if not s[0].isprintable():
            raise ClusterInputError(path, f"cannot tell the format: the line starts with "
                                    f"U+{ord(s[0]):04X}; give --format", n)
        word = _BLANK_RUN.split(s, 1)[0]
        return "pmc" if word in ("TASK", "EDGE") else "list"
    return "list"


def load(path: str, fmt: str | None = None) -> TaskGraph:
    """Read and parse a cluster input file; one-line errors name the file and line."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as err:
        raise ClusterInputError(path, f"cannot read: {err.strerror}") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ClusterInputError(path, "not valid UTF-8", line) from err
    return parse(text, path, fmt)


def parse(text: str, path: str = "<input>", fmt: str | None = None) -> TaskGraph:
    # a UTF-8 byte-order mark is no part of the content, whatever the format
    """Parse a cluster input (its format given or recognised by content) into a TaskGraph."""
    text = text.removeprefix("\ufeff")
    nul = text.find("\0")
    if nul >= 0:
        raise ClusterInputError(path, "NUL byte in the input", text.count("\n", 0, nul) + 1)
    fmt = fmt or detect(text, path)
    parser = {"pmc": _parse_pmc, "list": _parse_list, "json": _parse_json}.get(fmt)
    if parser is None:
        raise UsageError(f"unknown cluster format '{fmt}' (formats: {', '.join(FORMATS)})")
    # A million tasks are millions of objects that all live on: the cyclic collector would
    # scan them again and again while they are made, for nothing
    collect = gc.isenabled()
    gc.disable()
    try:
        g = parser(text, path)
        _link(g)
    finally:
        if collect:
            gc.enable()
    return g


# --------------------------------------------------------------------------- PMC DAG

_PMC_OPTS = {
    "-m": "memory_mb", "--request-memory": "memory_mb",
    "-c": "cores", "--request-cpus": "cores",
    "-g": "gpus", "--request-gpus": "gpus",
    "-t": "tries", "--tries": "tries",
    "-p": "priority", "--priority": "priority",
    "-N": "nodes", "--nodes": "nodes",
    "-f": "pipe_forward", "--pipe-forward": "pipe_forward",
    "-F": "file_forward", "--file-forward": "file_forward",
}
_PMC_ROUNDED = frozenset(("memory_mb", "cores"))  # numbers, rounded up (as PMC)
_PMC_NONNEG = frozenset(("gpus", "tries", "nodes"))


_PMC_SPACE = frozenset(" \t\n\v\f\r")  # C's isspace(), which PMC splits on


def pmc_split(text: str, crossed: list[str] | None = None) -> list[str]:
    """The words of a TASK line's command part as pegasus-mpi-cluster splits them
    (``split_args`` in its strlib.cpp), not as a shell would: ``'`` and ``"`` are the same
    quote, any quote closes the one open (quotes do not nest) and ends the word there, even
    an empty one; a backslash takes the next character as it is, inside quotes too (a
    backslash at the end stays); blanks outside quotes separate words; an unterminated quote
    runs to the end of the line. ``crossed`` gets the pair (opening, closing quote) of each
    quote closed by one of the other kind, which a shell would have nested."""
    words: list[str] = []
    word: list[str] = []
    quoted = ""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "'" or c == '"':
            if quoted:
                words.append("".join(word))
                word = []
                if c != quoted and crossed is not None:
                    crossed.append(quoted + c)
                quoted = ""
            else:
                quoted = c
        elif c == "\\":
            if i + 1 < n:
                i += 1
            word.append(text[i])
        elif c in _PMC_SPACE and not quoted:
            if word:
                words.append("".join(word))
                word = []
        else:
            word.append(c)
        i += 1
    if word:
        words.append("".join(word))
    return words


def _parse_pmc(text: str, path: str) -> TaskGraph:
    g = TaskGraph(path, "pmc")
    edges: list[tuple[str, str, int]] = []
    pending: tuple[str, str, str] | None = None  # from '#@ N TR ID': names the next TASK
    n = 0
    tasks = g.tasks
    plain, blank_split = _NEEDS_PMC_SPLIT.search, _BLANK_RUN.split
    warned_quotes = False
    for n, raw in enumerate(lines(text), 1):
        s = raw.strip(" \t\r")
        if not s:
            continue
        if s[0] == "#":
            if s.startswith("#@"):
                pending = _pegasus_comment(s)
            continue
        if plain(s) is None:
            words = blank_split(s)
        else:
            # as PMC: the kind and the task id are split on blanks alone, the rest of a
            # TASK line by PMC's own rules (pmc_split); never given to a shell
            words = blank_split(s, maxsplit=2)
            if words[0] == "TASK" and len(words) == 3:
                crossed: list[str] = []
                words[2:] = pmc_split(words[2], crossed)
                if crossed and not warned_quotes:
                    warned_quotes = True
                    logger.warning("%s:%d: a %s closes the %s before it: in a TASK line "
                                   "' and \" are one quote and do not nest, as in "
                                   "pegasus-mpi-cluster (write \\' or \\\" inside quotes)",
                                   path, n, crossed[0][1], crossed[0][0])
            else:
                words = blank_split(s)
        kind = words[0]
        if kind == "TASK":
            if len(words) > 2 and words[2][0] != "-":
                # no options, the common case of large DAGs: made here, without the loop
                tid = words[1]
                t = Task(id=tid, line=n, argv=words[2:], name=_basename(words[2]),
                         derivation=tid)
            else:
                t = _pmc_task(words[1:], path, n)
            if pending is not None:
                # the planner's transformation and job id, as in a pegasus-cluster list
                t.number = pending[0]
                t.name = pending[1] or t.name
                t.derivation = pending[2] or t.derivation
                pending = None
            if t.id in tasks:
                raise ClusterInputError(path, f"duplicate task '{t.id}' (first defined on line "
                                        f"{tasks[t.id].line})", n)
            t.seq = len(tasks)
            tasks[t.id] = t
        elif kind == "EDGE":
            if len(words) != 3:
                raise ClusterInputError(path, "EDGE needs a parent and a child", n)
            edges.append((words[1], words[2], n))
        else:
            raise ClusterInputError(path, f"expected TASK or EDGE, not '{kind}'", n)
    g.lines = n
    for parent, child, n in edges:
        if parent not in tasks:
            raise ClusterInputError(path, f"EDGE names unknown task '{parent}'", n)
        if child not in tasks:
            raise ClusterInputError(path, f"EDGE names unknown task '{child}'", n)
        if parent == child:
            raise ClusterInputError(path, f"dependency cycle: {parent} -> {parent}", n)
        tasks[child].parents.append(parent)
    for t in tasks.values():
        if len(t.parents) > 1:  # a repeated EDGE counts once (linear, not O(N^2))
            t.parents = list(dict.fromkeys(t.parents))
    return g


def _pmc_task(words: list[str], path: str, n: int) -> Task:
    if not words:
        raise ClusterInputError(path, "TASK needs an id and a command", n)
    t = Task(id=words[0], line=n)
    i = 1
    while i < len(words) and words[i].startswith("-"):
        opt, eq, val = words[i].partition("=")
        attr = _PMC_OPTS.get(opt)
        if attr is None:
            raise ClusterInputError(path, f"task '{t.id}': unknown option '{opt}'", n)
        if not eq:
            i += 1
            if i >= len(words):
                raise ClusterInputError(path, f"task '{t.id}': option {opt} needs a value", n)
            val = words[i]
        i += 1
        if attr in ("pipe_forward", "file_forward"):
            left, sep, right = val.partition("=")
            if not sep or not left or not right:
                raise ClusterInputError(path, f"task '{t.id}': {opt} needs NAME=FILE, not "
                                        f"'{val}'", n)
            getattr(t, attr).append((left, right))
            continue
        if attr in _PMC_ROUNDED:
            # PMC reads memory and cpus as numbers and rounds them up ('-m 0.5' is 1 MB)
            try:
                real = float(val)
            except ValueError:
                real = math.nan
            if not math.isfinite(real):
                raise ClusterInputError(path, f"task '{t.id}': {opt} needs an integer or a "
                                        f"decimal number, not '{_shorten(val)}'", n)
            if real < 0:
                raise ClusterInputError(path, f"task '{t.id}': {opt} must not be negative", n)
            if real > LIMITS[attr]:
                raise ClusterInputError(path, f"task '{t.id}': {opt} must be at most "
                                        f"{LIMITS[attr]}", n)
            num = math.ceil(real)
        else:
            num = _int_word(val)
            if num is None:
                raise ClusterInputError(path, f"task '{t.id}': {opt} needs an integer, not "
                                        f"'{_shorten(val)}'", n)
            if attr in _PMC_NONNEG and num < 0:
                raise ClusterInputError(path, f"task '{t.id}': {opt} must not be negative", n)
            if abs(num) > LIMITS[attr]:
                raise ClusterInputError(path, f"task '{t.id}': {opt} must be between "
                                        f"{-LIMITS[attr] if attr == 'priority' else 0} and "
                                        f"{LIMITS[attr]}", n)
        if attr == "cores":
            num = max(1, num)  # PMC takes '-c 0'; a process still runs on a core
        elif attr == "tries":
            # PMC retries while failures < tries: '-t 0' is one try, as '-t 1'
            num = max(1, num)
        setattr(t, attr, num)
    if i >= len(words):
        raise ClusterInputError(path, f"task '{t.id}' has no command", n)
    t.argv = words[i:]
    t.name = _basename(t.argv[0])
    t.derivation = t.id
    return t


@functools.lru_cache(maxsize=1024)
def _basename(path: str) -> str:
    return os.path.basename(path)  # a cluster runs the same few programs many times


_INT_WORD = re.compile(r"[+-]?[0-9]{1,30}")


def _int_word(val: str) -> int | None:
    """An integer as PMC writes one: ASCII digits, no more than any bound here needs."""
    return int(val) if _INT_WORD.fullmatch(val) else None


def _shorten(val: str, most: int = 40) -> str:
    return val if len(val) <= most else val[:most] + "..."


# ------------------------------------------------------------------- pegasus-cluster list

def _pegasus_comment(s: str) -> tuple[str, str, str]:
    """'#@ N TRANSFORMATION ID' -> (N, TRANSFORMATION, ID), missing fields empty."""
    parts = _BLANK_RUN.split(_strip(s[2:])) if _strip(s[2:]) else []
    return (parts[0] if parts else "", parts[1] if len(parts) > 1 else "",
            parts[2] if len(parts) > 2 else "")


def _parse_list(text: str, path: str) -> TaskGraph:
    g = TaskGraph(path, "list")
    pending: tuple[str, str, str] | None = None  # from '#@ N TR ID'
    for n, raw in enumerate(lines(text), 1):
        g.lines = n
        s = _strip(raw)
        if not s:
            continue
        if s.startswith("#@"):
            pending = _pegasus_comment(s)
            continue
        if s.startswith("#"):
            continue
        num = str(len(g.tasks) + 1)
        tid = num
        tr, dv = "", ""
        if pending is not None:
            tr, dv = pending[1], pending[2]
            tid = pending[0] or num
            pending = None
        if tid in g.tasks:
            raise ClusterInputError(path, f"duplicate task number {tid} in '#@' comment", n)
        t = Task(id=tid, line=n, seq=len(g.tasks), derivation=dv,
                 number=tid)
        words = _BLANK_RUN.split(s)
        if (_SHELL_PLAIN.fullmatch(s) and words[0] not in _SHELL_WORDS
                and not _SHELL_ASSIGN.match(words[0])):
            # Nothing the shell would interpret: the same words, without the cost of a shell.
            t.argv = words
        else:
            # A pegasus-cluster line is a shell command line by design (pipes, redirections,
            # variables); pegasus-cluster gives it to /bin/sh -c, and so do we.
            t.command = s
        t.name = tr or os.path.basename(t.app)
        g.tasks[tid] = t
    return g


# -------------------------------------------------------------------------- JSON job list

def _parse_json(text: str, path: str) -> TaskGraph:
    import json  # a JSON job list's alone

    g = TaskGraph(path, "json", lines=len(lines(text)))
    try:
        doc = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates,
                         parse_int=_int_literal)
    except json.JSONDecodeError as err:
        raise ClusterInputError(path, f"malformed JSON: {err.msg} (column {err.colno})",
                                err.lineno) from err
    except _NotJSON as err:  # NaN, a duplicate key, an integer of thousands of digits
        raise ClusterInputError(path, f"malformed JSON: {err.reason}") from err
    entries: Any = doc
    prefix = ""
    if isinstance(doc, dict):
        unknown = sorted(set(doc) - {"fluxlite", "tasks"})
        if unknown:
            raise ClusterInputError(path, f"unknown key '{unknown[0]}' (expected 'tasks')")
        entries = doc.get("tasks")
        prefix = "tasks"
    if not isinstance(entries, list):
        raise ClusterInputError(path, f"{prefix or 'the document'}: must be a list of jobs")
    version = doc.get("fluxlite", 1) if isinstance(doc, dict) else 1
    for i, entry in enumerate(entries):
        where = f"{prefix}[{i}]"
        if not isinstance(entry, dict):
            raise ClusterInputError(path, f"{where}: must be an object (a fluxlite job)")
        tid = entry.get("id")
        if not isinstance(tid, str) or not tid:
            raise ClusterInputError(path, f"{where}.id: is required (a unique task id)")
        if tid in g.tasks:
            raise ClusterInputError(path, f"{where}.id: duplicate task '{tid}' (first at "
                                    f"{g.tasks[tid].where})")
        nul = _nul_at(entry, where)
        if nul is not None:
            raise ClusterInputError(path, f"{nul}: NUL character in a string")
        _refuse_records(entry.get("records"), path, where)
        job_doc = {k: v for k, v in entry.items() if k not in _JSON_CLUSTER_KEYS}
        job_doc.setdefault("fluxlite", version)
        from fluxlite.spec import JobSpec  # a JSON job list's (a DAG needs none of it)

        try:
            spec = JobSpec.from_dict(job_doc, source=path)
        except SpecError as err:
            raise ClusterInputError(path, f"{where}.{err.problems[0]}" + (
                f" (and {len(err.problems) - 1} more)" if len(err.problems) > 1 else "")
            ) from err
        t = Task(id=tid, seq=len(g.tasks), job=spec, job_doc=job_doc, where=where,
                 name=spec.name, derivation=spec.id)
        t.cores = spec.resources.tasks * spec.resources.cores_per_task
        t.gpus = spec.resources.tasks * spec.resources.gpus_per_task
        t.tries = _json_int(entry, "tries", 0, 1, path, where)  # 0: --tries applies
        t.priority = _json_int(entry, "priority", 0, -LIMITS["priority"], path, where)
        placement = entry.get("placement", "auto")
        if placement not in PLACEMENTS:
            raise ClusterInputError(path, f"{where}.placement: must be one of "
                                    f"{', '.join(PLACEMENTS)}")
        t.placement = "" if placement == "auto" else placement
        after = entry.get("after", [])
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            raise ClusterInputError(path, f"{where}.after: must be a list of task ids")
        t.parents = list(dict.fromkeys(after))
        g.tasks[tid] = t
    for t in g.tasks.values():
        for j, p in enumerate(t.parents):
            if p not in g.tasks:
                raise ClusterInputError(path, f"{t.where}.after[{j}]: unknown task '{p}'")
    return g


def _json_int(entry: dict[str, Any], key: str, default: int, minimum: int, path: str,
              where: str) -> int:
    if key not in entry:
        return default
    v = entry[key]
    if not isinstance(v, int) or isinstance(v, bool):
        raise ClusterInputError(path, f"{where}.{key}: must be an integer")
    if not minimum <= v <= LIMITS[key]:
        raise ClusterInputError(path, f"{where}.{key}: must be between {minimum} and "
                                f"{LIMITS[key]}")
    return v


class _NotJSON(ValueError):
    """What the parser's hooks refuse in a JSON job list, with the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _no_constant(name: str) -> Any:
    raise _NotJSON(f"{name} is not a number JSON allows")


def _int_literal(text: str) -> int:
    # checked before int() is asked, which refuses such an integer in a message of its own
    most = sys.get_int_max_str_digits()  # 0: no limit
    if most and len(text.lstrip("-")) > most:
        raise _NotJSON("an integer with too many digits")
    return int(text)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _NotJSON(f"duplicate key '{key}' in an object")
    return d


def _nul_at(x: Any, where: str) -> str | None:
    """The JSON path of the first string (or key) holding a NUL character: no argument,
    path, variable or id can carry one to the operating system."""
    if isinstance(x, str):
        return where if "\0" in x else None
    if isinstance(x, dict):
        for k, v in x.items():
            found = (f"{where}.{k!r}" if "\0" in k else None) or _nul_at(v, f"{where}.{k}")
            if found:
                return found
    elif isinstance(x, list):
        for i, v in enumerate(x):
            found = _nul_at(v, f"{where}[{i}]")
            if found:
                return found
    return None


def _refuse_records(rec: Any, path: str, where: str) -> None:
    """A cluster writes every task's records itself (its output and ``--json``): a path of
    an entry's own would be silently ignored, so it is refused."""
    if not isinstance(rec, dict):
        return
    for key in ("kickstart", "json"):
        if rec.get(key) not in (None, "-"):
            raise ClusterInputError(path, f"{where}.records.{key}: a cluster writes every "
                                    f"task's records into its output and --json; remove it")


# ------------------------------------------------------------------------------ the graph

def _link(g: TaskGraph) -> None:
    """Fill in children and refuse cycles (Kahn's algorithm; what is left is cyclic)."""
    tasks = g.tasks
    for t in tasks.values():
        for p in t.parents:
            tasks[p].children.append(t.id)
    indeg = {tid: len(t.parents) for tid, t in tasks.items()}
    stack = [tid for tid, d in indeg.items() if d == 0]
    seen = 0
    while stack:
        tid = stack.pop()
        seen += 1
        for c in tasks[tid].children:
            indeg[c] -= 1
            if indeg[c] == 0:
                stack.append(c)
    if seen == len(g.tasks):
        return
    left = {tid for tid, d in indeg.items() if d > 0}
    # every task left has a parent that is left too: walking parents must come round
    start = min(left, key=lambda x: g.tasks[x].seq)
    path_ids: list[str] = []
    pos: dict[str, int] = {}
    cur = start
    while cur not in pos:
        pos[cur] = len(path_ids)
        path_ids.append(cur)
        cur = next(p for p in g.tasks[cur].parents if p in left)
    cycle = path_ids[pos[cur]:]
    cycle.reverse()  # parent -> child order
    first = min(cycle, key=lambda x: g.tasks[x].seq)
    k = cycle.index(first)
    cycle = cycle[k:] + cycle[:k]  # told from the task that comes first in the input
    shown = " -> ".join([*cycle, cycle[0]])
    raise _error(g.path, g.tasks[first], f"dependency cycle: {shown}")
