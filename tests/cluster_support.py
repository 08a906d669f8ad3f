"""An executor whose attempts end the moment they start, for measuring what the cluster's
own side costs per task (the scheduler, the records, what is kept in memory) without the
processes: the test of bounded memory and benchmark B20 drive the real Scheduler and
RecordWriter with it.

It is a real :class:`~fluxlite.cluster.executors.Executor`: what it hands back is what the
local executor (or, with ``pool``, a pool worker) fills in for an attempt of ``/bin/true``
that exited 0 — a resolved argv, a start, a duration, a pid, the rusage of ``wait4``,
empty stdio tails and the names of their temporary files, the host (and a pool's rank,
worker and queue wait). No process runs.
"""

from __future__ import annotations

import io
import os
import time
from typing import Any

from fluxlite.cluster.executors import Executor
from fluxlite.cluster.formats import Task, TaskGraph
from fluxlite.cluster.records import Attempt
from fluxlite.execute.base import ExitStatus

# what wait4 tells of a /bin/true
_RUSAGE = {"utime": 0.001, "stime": 0.0, "maxrss": 24240, "minflt": 51, "majflt": 0,
           "nswap": 0, "inblock": 0, "outblock": 0, "msgsnd": 0, "msgrcv": 0,
           "nsignals": 0, "nvcsw": 1, "nivcsw": 0}
_OK = ExitStatus(0, 0)


class InstantExecutor(Executor):
    """``cores`` slots; every attempt it starts comes back from the next :meth:`poll`,
    exited 0 (or with ``codes[task id]``), as the local executor or a pool worker would
    have filled it in."""

    name = "instant"
    where = "the instant executor"

    def __init__(self, cores: int = 2, pool: bool = False, tmpdir: str = "/tmp/.instant",
                 codes: dict[str, int] | None = None) -> None:
        self.cores = self.free = cores
        self.pool = pool
        self.tmpdir = tmpdir
        self.codes = codes or {}
        self.host = os.uname().nodename
        self._ended: list[Attempt] = []
        self._pid = 1000

    def fits(self, task: Task) -> bool:
        return task.cores <= self.free

    def start(self, a: Attempt) -> Attempt | None:
        t = a.task
        self.free -= t.cores
        a.argv = list(t.argv) if t.argv is not None else ["/bin/sh", "-c", t.command or ""]
        a.start = time.time()
        a.t0 = time.monotonic()
        self._pid = self._pid + 1 if self._pid < 4_000_000 else 1000
        a.pid = self._pid
        base = f"{self.tmpdir}/{t.seq}.{t.id}.{a.number}"
        a.stdout_path, a.stderr_path = base + ".out", base + ".err"
        self._ended.append(a)
        return None

    def poll(self, timeout: float) -> list[Attempt]:
        ended, self._ended = self._ended, []
        for a in ended:
            self.free += a.task.cores
            code = self.codes.get(a.task.id, 0)
            a.status = _OK if code == 0 and a.stopped is None else ExitStatus.from_wait(
                code << 8)
            a.duration = 0.0012
            a.rusage = dict(_RUSAGE)
            a.stdout = a.stderr = b""
            a.stdout_info = a.stderr_info = (False, 0)
            if self.pool:
                a.host, a.rank, a.worker, a.queue_wait = self.host, 0, "w0", 0.0004
        return ended

    def running(self) -> int:
        return len(self._ended)

    def signal_all(self, signum: int, reason: str) -> None:
        for a in self._ended:
            a.stopped = a.stopped or reason

    def close(self) -> None:
        """Nothing runs: nothing to kill."""
        self._ended.clear()


class NullOut(io.RawIOBase):
    """An output stream that counts what it is given and keeps none of it."""

    def __init__(self) -> None:
        self.bytes = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        n = len(data)
        self.bytes += n
        return n


def instant_graph(n: int, path: str = "instant.dag") -> TaskGraph:
    """A graph of ``n`` independent ``/bin/true`` tasks, as a PMC DAG's TASK lines make it."""
    from fluxlite.cluster.formats import parse

    return parse("".join(f"TASK t{i} /bin/true\n" for i in range(n)), path, "pmc")
