"""job.json: untrusted JSON turned into frozen, validated objects.

Every problem is reported at once with its JSON path (``inputs[1].urls[0]: ...``);
nothing downstream re-checks what is validated here. The field table (``SECTIONS``) is the
one description of the format: the validator reads every field through it, and the shipped
JSON Schema is generated from it (``python -m fluxlite.schema``).
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from fluxlite.errors import SpecError
from fluxlite.numbers import MAX_SECONDS, check_number, parse_duration
from fluxlite.numbers import kind as _tname
from fluxlite.urls import local_path, scheme_of

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from fluxlite.container.spec import ContainerSpec

SPEC_VERSION = 1
SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
KEEP_POLICIES = ("never", "always", "on-failure")
PLACEMENTS = ("local", "flux", "nested")
USR1_ACTIONS = ("schedule", "forward", "term")
CONTAINER_RUNTIMES = ("apptainer", "singularity", "podman", "docker", "charliecloud")
HUB_IMAGE_PATTERN = r"^(docker|library|oras|shub)://[^\s]+$"
INTEGRITY = ("best-effort", "required")
MAX_JOB_FILE = 256 << 20  # bytes; a job file is read whole
# fluxlite's own area of the worker directory (captured stdout and stderr): no lfn may be in it
RESERVED_DIR = ".fluxlite"


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
        import json  # the stdlib parser: a job file is small and orjson costs more to import

        seen = _Objects()
        try:
            doc = json.loads(raw, object_pairs_hook=seen.hook)
        except (ValueError, RecursionError) as err:
            # ValueError: JSONDecodeError, bad UTF-8 and numbers too long to convert;
            # RecursionError: arrays or objects nested too deep to parse
            why = "nested too deeply" if isinstance(err, RecursionError) else str(err)
            raise SpecError([f"malformed JSON: {why}"], source=source) from err
        return cls.from_dict(doc, source=source, base_dir=base_dir, _objects=seen)

    @classmethod
    def from_dict(cls, doc: Any, source: str = "", base_dir: str | None = None,
                  _objects: _Objects | None = None) -> JobSpec:
        """Validate a parsed document. ``base_dir``: where relative paths resolve (None:
        they are kept relative, to the current directory)."""
        v = _Validator(base_dir)
        spec = v.job(doc, source)
        if _objects is not None:
            for obj in _objects.with_duplicates:
                if id(obj) not in v.reported_objects:
                    v.err("", f"duplicate key '{obj.duplicates[0]}' in an object")
        if v.problems:
            raise SpecError(v.problems, source=source)
        assert spec is not None
        return spec


# --------------------------------------------------------------------------- field table


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
# (see _Validator.section).
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


# --------------------------------------------------------------------------- validation


def check_lfn(lfn: str) -> str | None:
    """Why an lfn is unsafe as a workdir-relative name, or None when it is fine."""
    if not lfn:
        return "is empty"
    if "\x00" in lfn:
        return "contains a NUL byte"
    if lfn.startswith("/"):
        return f"'{lfn}' is absolute: it must stay inside the worker directory"
    parts = lfn.split("/")
    if ".." in parts:
        return f"'{lfn}' escapes the worker directory"
    norm = posixpath.normpath(lfn)
    if norm in (".", "") or norm.startswith("../"):
        return f"'{lfn}' does not name a file inside the worker directory"
    if lfn.endswith("/"):
        return f"'{lfn}' ends with '/': it must name a file"
    if norm.split("/")[0] == RESERVED_DIR:
        return f"'{lfn}' is inside {RESERVED_DIR}/, fluxlite's own area of the worker directory"
    return None


class _Objects:
    """The JSON parser's object hook: dicts that remember the keys given twice."""

    def __init__(self) -> None:
        self.with_duplicates: list[_Dict] = []

    def hook(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = _Dict(pairs)
        if len(d) != len(pairs):
            counts = Counter(k for k, _ in pairs)
            d.duplicates = [k for k, n in counts.items() if n > 1]
            self.with_duplicates.append(d)
        return d


class _Dict(dict[str, Any]):
    duplicates: list[str] = []  # noqa: RUF012 - set per instance by the hook


class _Validator:
    def __init__(self, base_dir: str | None = None) -> None:
        self.problems: list[str] = []
        self.staged: dict[str, str] = {}  # normalised lfn -> the JSON path staging it in
        self.base_dir = base_dir
        self.reported_objects: set[int] = set()

    def err(self, path: str, msg: str) -> None:
        self.problems.append(one_line(f"{path}: {msg}" if path else msg))

    # typed getters ---------------------------------------------------------------
    def obj(self, value: Any, path: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.err(path, f"must be an object, not {_tname(value)}")
            return None
        if isinstance(value, _Dict) and value.duplicates:
            self.reported_objects.add(id(value))
            for key in value.duplicates:
                self.err(_join(path, key), "is given more than once")
        return value

    def known(self, d: dict[str, Any], section: str, path: str) -> None:
        """Report the fields of ``d`` the table does not list (``x-`` names are free)."""
        table = SECTIONS[section]
        for key in d:
            if key not in table and not key.startswith("x-"):
                self.err(_join(path, key), "unknown field")

    def value(self, d: dict[str, Any], key: str, path: str, f: Field) -> Any:
        """The value of one scalar field, checked as the table says; its default when
        absent or wrong (the problem is recorded)."""
        p = _join(path, key)
        if key not in d or (d[key] is None and not f.null_is_none):
            if f.required:
                self.err(p, "is required")
            return f.default
        return self.scalar(d[key], p, f)

    def scalar(self, val: Any, p: str, f: Field) -> Any:
        k = f.kind
        if val is None and f.null_is_none:
            return None
        if k in ("integer", "number"):
            why = check_number(val, minimum=f.minimum, maximum=f.maximum,
                               integer=k == "integer", exclusive_minimum=f.exclusive_minimum)
            if why:
                self.err(p, why)
                return f.default
            return int(val) if k == "integer" else float(val)
        if k == "duration":
            if isinstance(val, bool) or not isinstance(val, (int, float, str)):
                self.err(p, f"must be a number of seconds or a duration such as 90s, "
                         f"not {_tname(val)}")
                return f.default
            try:
                return parse_duration(val, minimum=f.minimum, maximum=f.maximum,
                                      exclusive_minimum=f.exclusive_minimum)
            except ValueError as err:
                self.err(p, str(err))
                return f.default
        if k == "boolean":
            if not isinstance(val, bool):
                self.err(p, f"must be true or false, not {_tname(val)}")
                return f.default
            return val
        if k == "const":
            if val not in f.options or isinstance(val, bool):
                self.err(p, f"must be {f.options[0]!r}, not {val!r:.40}")
                return f.default
            return val
        if not isinstance(val, str):
            self.err(p, f"must be a string, not {_tname(val)}")
            return f.default
        if k != "text" and not val:
            self.err(p, "must not be empty")
            return f.default
        if not self.encodable(val, p):
            return f.default
        if k == "enum":
            if val not in f.options:
                self.err(p, f"must be one of {', '.join(f.options)}, not '{val:.40}'")
                return f.default
        elif k == "lfn":
            why = check_lfn(val)
            if why:
                self.err(p, why)
                return None
        elif k == "sha256":
            if not SHA256_RE.match(val):
                self.err(p, "must be 64 hexadecimal digits")
                return None
            return val.lower()
        elif k == "path" or (k == "record" and val != "-"):
            return self.resolve(val)
        return val

    def encodable(self, text: str, path: str) -> bool:
        """Whether text can be handed to the operating system (argv, environment, paths):
        no NUL, and no lone UTF-16 surrogate from a ``\\ud800`` escape in the JSON."""
        if "\x00" in text:
            self.err(path, "contains a NUL character")
            return False
        try:
            os.fsencode(text)
        except UnicodeEncodeError as err:
            self.err(path, f"contains {text[err.start]!a}, which is not a character")
            return False
        return True

    def resolve(self, path: str) -> str:
        """A path of the job file: relative ones are relative to the job file's directory."""
        if self.base_dir is None or os.path.isabs(path):
            return path
        return os.path.normpath(os.path.join(self.base_dir, path))

    def section(self, d: dict[str, Any], key: str, path: str = "") -> dict[str, Any]:
        """Every field of an object section, checked through the table (defaults for the
        absent ones)."""
        p = _join(path, key)
        raw = d.get(key)
        sub = self.obj(raw, p) if raw is not None else None
        sub = sub if sub is not None else {}
        self.known(sub, key, p)
        return {name: self.value(sub, name, p, f) for name, f in SECTIONS[key].items()}

    def build(self, cls: type, d: dict[str, Any], key: str) -> Any:
        """A section read into the dataclass whose fields are the table's."""
        return cls(**self.section(d, key))

    def top(self, d: dict[str, Any], key: str) -> Any:
        return self.value(d, key, "", SECTIONS[""][key])

    def list_of(self, d: dict[str, Any], key: str, path: str) -> list[Any]:
        if key not in d or d[key] is None:
            return []
        if not isinstance(d[key], list):
            self.err(_join(path, key), f"must be a list, not {_tname(d[key])}")
            return []
        return list(d[key])

    def url(self, value: Any, path: str, direction: str) -> str | None:
        from fluxlite.staging import supported_schemes

        if not isinstance(value, str) or not value:
            self.err(path, f"must be a non-empty URL string, not {_tname(value)}")
            return None
        if not self.encodable(value, path):
            return None
        scheme = scheme_of(value)
        if scheme not in supported_schemes(direction):
            self.err(path, f"unsupported scheme '{scheme}' for {direction}")
            return None
        if scheme in ("file", "symlink"):
            try:
                p = local_path(value)
            except ValueError as err:
                self.err(path, str(err))
                return None
            if "\x00" in p:
                self.err(path, f"'{value}' holds an encoded NUL character (%00)")
                return None
            if not p.startswith("/"):
                if p == value and self.base_dir is not None and p:
                    return self.resolve(p)  # a plain relative path in the job file
                self.err(path, f"'{value}' must name an absolute path")
                return None
        return value

    # sections ----------------------------------------------------------------------
    def job(self, doc: Any, source: str) -> JobSpec | None:
        d = self.obj(doc, "")
        if d is None:
            return None
        self.known(d, "", "")
        version = d.get("fluxlite")
        if version is None:
            self.err("fluxlite", f"is required (the job.json version, {SPEC_VERSION})")
        elif version != SPEC_VERSION or isinstance(version, bool):
            self.err("fluxlite", f"unsupported version {version!r:.40}: this fluxlite reads "
                     f"version {SPEC_VERSION}")

        executable, staged_exe = self.executable(d.get("executable"))
        args = [self.scalar(a, f"arguments[{i}]", SECTIONS[""]["arguments"].items or _S)
                for i, a in enumerate(self.list_of(d, "arguments", ""))]

        env: list[tuple[str, str]] = []
        if d.get("environment") is not None:
            envd = self.obj(d["environment"], "environment")
            for k, val in (envd or {}).items():
                if not k or "=" in k or "\x00" in k:
                    self.err(f"environment.{k!a}", "is not a valid variable name (it is "
                             "empty or holds '=' or a NUL character)")
                elif not isinstance(val, str):
                    self.err(f"environment.{k}", f"must be a string, not {_tname(val)}")
                elif self.encodable(k, "environment") and self.encodable(
                        val, f"environment.{k}"):
                    env.append((k, val))

        inputs = [self.input_file(x, f"inputs[{i}]")
                  for i, x in enumerate(self.list_of(d, "inputs", ""))]
        outputs = [self.output_file(x, f"outputs[{i}]")
                   for i, x in enumerate(self.list_of(d, "outputs", ""))]
        ckpts = [self.checkpoint(x, f"checkpoints[{i}]")
                 for i, x in enumerate(self.list_of(d, "checkpoints", ""))]

        self.unique_lfns(inputs, outputs, ckpts, staged_exe)
        self.unique_destinations(outputs, ckpts)

        limits = self.limits(d)
        workdir = self.build(WorkdirSpec, d, "workdir")
        if workdir.base is not None and not os.path.isabs(workdir.base):
            self.err("workdir.base", f"'{workdir.base}' must be an absolute path "
                     "(or relative to the job file's directory)")
        records = self.build(RecordsSpec, d, "records")
        if records.kickstart == "-" and records.json == "-":
            self.err("records", "only one record can go to stdout")
        staging = self.build(StagingOptions, d, "staging")
        resources = self.build(Resources, d, "resources")
        wf = self.build(Workflow, d, "workflow")
        monitor_interval = self.section(d, "monitor")["interval"]
        usr1 = self.section(d, "signals")["usr1"]
        meta = [self.scalar(mp, f"meta[{i}]", Field("path"))
                for i, mp in enumerate(self.list_of(d, "meta", ""))]

        ident = {key: self.top(d, key)
                 for key in ("name", "id", "site", "placement", "write_meta", "integrity")}
        container = None
        if d.get("container") is not None:
            from fluxlite.container.spec import parse_container

            container = parse_container(self, d["container"], env=env)
        stdio = {k: self.stdio_name(d, k) for k in ("stdin", "stdout", "stderr")}
        if ident["integrity"] == "required" and not meta:
            self.checksums_required(inputs, staged_exe, {})
        if None in inputs or None in outputs or None in ckpts or self.problems:
            return None
        return JobSpec(
            executable=executable,
            name=ident["name"] or os.path.basename(executable) or "task",
            id=ident["id"] or "",
            site=ident["site"],
            workflow=wf,
            arguments=tuple(args),
            environment=tuple(env),
            stdin=stdio["stdin"],
            stdout=stdio["stdout"],
            stderr=stdio["stderr"],
            inputs=tuple(x for x in inputs if x is not None),
            outputs=tuple(x for x in outputs if x is not None),
            checkpoints=tuple(x for x in ckpts if x is not None),
            limits=limits, workdir=workdir, records=records, staging=staging,
            resources=resources,
            placement=ident["placement"],
            monitor_interval=monitor_interval,
            usr1=usr1,
            meta=tuple(meta),
            write_meta=ident["write_meta"],
            integrity=ident["integrity"],
            staged_executable=staged_exe,
            source=source,
            container=container,
        )

    def executable(self, exe_raw: Any) -> tuple[str, InputFile | None]:
        if exe_raw is None:
            self.err("executable", "is required")
            return "", None
        if isinstance(exe_raw, str):
            return self.scalar(exe_raw, "executable", _S) or "", None
        if not isinstance(exe_raw, dict):
            self.err("executable", f"must be a string or an object, not {_tname(exe_raw)}")
            return "", None
        d = self.obj(exe_raw, "executable") or {}
        self.known(d, "executable", "executable")
        urls = d.get("urls") if "urls" in d else ([d["url"]] if "url" in d else None)
        if not urls:
            self.err("executable.url", "is required")
            return "", None
        key = "urls" if "urls" in d else "url"
        lfn = d["lfn"] if d.get("lfn") is not None else _basename_of(
            urls[0] if isinstance(urls, list) else None)
        staged = self.input_file({"lfn": lfn, "urls": urls, "sha256": d.get("sha256"),
                                  "executable": True}, "executable", url_key_path=key)
        return (staged.lfn if staged else ""), staged

    def sources(self, value: Any, path: str, direction: str) -> list[Source]:
        if not isinstance(value, list) or not value:
            self.err(path, "must be a non-empty list of URLs")
            return []
        out = []
        for j, u in enumerate(value):
            p = f"{path}[{j}]"
            tls = True
            if isinstance(u, dict):
                src = self.obj(u, p) or {}
                self.known(src, "source", p)
                tls = self.value(src, "tls_verify", p, SECTIONS["source"]["tls_verify"])
                u = src.get("url")
                p = f"{p}.url"
            url = self.url(u, p, direction)
            if url is not None:
                out.append(Source(url, tls))
        return out

    def input_file(self, x: Any, path: str, url_key_path: str = "urls") -> InputFile | None:
        d = self.obj(x, path)
        if d is None:
            return None
        self.known(d, "inputs", path)
        t = SECTIONS["inputs"]
        lfn = self.value(d, "lfn", path, t["lfn"])
        sources = self.sources(d.get("urls"), _join(path, url_key_path), "stage-in")
        sha = self.value(d, "sha256", path, t["sha256"])
        flags = {k: self.value(d, k, path, t[k]) for k in ("executable", "symlink", "optional")}
        if lfn is None or not sources:
            return None
        return InputFile(lfn=lfn, sources=tuple(sources), sha256=sha, **flags)

    def output_file(self, x: Any, path: str) -> OutputFile | None:
        d = self.obj(x, path)
        if d is None:
            return None
        self.known(d, "outputs", path)
        t = SECTIONS["outputs"]
        lfn = self.value(d, "lfn", path, t["lfn"])
        urls = [s.url for s in self.sources(d.get("urls"), _join(path, "urls"), "stage-out")]
        if lfn is None or not urls:
            return None
        return OutputFile(lfn, tuple(urls), self.value(d, "optional", path, t["optional"]))

    def checkpoint(self, x: Any, path: str) -> Checkpoint | None:
        d = self.obj(x, path)
        if d is None:
            return None
        self.known(d, "checkpoints", path)
        lfn = self.value(d, "lfn", path, SECTIONS["checkpoints"]["lfn"])
        if "url" not in d:
            self.err(_join(path, "url"), "is required")
            return None
        url = self.url(d.get("url"), _join(path, "url"), "stage-out")
        if url is not None and scheme_of(url) not in _supported("stage-in"):
            self.err(_join(path, "url"), f"scheme '{scheme_of(url)}' cannot be read back")
            url = None
        if lfn is None or url is None:
            return None
        return Checkpoint(lfn, url)

    def unique_lfns(self, inputs: list[InputFile | None], outputs: list[OutputFile | None],
                    ckpts: list[Checkpoint | None], exe: InputFile | None) -> None:
        seen: dict[str, str] = {}
        named: list[tuple[str, InputFile | Checkpoint | None]] = [
            (f"inputs[{i}]", x) for i, x in enumerate(inputs)]
        if exe is not None:
            named.append(("executable", exe))
        named += [(f"checkpoints[{i}]", x) for i, x in enumerate(ckpts)]
        for path, x in named:
            if x is None:
                continue
            norm = posixpath.normpath(x.lfn)
            if norm in seen:
                self.err(f"{path}.lfn", f"'{x.lfn}' is already staged in by {seen[norm]}")
            seen[norm] = path
        # A staged file is a file or a symlink (symlink: true may point at a directory): a
        # name below it would be written through it, outside the worker directory.
        for path, x in named:
            if x is not None:
                self.not_below(f"{path}.lfn", x.lfn, seen)
        for i, o in enumerate(outputs):
            if o is not None:
                self.not_below(f"outputs[{i}].lfn", o.lfn, seen)
        self.staged = seen
        outs: dict[str, str] = {}
        for i, o in enumerate(outputs):
            if o is None:
                continue
            norm = posixpath.normpath(o.lfn)
            if norm in outs:
                self.err(f"outputs[{i}].lfn", f"'{o.lfn}' is already listed by {outs[norm]}")
            outs[norm] = f"outputs[{i}]"

    def unique_destinations(self, outputs: list[OutputFile | None],
                            ckpts: list[Checkpoint | None]) -> None:
        """Two files staged out to one destination: the last would silently win."""
        named: list[tuple[str, tuple[str, ...]]] = [
            (f"outputs[{i}].urls", o.urls) for i, o in enumerate(outputs) if o is not None]
        named += [(f"checkpoints[{i}].url", (c.url,)) for i, c in enumerate(ckpts)
                  if c is not None]
        seen: dict[str, str] = {}
        for path, urls in named:
            for j, url in enumerate(dict.fromkeys(urls)):
                key = _destination_key(url)
                p = f"{path}[{j}]" if path.endswith("urls") else path
                if key in seen:
                    self.err(p, f"'{url}' is also the destination of {seen[key]}")
                else:
                    seen[key] = path.rsplit(".", 1)[0]

    def checksums_required(self, inputs: list[InputFile | None], exe: InputFile | None,
                           expected: dict[str, str]) -> None:
        """integrity "required": every input must have a sha256 (in the job or a .meta)."""
        named = [(f"inputs[{i}]", x) for i, x in enumerate(inputs)]
        if exe is not None:
            named.append(("executable", exe))
        for path, x in named:
            if x is not None and not x.sha256 and x.lfn not in expected:
                self.err(f"{path}.sha256", f"is required for '{x.lfn}': integrity is "
                         "\"required\" and neither the job nor its meta files give it")

    def not_below(self, path: str, lfn: str, staged: dict[str, str]) -> None:
        parts = posixpath.normpath(lfn).split("/")
        for n in range(1, len(parts)):
            parent = "/".join(parts[:n])
            if parent in staged:
                self.err(path, f"'{lfn}' lies below '{parent}', which {staged[parent]} "
                         "stages in as a file")
                return

    def stdio_name(self, d: dict[str, Any], key: str) -> str | None:
        """stdin/stdout/stderr: workdir-relative, and never written through a staged file
        (a symlinked input would send the task's output outside the worker directory)."""
        name = self.top(d, key)
        if name is None:
            return None
        self.not_below(key, name, self.staged)
        norm = posixpath.normpath(name)
        if key != "stdin" and norm in self.staged:
            self.err(key, f"'{name}' is staged in by {self.staged[norm]}: the task's {key} "
                     "would overwrite it")
        return name

    def limits(self, d: dict[str, Any]) -> Limits:
        lim = self.build(Limits, d, "limits")
        w, c = lim.maxwalltime, lim.checkpoint_time
        if w is not None and c is not None:
            if c >= w:
                self.err("limits.checkpoint_time",
                         f"{c:g} s is not before limits.maxwalltime {w:g} s")
            elif w - c < 10:
                self.err("limits", f"checkpoint_time {c:g} s and maxwalltime {w:g} s are less "
                         "than 10 s apart: no time to save the checkpoint")
        return lim


# --------------------------------------------------------------------------- before the job


def preflight(spec: JobSpec, executables: bool = True) -> list[str]:
    """What can be known to fail before the job starts, checked before anything is created:
    the .meta files (readable, well-formed; with integrity "required", a checksum for every
    input), where records, the .meta output and file:// outputs go, and (``executables``)
    an executable given by path or looked up on PATH."""
    from fluxlite.meta import read_meta_files

    problems: list[str] = []
    expected: dict[str, str] = {}
    for i, path in enumerate(spec.meta):
        try:
            expected.update(read_meta_files([path], first=i))
        except SpecError as err:
            problems += err.problems
    if spec.integrity == "required" and spec.meta and not problems:
        v = _Validator()
        v.checksums_required(list(spec.inputs), spec.staged_executable, expected)
        problems += v.problems
    where = [("records.kickstart", spec.records.kickstart), ("records.json", spec.records.json),
             ("write_meta", spec.write_meta)]
    for path, dest in where:
        why = _unwritable(dest) if dest and dest != "-" else None
        if why:
            problems.append(f"{path}: cannot write {dest}: {why}")
    staged_out = [(f"outputs[{i}].urls", o.lfn, o.urls) for i, o in enumerate(spec.outputs)]
    staged_out += [(f"checkpoints[{i}].url", c.lfn, (c.url,))
                   for i, c in enumerate(spec.checkpoints)]
    for path, lfn, urls in staged_out:
        local = [u for u in urls if scheme_of(u) == "file"]
        whys = [w for w in (_unwritable(local_path(u)) for u in local) if w]
        if local and len(local) == len(urls) and len(whys) == len(local):
            problems.append(f"{path}: no destination of '{lfn}' can be written: {whys[0]}")
    if executables:
        why = executable_problem(spec)
        if why:
            problems.append(f"executable: {why}")
    return [one_line(p) for p in problems]


def one_line(text: str) -> str:
    """A message that stays one line whatever names it quotes: characters that are not
    printable (line and paragraph separators, controls, lone surrogates) are escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


def check_ready(spec: JobSpec, executables: bool = True) -> None:
    """Raise SpecError with every problem ``preflight`` finds."""
    problems = preflight(spec, executables)
    if problems:
        raise SpecError(problems, source=spec.source)


def executable_problem(spec: JobSpec) -> str | None:
    """Why the executable cannot be started, when that is known before staging."""
    from fluxlite.execute.resolve import in_workdir, resolve

    exe = spec.executable
    staged = {f.lfn for f in spec.inputs} | (
        {spec.staged_executable.lfn} if spec.staged_executable else set())
    if in_workdir(exe, staged):
        # a file of the worker directory, which fluxlite makes empty: only what is staged
        # in (an input, or a checkpoint that exists; see preflight_warnings) can be there
        lfn = posixpath.normpath(exe)
        if exe in staged or lfn in staged or lfn in {c.lfn for c in spec.checkpoints}:
            return None
        return (f"'{exe}' names a file of the worker directory that nothing stages in "
                f"(no input has lfn '{lfn}'): stage it as an input or give its absolute path")
    return resolve(exe, spec.env.get("PATH", os.environ.get("PATH", os.defpath))).problem


def preflight_warnings(spec: JobSpec) -> list[str]:
    """What is likely to fail but may still be put right before the job runs: a local
    source that does not exist (yet: an earlier job may write it), and an executable of the
    worker directory that only an optional input or a checkpoint brings."""
    warnings: list[str] = []
    files = [(f"inputs[{i}].urls", f) for i, f in enumerate(spec.inputs)]
    if spec.staged_executable is not None:
        files.append(("executable.urls", spec.staged_executable))
    for path, f in files:
        for j, source in enumerate(f.sources):
            if scheme_of(source.url) not in ("file", "symlink"):
                continue
            p = local_path(source.url)
            if not os.path.lexists(p):
                others = " (the other sources are tried)" if len(f.sources) > 1 else (
                    " (optional: skipped without it)" if f.optional else
                    ": stage-in fails unless it appears before the job runs")
                warnings.append(f"{path}[{j}]: '{p}' does not exist{others}")
    exe = spec.executable
    if not os.path.isabs(exe) and "/" in exe:
        lfn = posixpath.normpath(exe)
        required = {f.lfn for f in spec.inputs if not f.optional}
        if spec.staged_executable is not None:
            required.add(spec.staged_executable.lfn)
        if exe not in required and lfn not in required:
            warnings.append(f"executable: '{exe}' is brought only by an optional input or a "
                            "checkpoint: the task cannot start if neither exists")
    return [one_line(w) for w in warnings]


def with_records(spec: JobSpec, kickstart: str | None, json: str | None) -> JobSpec:
    """The spec with its record destinations replaced (None: as the spec says)."""
    r = spec.records
    return replace(spec, records=replace(
        r, kickstart=r.kickstart if kickstart is None else kickstart,
        json=r.json if json is None else json))


def _unwritable(path: str) -> str | None:
    """Why a file cannot be created at ``path`` (its missing parents are created), or None."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        return f"'{path}' is a directory"
    parent = os.path.dirname(path)
    while not os.path.lexists(parent) and parent != "/":
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"'{parent}' is not a directory"
    if not os.access(parent, os.W_OK | os.X_OK) and not os.path.exists(path):
        return f"'{parent}' is not writable"
    return None


def _destination_key(url: str) -> str:
    if scheme_of(url) == "file":
        try:
            return "file:" + posixpath.normpath(local_path(url))
        except ValueError:
            return url
    return url


def _supported(direction: str) -> frozenset[str]:
    from fluxlite.staging import supported_schemes

    return supported_schemes(direction)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _basename_of(url: Any) -> str:
    if not isinstance(url, str):
        return "executable"
    if scheme_of(url) in ("file", "symlink"):
        try:
            return os.path.basename(local_path(url)) or "executable"
        except ValueError:
            return "executable"
    from urllib.parse import urlsplit

    try:
        return posixpath.basename(urlsplit(url).path) or "executable"
    except ValueError:
        return "executable"
