"""The field table of job.json: every field of every section, its kind, default and bounds.

It is the one description of the format: the validator reads every field through it
(``fluxlite.spec.validate``), the section dataclasses share its names and defaults
(``fluxlite.spec.sections``), and the shipped JSON Schema is generated from it
(``python -m fluxlite.schema``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fluxlite.numbers import MAX_SECONDS

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

SPEC_VERSION = 1
SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
KEEP_POLICIES = ("never", "always", "on-failure")
PLACEMENTS = ("local", "flux", "nested")
USR1_ACTIONS = ("schedule", "forward", "term")
CONTAINER_RUNTIMES = ("apptainer", "singularity", "podman", "docker", "charliecloud")
HUB_IMAGE_PATTERN = r"^(docker|library|oras|shub)://[^\s]+$"
INTEGRITY = ("best-effort", "required")
# fluxlite's own area of the worker directory (captured stdout and stderr): no lfn may be in it
RESERVED_DIR = ".fluxlite"


@dataclass(frozen=True, slots=True)
class Field:
    """One field of job.json: its kind, default and bounds.

    kinds: ``string`` (non-empty text), ``text`` (any text), ``path`` (a file path;
    relative ones resolve against the job file's directory), ``record`` (a path or ``-``),
    ``lfn``, ``sha256``, ``boolean``, ``integer``, ``number``, ``duration`` (seconds, or text
    such as ``90s``, ``30m``, ``1h30m``), ``enum`` (one of ``options``), ``const``, and the
    shapes checked in code: ``object`` (the section named ``section``), ``list`` (of
    ``items``), ``custom`` (``schema`` gives its JSON Schema). A null value means the
    default, except with ``null_is_none``, where null is a value of its own (None).
    """

    kind: str
    default: Any = None
    minimum: float = 0.0
    maximum: float = MAX_SECONDS
    exclusive_minimum: bool = False
    options: tuple[Any, ...] = ()
    required: bool = False
    null_is_none: bool = False
    section: str = ""
    items: Field | None = None
    schema: dict[str, Any] | None = None
    doc: str = ""


_S = Field("string")
_URL_ITEM = Field("custom", schema={"oneOf": [
    {"type": "string", "minLength": 1}, {"$section": "source"}]})

# section name -> field name -> Field. "" is the top level; a section whose values all come
# from this table is built straight into the dataclass of the same field names
# (see Validator.section).
SECTIONS: dict[str, dict[str, Field]] = {
    "": {
        "fluxlite": Field("const", options=(SPEC_VERSION,), required=True,
                          doc="the version of this format"),
        "name": Field("string", doc="transformation name (kickstart -n)"),
        "id": Field("string", doc="job id / derivation (kickstart -N)"),
        "site": Field("string", default="local", doc="resource / site handle (kickstart -R)"),
        "workflow": Field("object", section="workflow"),
        "executable": Field("custom", required=True, schema={"oneOf": [
            {"type": "string", "minLength": 1}, {"$section": "executable"}]}),
        "arguments": Field("list", items=Field("text")),
        "environment": Field("custom", schema={
            "type": ["object", "null"], "propertyNames": {"minLength": 1, "not": {
                "pattern": "[=\u0000]"}},
            "additionalProperties": {"type": "string", "not": {"pattern": "\u0000"}}}),
        "stdin": Field("lfn"),
        "stdout": Field("lfn"),
        "stderr": Field("lfn"),
        "inputs": Field("list", items=Field("object", section="inputs")),
        "outputs": Field("list", items=Field("object", section="outputs")),
        "checkpoints": Field("list", items=Field("object", section="checkpoints")),
        "limits": Field("object", section="limits"),
        "workdir": Field("object", section="workdir"),
        "records": Field("object", section="records"),
        "staging": Field("object", section="staging"),
        "resources": Field("object", section="resources"),
        "placement": Field("enum", default="local", options=PLACEMENTS),
        "monitor": Field("object", section="monitor"),
        "signals": Field("object", section="signals"),
        "meta": Field("list", items=Field("path")),
        "write_meta": Field("path"),
        "integrity": Field("enum", default="best-effort", options=INTEGRITY,
                           doc="required: every input must have a sha256"),
        "container": Field("object", section="container",
                           doc="the task runs inside this image (docs/containers.md)"),
    },
    "container": {
        "type": Field("enum", required=True, options=CONTAINER_RUNTIMES),
        "image": Field("custom", required=True, schema={"oneOf": [
            {"type": "string", "pattern": HUB_IMAGE_PATTERN}, {"$section": "container_image"}]}),
        "mounts": Field("list", items=Field("custom", schema={
            "type": "string", "pattern": "^/[^:,]*:/[^:,]*(:(ro|rw))?$"})),
        "workdir": Field("custom", default="/srv", schema={"type": "string",
                                                           "pattern": "^/[^:,]*$"}),
        "options": Field("list", items=_S),
    },
    "container_image": {
        "url": Field("custom", schema={"oneOf": [
            {"type": "string", "minLength": 1}, {"$section": "source"}]}),
        "urls": Field("list", items=_URL_ITEM),
        "sha256": Field("sha256", required=True),
    },
    "workflow": {"label": _S, "stamp": _S},
    "executable": {
        "url": Field("custom", schema={"type": "string", "minLength": 1}),
        "urls": Field("list", items=_URL_ITEM),
        "sha256": Field("sha256"),
        "lfn": Field("lfn"),
    },
    "source": {
        "url": Field("custom", required=True, schema={"type": "string", "minLength": 1}),
        "tls_verify": Field("boolean", default=True),
    },
    "inputs": {
        "lfn": Field("lfn", required=True),
        "urls": Field("list", required=True, items=_URL_ITEM),
        "sha256": Field("sha256"),
        "executable": Field("boolean", default=False),
        "symlink": Field("boolean", default=False),
        "optional": Field("boolean", default=False),
    },
    "outputs": {
        "lfn": Field("lfn", required=True),
        "urls": Field("list", required=True, items=Field(
            "custom", schema={"type": "string", "minLength": 1})),
        "optional": Field("boolean", default=False),
    },
    "checkpoints": {
        "lfn": Field("lfn", required=True),
        "url": Field("custom", required=True, schema={"type": "string", "minLength": 1}),
    },
    "limits": {
        "maxwalltime": Field("duration", exclusive_minimum=True),
        "checkpoint_time": Field("duration", exclusive_minimum=True),
        "kill_grace": Field("duration", default=5.0, maximum=86400.0),
    },
    "workdir": {
        "base": Field("path"),
        "keep": Field("enum", default="never", options=KEEP_POLICIES),
        "min_free_mb": Field("number", default=1000.0, maximum=1e9),
    },
    "records": {
        "kickstart": Field("record", default="-", null_is_none=True),
        "json": Field("record", null_is_none=True),
        "stdio_bytes": Field("integer", default=262144, maximum=2**30),
    },
    "staging": {
        "attempts": Field("integer", default=3, minimum=1, maximum=100),
        "backoff": Field("duration", default=1.0, maximum=86400.0),
        "max_backoff": Field("duration", default=30.0, maximum=86400.0),
        "threads": Field("integer", default=0, maximum=1024),
        "timeout": Field("duration", default=60.0, exclusive_minimum=True, maximum=86400.0),
        "min_rate": Field("number", default=1024.0, maximum=1e12),
        "rate_window": Field("duration", default=60.0, exclusive_minimum=True, maximum=86400.0),
    },
    "resources": {
        "nodes": Field("integer", minimum=1, maximum=100_000),
        "tasks": Field("integer", default=1, minimum=1, maximum=10_000_000),
        "cores_per_task": Field("integer", default=1, minimum=1, maximum=100_000),
        "gpus_per_task": Field("integer", default=0, maximum=10_000),
        "time_limit": Field("duration", exclusive_minimum=True),
        "queue": _S,
        "bank": _S,
    },
    "monitor": {"interval": Field("duration", default=1.0, minimum=0.01, maximum=3600.0)},
    "signals": {"usr1": Field("enum", default="schedule", options=USR1_ACTIONS)},
}
