"""The parts of a job description: one frozen dataclass per section of job.json.

A section read whole from the field table (``limits``, ``workdir``, ``records``, ``staging``,
``resources``, ``workflow``) has the table's field names and defaults (``Validator.build``).
"""

from __future__ import annotations

from dataclasses import dataclass

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Literal


@dataclass(frozen=True, slots=True)
class Source:
    """One place an input can be read from, and whether its TLS certificate is verified."""

    url: str
    tls_verify: bool = True


@dataclass(frozen=True, slots=True)
class InputFile:
    """An input of the job: its lfn in the worker directory, its sources and checksum."""

    lfn: str
    sources: tuple[Source, ...]
    sha256: str | None = None
    executable: bool = False
    symlink: bool = False
    optional: bool = False  # used for checkpoint files: absence is not an error
    verify: bool = True


@dataclass(frozen=True, slots=True)
class OutputFile:
    """An output of the job: its lfn in the worker directory and where it goes."""

    lfn: str
    urls: tuple[str, ...]
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint file: staged in if present, staged out after the task however it ended."""

    lfn: str
    url: str


@dataclass(frozen=True, slots=True)
class Limits:
    """The task's time limits: walltime, the checkpoint TERM and the grace before KILL."""

    maxwalltime: float | None = None
    checkpoint_time: float | None = None
    kill_grace: float = 5.0


@dataclass(frozen=True, slots=True)
class WorkdirSpec:
    """Where the worker directory is made, when it is kept, and the free space it needs."""

    base: str | None = None
    keep: Literal["never", "always", "on-failure"] = "never"
    min_free_mb: float = 1000.0


@dataclass(frozen=True, slots=True)
class RecordsSpec:
    """Where the records go and how much of the task's stdout and stderr they embed."""

    kickstart: str | None = "-"
    json: str | None = None
    stdio_bytes: int = 262144  # bytes of stdout/stderr embedded in the record (tail)


@dataclass(frozen=True, slots=True)
class StagingOptions:
    """How transfers run: attempts, backoff, threads, timeouts and the minimum rate."""

    attempts: int = 3
    backoff: float = 1.0
    max_backoff: float = 30.0
    threads: int = 0  # 0: chosen from the machine
    timeout: float = 60.0  # seconds without progress before a network transfer is abandoned
    min_rate: float = 1024.0  # bytes/s a network attempt must move over rate_window (0: off)
    rate_window: float = 60.0


@dataclass(frozen=True, slots=True)
class Resources:
    """What the job asks of Flux when it is submitted: nodes, tasks, cores, GPUs, time, queue."""

    nodes: int | None = None
    tasks: int = 1
    cores_per_task: int = 1
    gpus_per_task: int = 0
    time_limit: float | None = None
    queue: str | None = None
    bank: str | None = None


@dataclass(frozen=True, slots=True)
class Workflow:
    """The workflow a job belongs to (Pegasus's label and timestamp)."""

    label: str | None = None
    stamp: str | None = None

