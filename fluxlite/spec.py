"""job.json: untrusted JSON turned into frozen, validated objects.

Every problem is reported at once with its JSON path (``inputs[1].urls[0]: ...``);
nothing downstream re-checks what is validated here.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from fluxlite.errors import SpecError
from fluxlite.urls import local_path, scheme_of

SPEC_VERSION = 1
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
KEEP_POLICIES = ("never", "always", "on-failure")
PLACEMENTS = ("local", "flux", "nested")
USR1_ACTIONS = ("schedule", "forward", "term")


@dataclass(frozen=True, slots=True)
class Source:
    url: str
    tls_verify: bool = True


@dataclass(frozen=True, slots=True)
class InputFile:
    lfn: str
    sources: tuple[Source, ...]
    sha256: str | None = None
    executable: bool = False
    symlink: bool = False
    optional: bool = False  # used for checkpoint files: absence is not an error
    verify: bool = True


@dataclass(frozen=True, slots=True)
class OutputFile:
    lfn: str
    urls: tuple[str, ...]
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Checkpoint:
    lfn: str
    url: str


@dataclass(frozen=True, slots=True)
class Limits:
    maxwalltime: float | None = None
    checkpoint_time: float | None = None
    kill_grace: float = 5.0


@dataclass(frozen=True, slots=True)
class WorkdirSpec:
    base: str | None = None
    keep: Literal["never", "always", "on-failure"] = "never"
    min_free_mb: float = 1000.0


@dataclass(frozen=True, slots=True)
class RecordsSpec:
    kickstart: str | None = "-"
    json: str | None = None
    stdio_bytes: int = 262144  # bytes of stdout/stderr embedded in the record (tail)


@dataclass(frozen=True, slots=True)
class StagingOptions:
    attempts: int = 3
    backoff: float = 1.0
    max_backoff: float = 30.0
    threads: int = 0  # 0: chosen from the machine
    timeout: float = 60.0  # seconds without progress before a network transfer is abandoned


@dataclass(frozen=True, slots=True)
class Resources:
    nodes: int | None = None
    tasks: int = 1
    cores_per_task: int = 1
    gpus_per_task: int = 0
    time_limit: float | None = None
    queue: str | None = None
    bank: str | None = None


@dataclass(frozen=True, slots=True)
class Workflow:
    label: str | None = None
    stamp: str | None = None


@dataclass(frozen=True, slots=True)
class JobSpec:
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
    staged_executable: InputFile | None = None
    source: str = ""

    @property
    def env(self) -> dict[str, str]:
        return dict(self.environment)

    @classmethod
    def from_file(cls, path: str) -> JobSpec:
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as err:
            raise SpecError([f"cannot read job file: {err.strerror}"], source=path) from err
        return cls.from_json(raw, source=path)

    @classmethod
    def from_json(cls, raw: bytes | str, source: str = "") -> JobSpec:
        import json  # the stdlib parser: a job file is small and orjson costs more to import

        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError) as err:
            # ValueError: JSONDecodeError, bad UTF-8 and numbers too long to convert;
            # RecursionError: arrays or objects nested too deep to parse
            why = "nested too deeply" if isinstance(err, RecursionError) else str(err)
            raise SpecError([f"malformed JSON: {why}"], source=source) from err
        return cls.from_dict(doc, source=source)

    @classmethod
    def from_dict(cls, doc: Any, source: str = "") -> JobSpec:
        v = _Validator()
        spec = v.job(doc, source)
        if v.problems:
            raise SpecError(v.problems, source=source)
        assert spec is not None
        return spec


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
    return None


class _Validator:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.staged: dict[str, str] = {}  # normalised lfn -> the JSON path staging it in

    def err(self, path: str, msg: str) -> None:
        self.problems.append(f"{path}: {msg}" if path else msg)

    # typed getters ---------------------------------------------------------------
    def obj(self, value: Any, path: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.err(path, f"must be an object, not {_tname(value)}")
            return None
        return value

    def string(self, d: dict[str, Any], key: str, path: str, required: bool = False,
               default: str | None = None, nonempty: bool = True) -> str | None:
        p = _join(path, key)
        if key not in d or d[key] is None:
            if required:
                self.err(p, "is required")
            return default
        val = d[key]
        if not isinstance(val, str):
            self.err(p, f"must be a string, not {_tname(val)}")
            return default
        if nonempty and not val:
            self.err(p, "must not be empty")
            return default
        return val

    def boolean(self, d: dict[str, Any], key: str, path: str, default: bool) -> bool:
        if key not in d or d[key] is None:
            return default
        if not isinstance(d[key], bool):
            self.err(_join(path, key), f"must be true or false, not {_tname(d[key])}")
            return default
        return bool(d[key])

    def number(self, d: dict[str, Any], key: str, path: str, default: float | None,
               minimum: float = 0.0, integer: bool = False, exclusive: bool = False
               ) -> float | None:
        p = _join(path, key)
        if key not in d or d[key] is None:
            return default
        val = d[key]
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            self.err(p, f"must be a number, not {_tname(val)}")
            return default
        if integer and not float(val).is_integer():
            self.err(p, "must be a whole number")
            return default
        if val < minimum or (exclusive and val == minimum):
            self.err(p, f"must be {'>' if exclusive else '>='} {minimum:g}")
            return default
        return int(val) if integer else float(val)

    def choice(self, d: dict[str, Any], key: str, path: str, options: tuple[str, ...],
               default: str) -> str:
        val = self.string(d, key, path, default=default)
        if val is not None and val not in options:
            self.err(_join(path, key), f"must be one of {', '.join(options)}, not '{val}'")
            return default
        return val or default

    def unknown(self, d: dict[str, Any], path: str, known: set[str]) -> None:
        for key in d:
            if key not in known and not key.startswith("x-"):
                self.err(_join(path, key), "unknown field")

    def list_of(self, d: dict[str, Any], key: str, path: str) -> list[Any]:
        if key not in d or d[key] is None:
            return []
        if not isinstance(d[key], list):
            self.err(_join(path, key), f"must be a list, not {_tname(d[key])}")
            return []
        return list(d[key])

    def lfn(self, d: dict[str, Any], path: str) -> str | None:
        lfn = self.string(d, "lfn", path, required=True)
        if lfn is not None:
            why = check_lfn(lfn)
            if why:
                self.err(_join(path, "lfn"), why)
                return None
        return lfn

    def relname(self, d: dict[str, Any], key: str, path: str) -> str | None:
        name = self.string(d, key, path)
        if name is not None:
            why = check_lfn(name)
            if why:
                self.err(_join(path, key), why)
                return None
        return name

    def url(self, value: Any, path: str, direction: str) -> str | None:
        from fluxlite.staging import supported_schemes

        if not isinstance(value, str) or not value:
            self.err(path, f"must be a non-empty URL string, not {_tname(value)}")
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
            if not p.startswith("/"):
                self.err(path, f"'{value}' must name an absolute path")
                return None
        return value

    # sections ----------------------------------------------------------------------
    def job(self, doc: Any, source: str) -> JobSpec | None:
        d = self.obj(doc, "")
        if d is None:
            return None
        self.unknown(d, "", {
            "fluxlite", "name", "id", "site", "workflow", "executable", "arguments",
            "environment", "stdin", "stdout", "stderr", "inputs", "outputs", "checkpoints",
            "limits", "workdir", "records", "staging", "resources", "placement", "monitor",
            "signals", "meta", "write_meta",
        })
        version = d.get("fluxlite")
        if version is None:
            self.err("fluxlite", f"is required (the job.json version, {SPEC_VERSION})")
        elif version != SPEC_VERSION or isinstance(version, bool):
            self.err("fluxlite", f"unsupported version {version!r}: this fluxlite reads "
                     f"version {SPEC_VERSION}")

        staged_exe: InputFile | None = None
        exe_raw = d.get("executable")
        executable = ""
        if exe_raw is None:
            self.err("executable", "is required")
        elif isinstance(exe_raw, str):
            if not exe_raw:
                self.err("executable", "must not be empty")
            executable = exe_raw
        elif isinstance(exe_raw, dict):
            self.unknown(exe_raw, "executable", {"url", "urls", "sha256", "lfn"})
            urls = exe_raw.get("urls") if "urls" in exe_raw else (
                [exe_raw["url"]] if "url" in exe_raw else None)
            if not urls:
                self.err("executable.url", "is required")
            else:
                key = "urls" if "urls" in exe_raw else "url"
                staged_exe = self.input_file(
                    {"lfn": exe_raw.get("lfn") or _basename_of(urls[0]), "urls": urls,
                     "sha256": exe_raw.get("sha256"), "executable": True},
                    "executable", url_key_path=key)
                executable = staged_exe.lfn if staged_exe else ""
        else:
            self.err("executable", f"must be a string or an object, not {_tname(exe_raw)}")

        args: list[str] = []
        for i, a in enumerate(self.list_of(d, "arguments", "")):
            if not isinstance(a, str):
                self.err(f"arguments[{i}]", f"must be a string, not {_tname(a)}")
            elif self.encodable(a, f"arguments[{i}]"):
                args.append(a)

        env: list[tuple[str, str]] = []
        if d.get("environment") is not None:
            envd = self.obj(d["environment"], "environment")
            for k, val in (envd or {}).items():
                if not k or "=" in k or "\x00" in k:
                    self.err(f"environment.{k}", "is not a valid variable name")
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

        limits = self.limits(d.get("limits"))
        workdir = self.workdir(d.get("workdir"))
        records = self.records(d.get("records"))
        staging = self.staging(d.get("staging"))
        resources = self.resources(d.get("resources"))
        wf = Workflow()
        if d.get("workflow") is not None:
            w = self.obj(d["workflow"], "workflow")
            if w is not None:
                self.unknown(w, "workflow", {"label", "stamp"})
                wf = Workflow(self.string(w, "label", "workflow"),
                              self.string(w, "stamp", "workflow"))
        monitor_interval = 1.0
        if d.get("monitor") is not None:
            m = self.obj(d["monitor"], "monitor")
            if m is not None:
                self.unknown(m, "monitor", {"interval"})
                monitor_interval = self.number(m, "interval", "monitor", 1.0, minimum=0.01) or 1.0
        usr1 = "schedule"
        if d.get("signals") is not None:
            s = self.obj(d["signals"], "signals")
            if s is not None:
                self.unknown(s, "signals", {"usr1"})
                usr1 = self.choice(s, "usr1", "signals", USR1_ACTIONS, "schedule")
        meta: list[str] = []
        for i, mp in enumerate(self.list_of(d, "meta", "")):
            if not isinstance(mp, str) or not mp:
                self.err(f"meta[{i}]", "must be the path of a .meta file")
            else:
                meta.append(mp)

        name = self.string(d, "name", "") or os.path.basename(executable) or "task"
        stdio = {k: self.stdio_name(d, k) for k in ("stdin", "stdout", "stderr")}
        if None in inputs or None in outputs or None in ckpts or self.problems:
            return None
        return JobSpec(
            executable=executable,
            name=name,
            id=self.string(d, "id", "", default="") or "",
            site=self.string(d, "site", "", default="local") or "local",
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
            placement=self.choice(d, "placement", "", PLACEMENTS, "local"),
            monitor_interval=monitor_interval,
            usr1=usr1,
            meta=tuple(meta),
            write_meta=self.string(d, "write_meta", ""),
            staged_executable=staged_exe,
            source=source,
        )

    def sources(self, value: Any, path: str, direction: str) -> list[Source]:
        if not isinstance(value, list) or not value:
            self.err(path, "must be a non-empty list of URLs")
            return []
        out = []
        for j, u in enumerate(value):
            p = f"{path}[{j}]"
            tls = True
            if isinstance(u, dict):
                self.unknown(u, p, {"url", "tls_verify"})
                tls = self.boolean(u, "tls_verify", p, True)
                u = u.get("url")
                p = f"{p}.url"
            url = self.url(u, p, direction)
            if url is not None:
                out.append(Source(url, tls))
        return out

    def input_file(self, x: Any, path: str, url_key_path: str = "urls") -> InputFile | None:
        d = self.obj(x, path)
        if d is None:
            return None
        self.unknown(d, path, {"lfn", "urls", "sha256", "executable", "symlink", "optional"})
        lfn = self.lfn(d, path)
        sources = self.sources(d.get("urls"), _join(path, url_key_path), "stage-in")
        sha = self.string(d, "sha256", path)
        if sha is not None and not _HEX64.match(sha):
            self.err(_join(path, "sha256"), "must be 64 hexadecimal digits")
            sha = None
        if lfn is None or not sources:
            return None
        return InputFile(lfn=lfn, sources=tuple(sources),
                         sha256=sha.lower() if sha else None,
                         executable=self.boolean(d, "executable", path, False),
                         symlink=self.boolean(d, "symlink", path, False),
                         optional=self.boolean(d, "optional", path, False))

    def output_file(self, x: Any, path: str) -> OutputFile | None:
        d = self.obj(x, path)
        if d is None:
            return None
        self.unknown(d, path, {"lfn", "urls", "optional"})
        lfn = self.lfn(d, path)
        urls = [s.url for s in self.sources(d.get("urls"), _join(path, "urls"), "stage-out")]
        if lfn is None or not urls:
            return None
        return OutputFile(lfn, tuple(urls), self.boolean(d, "optional", path, False))

    def checkpoint(self, x: Any, path: str) -> Checkpoint | None:
        d = self.obj(x, path)
        if d is None:
            return None
        self.unknown(d, path, {"lfn", "url"})
        lfn = self.lfn(d, path)
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

    def encodable(self, text: str, path: str) -> bool:
        """Whether text can be handed to the operating system (argv, environment): a lone
        UTF-16 surrogate from a ``\\ud800`` escape in the JSON cannot."""
        try:
            os.fsencode(text)
        except UnicodeEncodeError as err:
            self.err(path, f"contains {text[err.start]!a}, which is not a character")
            return False
        return True

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
        name = self.relname(d, key, "")
        if name is None:
            return None
        self.not_below(key, name, self.staged)
        norm = posixpath.normpath(name)
        if key != "stdin" and norm in self.staged:
            self.err(key, f"'{name}' is staged in by {self.staged[norm]}: the task's {key} "
                     "would overwrite it")
        return name

    def limits(self, x: Any) -> Limits:
        if x is None:
            return Limits()
        d = self.obj(x, "limits")
        if d is None:
            return Limits()
        self.unknown(d, "limits", {"maxwalltime", "checkpoint_time", "kill_grace"})
        w = self.number(d, "maxwalltime", "limits", None, minimum=0, exclusive=True)
        c = self.number(d, "checkpoint_time", "limits", None, minimum=0, exclusive=True)
        g = self.number(d, "kill_grace", "limits", 5.0, minimum=0) or 0.0
        if w is not None and c is not None:
            if c >= w:
                self.err("limits.checkpoint_time",
                         f"{c:g} s is not before limits.maxwalltime {w:g} s")
            elif w - c < 10:
                self.err("limits", f"checkpoint_time {c:g} s and maxwalltime {w:g} s are less "
                         "than 10 s apart: no time to save the checkpoint")
        return Limits(w, c, g)

    def workdir(self, x: Any) -> WorkdirSpec:
        if x is None:
            return WorkdirSpec()
        d = self.obj(x, "workdir")
        if d is None:
            return WorkdirSpec()
        self.unknown(d, "workdir", {"base", "keep", "min_free_mb"})
        base = self.string(d, "base", "workdir")
        if base is not None and not os.path.isabs(base):
            self.err("workdir.base", f"'{base}' must be an absolute path")
        keep = self.choice(d, "keep", "workdir", KEEP_POLICIES, "never")
        mf = self.number(d, "min_free_mb", "workdir", 1000.0, minimum=0)
        return WorkdirSpec(base, keep, 1000.0 if mf is None else mf)  # type: ignore[arg-type]

    def records(self, x: Any) -> RecordsSpec:
        if x is None:
            return RecordsSpec()
        d = self.obj(x, "records")
        if d is None:
            return RecordsSpec()
        self.unknown(d, "records", {"kickstart", "json", "stdio_bytes"})
        ks = d.get("kickstart", "-")
        js = d.get("json")
        for key, val in (("kickstart", ks), ("json", js)):
            if val is not None and (not isinstance(val, str) or not val):
                self.err(f"records.{key}", "must be a path, \"-\" for stdout, or null")
        if ks == "-" and js == "-":
            self.err("records", "only one record can go to stdout")
        nb = self.number(d, "stdio_bytes", "records", 262144, minimum=0, integer=True)
        return RecordsSpec(ks if isinstance(ks, str) else None,
                           js if isinstance(js, str) else None, int(nb or 0))

    def staging(self, x: Any) -> StagingOptions:
        if x is None:
            return StagingOptions()
        d = self.obj(x, "staging")
        if d is None:
            return StagingOptions()
        self.unknown(d, "staging", {"attempts", "backoff", "max_backoff", "threads", "timeout"})
        return StagingOptions(
            attempts=int(self.number(d, "attempts", "staging", 3, minimum=1, integer=True) or 3),
            backoff=self.number(d, "backoff", "staging", 1.0, minimum=0) or 0.0,
            max_backoff=self.number(d, "max_backoff", "staging", 30.0, minimum=0) or 0.0,
            threads=int(self.number(d, "threads", "staging", 0, minimum=0, integer=True) or 0),
            timeout=self.number(d, "timeout", "staging", 60.0, minimum=0, exclusive=True) or 60.0,
        )

    def resources(self, x: Any) -> Resources:
        if x is None:
            return Resources()
        d = self.obj(x, "resources")
        if d is None:
            return Resources()
        self.unknown(d, "resources", {"nodes", "tasks", "cores_per_task", "gpus_per_task",
                                      "time_limit", "queue", "bank"})
        nodes = self.number(d, "nodes", "resources", None, minimum=1, integer=True)
        return Resources(
            nodes=int(nodes) if nodes is not None else None,
            tasks=int(self.number(d, "tasks", "resources", 1, minimum=1, integer=True) or 1),
            cores_per_task=int(self.number(d, "cores_per_task", "resources", 1, minimum=1,
                                           integer=True) or 1),
            gpus_per_task=int(self.number(d, "gpus_per_task", "resources", 0, minimum=0,
                                          integer=True) or 0),
            time_limit=self.number(d, "time_limit", "resources", None, minimum=0,
                                   exclusive=True),
            queue=self.string(d, "queue", "resources"),
            bank=self.string(d, "bank", "resources"),
        )


def _supported(direction: str) -> frozenset[str]:
    from fluxlite.staging import supported_schemes

    return supported_schemes(direction)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _tname(v: Any) -> str:
    if v is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(v), type(v).__name__)


def _basename_of(url: Any) -> str:
    if not isinstance(url, str):
        return "executable"
    if isinstance(url, str) and scheme_of(url) in ("file", "symlink"):
        try:
            return os.path.basename(local_path(url)) or "executable"
        except ValueError:
            return "executable"
    from urllib.parse import urlsplit

    return posixpath.basename(urlsplit(url).path) or "executable"
