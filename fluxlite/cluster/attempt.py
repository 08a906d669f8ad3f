"""One try of one task, as an executor ran it: what the executors fill in, the pool's
messages carry and the records render (:mod:`fluxlite.cluster.records`). Kept apart from the
records so that a pool worker, which only fills attempts in, never imports the renderers."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

from fluxlite.cluster.formats import Task
from fluxlite.errors import EXIT_INFRA, SIGNAL_BASE
from fluxlite.execute.base import ExitStatus

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any


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
