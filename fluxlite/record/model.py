"""The provenance model: one Record per job; the writers only format it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any
    from fluxlite.execute.monitor import ResourceUsage
    from fluxlite.execute.base import SignalEvent, TaskResult
    from fluxlite.execute.timelimit import Schedule
    from fluxlite.integrity import Verification
    from fluxlite.spec import JobSpec
    from fluxlite.staging.phases import StageResult


@dataclass(frozen=True, slots=True)
class Identity:
    """The job a record is about, as records name it: a record needs no JobSpec."""

    name: str = ""
    id: str = ""
    site: str = "local"
    wf_label: str | None = None
    wf_stamp: str | None = None
    argv: tuple[str, ...] = ()  # the command as described: executable, then arguments
    source: str = ""  # the job description's file, when there is one
    placement: str = "local"

    @classmethod
    def of(cls, spec: JobSpec) -> Identity:
        """The identity of a described job."""
        return cls(name=spec.name, id=spec.id, site=spec.site, wf_label=spec.workflow.label,
                   wf_stamp=spec.workflow.stamp, argv=(spec.executable, *spec.arguments),
                   source=spec.source, placement=spec.placement)


class Phase(StrEnum):
    """The phases of one job, in the order they can come; the values name them in logs,
    records (``failed_phase``) and Flux memos. Kickstart's hooks are phases of their own
    (``setup`` is also the host inspection before anything else)."""

    SETUP = "setup"
    WORKDIR = "workdir"
    STAGE_IN = "stage-in"
    CHECKPOINT_IN = "checkpoint-in"
    PREJOB = "prejob"
    CONTAINER = "container"
    TASK = "task"
    TASK_DONE = "task-done"
    POSTJOB = "postjob"
    CLEANUP = "cleanup"
    CHECKPOINT_OUT = "checkpoint-out"
    STAGE_OUT = "stage-out"
    ENDING = "ending"
    RECORDS = "records"
    DONE = "done"
    FAILED = "failed"  # a Flux memo's last phase when the job failed


@dataclass(slots=True)
class PhaseTiming:
    """One phase as it went: when, how long, how much it moved, how it failed."""

    name: Phase
    start: float
    duration: float = 0.0
    ok: bool = True
    error: str | None = None
    bytes: int = 0
    files: int = 0


@dataclass(slots=True)
class StdioFile:
    """One standard stream of the task: where it went and the tail kept for the record."""

    name: str  # stdin, stdout, stderr
    path: str
    data: bytes | None = None  # the embedded tail, None for stdin
    truncated: bool = False
    size: int = 0
    kind: str = "temp"  # "temp": captured and embedded; "file": a named file; "fd": shared
    fd: int | None = None  # the descriptor shared with fluxlite (kind "fd")


@dataclass(slots=True)
class OutputInfo:
    """A file the record describes (an output, or a kickstart -s/-S entry)."""

    lfn: str
    path: str  # where it was in the worker directory
    stat: dict[str, Any] | None
    sha256: str | None = None
    checksum_timing: float = 0.0
    staged_to: str | None = None
    output: bool = True  # False: a file stat'ed before the task (kickstart -S)
    error: int | None = None  # the errno of a kickstart -S/-s file that could not be stat'ed


@dataclass(slots=True)
class Record:
    """Everything known about one job, gathered by the runner, formatted by the writers."""

    job: Identity | None
    start: float
    duration: float = 0.0
    hostname: str = ""
    hostaddr: str = ""
    interface: str = ""
    process: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] | None = None
    workdir: str | None = None
    cwd: str = ""
    phases: list[PhaseTiming] = field(default_factory=list)
    stage_in: list[StageResult] = field(default_factory=list)
    stage_out: list[StageResult] = field(default_factory=list)
    verifications: list[Verification] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)  # inputs staged without a checksum
    executable: str = ""
    executable_stat: dict[str, Any] | None = None
    task: TaskResult | None = None
    usage: ResourceUsage | None = None
    self_usage: dict[str, float] = field(default_factory=dict)
    stdio: list[StdioFile] = field(default_factory=list)
    outputs: list[OutputInfo] = field(default_factory=list)
    schedule: Schedule | None = None
    signals: list[SignalEvent] = field(default_factory=list)
    staged_after_signal: list[str] = field(default_factory=list)
    flux: dict[str, Any] | None = None
    jobids: dict[str, str] = field(default_factory=dict)
    exit_code: int = 0
    error: str | None = None
    failed_phase: Phase | None = None
    environment: dict[str, str] | None = None
    rlimits: dict[str, Any] | None = None
    full: bool = False  # environment and limits even on success (kickstart -f)
    compact: bool = False  # no machine section (kickstart -H)
    extra_sections: dict[str, Any] = field(default_factory=dict)  # setup/prejob/... records
    # the main job was never started (a setup or prejob hook failed or was stopped, or the
    # -k time passed before it): kickstart's record then has no mainjob entry
    main_skipped: bool = False
    container: dict[str, Any] | None = None  # runtime, version, image digest (containers)

    @property
    def ok(self) -> bool:
        """True when the job succeeded."""
        return self.exit_code == 0


def tail(path: str, limit: int) -> tuple[bytes, bool, int]:
    """The last ``limit`` bytes of a file: (data, truncated, size)."""
    from fluxlite.fsutil import read_tail

    try:
        with open(path, "rb") as fh:
            return read_tail(fh.fileno(), limit)
    except OSError:
        return b"", False, 0
