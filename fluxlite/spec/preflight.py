"""Before the job: what can be known to fail (``preflight``, raised by ``check_ready``) or is
likely to (``preflight_warnings``) before anything is created, from a validated JobSpec and
the machine it is on: meta files, where records and outputs go, the executable."""

from __future__ import annotations

import os
import posixpath

from fluxlite.errors import SpecError
from fluxlite.spec.model import JobSpec
from fluxlite.spec.validate import Validator, one_line
from fluxlite.urls import local_path, scheme_of


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
        v = Validator()
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

