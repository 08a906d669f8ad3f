"""The job description: ``JobSpec``, one job validated and frozen, made of the sections of
``fluxlite.spec.sections`` and built by its validating constructors."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from fluxlite.errors import SpecError
from fluxlite.spec.sections import (
    Checkpoint,
    InputFile,
    Limits,
    OutputFile,
    RecordsSpec,
    Resources,
    StagingOptions,
    WorkdirSpec,
    Workflow,
)
from fluxlite.spec.validate import Objects, job_fields, load_json

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:  # the container section is read only when a job has one
    from typing import Any
    from fluxlite.spec.container import ContainerSpec

MAX_JOB_FILE = 256 << 20  # bytes; a job file is read whole


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job, validated and frozen: what runs, what is staged in and out, its limits and
    records. Built by ``from_file``, ``from_json`` or ``from_dict``."""

    executable: str  # a path, a name on PATH, or the lfn of a staged executable
    name: str = ""
    id: str = ""
    site: str = "local"
    workflow: Workflow = field(default_factory=Workflow)
    arguments: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()
    stdin: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    inputs: tuple[InputFile, ...] = ()
    outputs: tuple[OutputFile, ...] = ()
    checkpoints: tuple[Checkpoint, ...] = ()
    limits: Limits = field(default_factory=Limits)
    workdir: WorkdirSpec = field(default_factory=WorkdirSpec)
    records: RecordsSpec = field(default_factory=RecordsSpec)
    staging: StagingOptions = field(default_factory=StagingOptions)
    resources: Resources = field(default_factory=Resources)
    placement: str = "local"
    monitor_interval: float = 1.0
    usr1: str = "schedule"
    meta: tuple[str, ...] = ()
    write_meta: str | None = None
    integrity: str = "best-effort"
    staged_executable: InputFile | None = None
    source: str = ""
    container: ContainerSpec | None = None  # the task runs inside this image

    @property
    def env(self) -> dict[str, str]:
        """The task's extra environment variables, as a dictionary."""
        return dict(self.environment)

    @classmethod
    def from_file(cls, path: str, relative_to_file: bool = True) -> JobSpec:
        """Read a job file; relative paths in it resolve against its directory (against
        the current directory with ``relative_to_file=False``: a copy written elsewhere,
        as the cluster writes the jobs of a JSON job list)."""
        from fluxlite.fsutil import read_small_file

        try:
            raw = read_small_file(path, MAX_JOB_FILE)
        except OSError as err:
            raise SpecError([f"cannot read job file: {err.strerror}"], source=path) from err
        except ValueError as err:  # not a regular file, too large, a NUL byte in the name
            raise SpecError([f"cannot read job file: {err}"], source=path) from err
        base = os.path.dirname(os.path.abspath(path)) if relative_to_file else None
        return cls.from_json(raw, source=path, base_dir=base)

    @classmethod
    def from_json(cls, raw: bytes | str, source: str = "",
                  base_dir: str | None = None) -> JobSpec:
        """Parse and validate a job description's text; a SpecError lists every problem."""
        doc, seen = load_json(raw, source)
        return cls.from_dict(doc, source=source, base_dir=base_dir, _objects=seen)

    @classmethod
    def from_dict(cls, doc: Any, source: str = "", base_dir: str | None = None,
                  _objects: Objects | None = None) -> JobSpec:
        """Validate a parsed document. ``base_dir``: where relative paths resolve (None:
        they are kept relative, to the current directory)."""
        return cls(**job_fields(doc, source, base_dir, _objects))


def with_records(spec: JobSpec, kickstart: str | None, json: str | None) -> JobSpec:
    """The spec with its record destinations replaced (None: as the spec says)."""
    r = spec.records
    return replace(spec, records=replace(
        r, kickstart=r.kickstart if kickstart is None else kickstart,
        json=r.json if json is None else json))

