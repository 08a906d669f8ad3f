"""One try of one job or cluster task, as the records tell it, whatever record told it.

The same attempt can be told by several records (the kickstart record and the JSON record of
a job; a cluster's output and its JSON record): it is recognised by the pid of its task and
the millisecond its task started, which every record of it carries, and its records are
merged into one ``Attempt``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta, UTC

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

# Why an attempt ended; a failed attempt has exactly one cause.
OK = "ok"
EXIT = "exit"  # the task exited with a non-zero code (or could not be started)
SIGNAL = "signal"  # ended by a signal
TIMEOUT = "timeout"  # stopped by its time limit
INFRA = "infrastructure"  # a failure outside the task: staging, checksums, worker directory
CAUSES = (OK, EXIT, SIGNAL, TIMEOUT, INFRA)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(slots=True)
class Attempt:
    """One attempt of one task, as the records tell it: times, exit, cause, resources, bytes."""

    key: tuple[Any, ...]  # (pid of the task, its start in ms since the epoch[, which task])
    task: tuple[Any, ...]  # which task this is a try of
    task_id: str
    name: str  # the transformation
    source: str  # the record it came from: a path, with a line or a JSON path in it
    start: float  # epoch seconds: the whole attempt (staging included)
    duration: float
    rich: int = 1  # 2: a fluxlite JSON record (preferred when records are merged)
    try_no: int | None = None
    host: str | None = None
    runtime: float | None = None  # the task's own time (kickstart's mainjob)
    exit_code: int | None = None
    signal: int | None = None
    cause: str = OK
    reason: str | None = None
    utime: float | None = None
    stime: float | None = None
    maxrss_kb: int | None = None
    cores: int | None = None
    bytes_in: int | None = None
    bytes_out: int | None = None
    secs_in: float | None = None
    secs_out: float | None = None
    integrity_s: float | None = None
    phases: list[tuple[str, float, float]] = field(default_factory=list)  # name, start, secs

    @property
    def ok(self) -> bool:
        """Whether the attempt succeeded."""
        return self.cause == OK

    @property
    def end(self) -> float:
        """When the attempt ended (seconds since the epoch)."""
        return self.start + self.duration

    @property
    def task_secs(self) -> float:
        """Seconds the task itself ran (the whole attempt when that is not known)."""
        return self.runtime if self.runtime is not None else self.duration


_FIELDS = [f.name for f in dataclasses.fields(Attempt)]


def merge(a: Attempt, b: Attempt) -> Attempt:
    """One attempt from two records of it: the richer record wins, the other fills gaps."""
    if b.rich > a.rich:
        a, b = b, a
    for name in _FIELDS:
        mine = getattr(a, name)
        if mine is None or (name == "phases" and not mine):
            setattr(a, name, getattr(b, name))
    if a.task[0] != "cluster" and b.task[0] == "cluster":
        a.task, a.task_id = b.task, b.task_id  # a cluster's own view of which task it is
    if a.cores is None or (b.cores or 0) > a.cores:
        a.cores = b.cores
    return a


def ms_key(epoch: float) -> int:
    """The millisecond of a time as the records print it (rounded to the microsecond, then
    cut to the millisecond, as ``datetime.isoformat(timespec="milliseconds")`` does)."""
    dt = datetime.fromtimestamp(epoch, tz=UTC)
    return (dt - _EPOCH) // _MS


def epoch_of(value: Any) -> float | None:
    """A record's time: a datetime (YAML), an ISO 8601 string or epoch seconds."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None
