"""job.json: untrusted JSON turned into frozen, validated objects.

Every problem is reported at once with its JSON path (``inputs[1].urls[0]: ...``);
nothing downstream re-checks what is validated here. The field table (``SECTIONS``) is the
one description of the format: the validator reads every field through it, and the shipped
JSON Schema is generated from it (``python -m fluxlite.schema``).

The modules, each importing only those listed before it:

- ``fields``: the field table and the format's constants;
- ``sections``: the dataclasses of the sections (``Limits``, ``InputFile``, ...);
- ``container``: the ``container`` section, its dataclasses and its validation (imported
  only for a job that has one);
- ``validate``: the validator, which reads a parsed document into a JobSpec's fields;
- ``model``: ``JobSpec`` and its validating constructors (``from_file``, ``from_json``);
- ``preflight``: what can be known to fail before the job starts.

The package re-exports the names the rest of fluxlite uses, so that ``from fluxlite.spec
import JobSpec`` stays the way in.
"""

from __future__ import annotations

from fluxlite.spec.fields import (
    CONTAINER_RUNTIMES,
    HUB_IMAGE_PATTERN,
    INTEGRITY,
    KEEP_POLICIES,
    PLACEMENTS,
    RESERVED_DIR,
    SECTIONS,
    SHA256_RE,
    SPEC_VERSION,
    USR1_ACTIONS,
    Field,
)
from fluxlite.spec.model import MAX_JOB_FILE, JobSpec, with_records
from fluxlite.spec.preflight import (
    check_ready,
    executable_problem,
    preflight,
    preflight_warnings,
)
from fluxlite.spec.sections import (
    Checkpoint,
    InputFile,
    Limits,
    OutputFile,
    RecordsSpec,
    Resources,
    Source,
    StagingOptions,
    WorkdirSpec,
    Workflow,
)
from fluxlite.spec.validate import check_lfn, one_line

__all__ = [
    "CONTAINER_RUNTIMES",
    "HUB_IMAGE_PATTERN",
    "INTEGRITY",
    "KEEP_POLICIES",
    "MAX_JOB_FILE",
    "PLACEMENTS",
    "RESERVED_DIR",
    "SECTIONS",
    "SHA256_RE",
    "SPEC_VERSION",
    "USR1_ACTIONS",
    "Checkpoint",
    "Field",
    "InputFile",
    "JobSpec",
    "Limits",
    "OutputFile",
    "RecordsSpec",
    "Resources",
    "Source",
    "StagingOptions",
    "WorkdirSpec",
    "Workflow",
    "check_lfn",
    "check_ready",
    "executable_problem",
    "one_line",
    "preflight",
    "preflight_warnings",
    "with_records",
]
