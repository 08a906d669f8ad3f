"""The validator of job.json: every field read through the field table, every problem kept
with its JSON path (``inputs[1].urls[0]: ...``), and the checks across fields (lfns staged
twice, a file below a staged one, two files sent to one destination, the limits' order).
"""

from __future__ import annotations

import os
import posixpath
from collections import Counter

from fluxlite.errors import SpecError, one_line
from fluxlite.numbers import check_number, parse_duration
from fluxlite.numbers import kind as _tname
from fluxlite.spec.fields import _S, RESERVED_DIR, SECTIONS, SHA256_RE, SPEC_VERSION, Field
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
from fluxlite.urls import local_path, scheme_of

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any


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


class Objects:
    """The JSON parser's object hook: dicts that remember the keys given twice."""

    def __init__(self) -> None:
        self.with_duplicates: list[_Dict] = []

    def hook(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        """One object of the document, its repeated keys noted."""
        d = _Dict(pairs)
        if len(d) != len(pairs):
            counts = Counter(k for k, _ in pairs)
            d.duplicates = [k for k, n in counts.items() if n > 1]
            self.with_duplicates.append(d)
        return d


class _Dict(dict["str", "Any"]):  # quoted: typing is not imported at run time
    duplicates: list[str] = []  # noqa: RUF012 - set per instance by the hook


class Validator:
    """Reads a parsed job.json through the field table, keeping every problem found
    (``problems``, one line each, with its JSON path); a section's parser (the container's)
    is handed the validator and uses its readers."""

    def __init__(self, base_dir: str | None = None) -> None:
        self.problems: list[str] = []
        self.staged: dict[str, str] = {}  # normalised lfn -> the JSON path staging it in
        self.base_dir = base_dir
        self.reported_objects: set[int] = set()

    def err(self, path: str, msg: str) -> None:
        """Keep the problem ``msg`` of the value at ``path``."""
        self.problems.append(one_line(f"{path}: {msg}" if path else msg))

    # typed getters ---------------------------------------------------------------
    def obj(self, value: Any, path: str) -> dict[str, Any] | None:
        """``value`` as an object (its repeated keys reported), or None (reported)."""
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
        """A value checked as its field's kind says; the field's default when it is wrong."""
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
        """A scalar field of the top level."""
        return self.value(d, key, "", SECTIONS[""][key])

    def list_of(self, d: dict[str, Any], key: str, path: str) -> list[Any]:
        """The list ``d[key]`` (absent or null: empty; not a list: reported, empty)."""
        if key not in d or d[key] is None:
            return []
        if not isinstance(d[key], list):
            self.err(_join(path, key), f"must be a list, not {_tname(d[key])}")
            return []
        return list(d[key])

    def url(self, value: Any, path: str, direction: str) -> str | None:
        """A URL of a scheme staging supports in ``direction``; a plain relative path is
        resolved against the job file's directory; None when it is refused (reported)."""
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
    def job(self, doc: Any, source: str) -> dict[str, Any] | None:
        """The fields of a JobSpec from the whole document; None when a problem was found."""
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
            from fluxlite.spec.container import parse_container  # only a job that has one

            container = parse_container(self, d["container"], env=env)
        stdio = {k: self.stdio_name(d, k) for k in ("stdin", "stdout", "stderr")}
        if ident["integrity"] == "required" and not meta:
            self.checksums_required(inputs, staged_exe, {})
        if None in inputs or None in outputs or None in ckpts or self.problems:
            return None
        return dict(
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
        """The executable (a path or name; for a staged one, its lfn) and its input."""
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
        """A non-empty list of URLs, each a string or ``{"url", "tls_verify"}``."""
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
        """One entry of ``inputs`` (or the staged executable), None when it is wrong."""
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
        """One entry of ``outputs``, None when it is wrong."""
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
        """One entry of ``checkpoints``: its URL must be readable back; None when wrong."""
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
        """No lfn staged in twice or listed twice as an output, none below a staged file."""
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
        """``lfn`` must not lie below a name of ``staged`` (it would be written through it)."""
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
        """The limits section; the checkpoint time must come 10 s or more before the walltime."""
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


def load_json(raw: bytes | str, source: str = "") -> tuple[Any, Objects]:
    """Parse a job description's text; the objects that give a key twice are remembered
    for :func:`job_fields` to report."""
    import json  # the stdlib parser: a job file is small and orjson costs more to import

    seen = Objects()
    try:
        doc = json.loads(raw, object_pairs_hook=seen.hook)
    except (ValueError, RecursionError) as err:
        # ValueError: JSONDecodeError, bad UTF-8 and numbers too long to convert;
        # RecursionError: arrays or objects nested too deep to parse
        why = "nested too deeply" if isinstance(err, RecursionError) else str(err)
        raise SpecError([f"malformed JSON: {why}"], source=source) from err
    return doc, seen


def job_fields(doc: Any, source: str = "", base_dir: str | None = None,
               objects: Objects | None = None) -> dict[str, Any]:
    """Validate a parsed document into the fields of a JobSpec; a SpecError lists every
    problem. ``base_dir``: where relative paths resolve (None: they are kept relative)."""
    v = Validator(base_dir)
    fields = v.job(doc, source)
    if objects is not None:
        for obj in objects.with_duplicates:
            if id(obj) not in v.reported_objects:
                v.err("", f"duplicate key '{obj.duplicates[0]}' in an object")
    if v.problems:
        raise SpecError(v.problems, source=source)
    assert fields is not None
    return fields


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
