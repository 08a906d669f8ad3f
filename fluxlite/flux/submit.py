"""Put `fluxlite run job.json` into Flux as a batch job, or write the batch script for it.

The script has the shape HTCondor's BLAHP writes for Flux: ``#FLUX:`` directives,
exports, ``cd``, a signal trap, the command line run in the background and waited for, and
its exit code as the script's. ``fluxlite submit`` submits the same script as a batch job (a
new sub-instance, as ``flux batch`` does), so both ways run the same thing.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field

from fluxlite.errors import FluxliteError, FluxUnavailable, UsageError
from fluxlite.execute.base import ExitStatus
from fluxlite.execute.timelimit import from_limits
from fluxlite.flux.jobs import FluxJobs
from fluxlite.flux.jobspec import build, connect, environment
from fluxlite.spec import JobSpec, Limits

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)


# Flux's job dependencies (RFC 26) on another job's end, as ``flux batch --dependency``
DEPENDENCY_SCHEMES = ("after", "afterany", "afterok", "afternotok")
# a Flux job id: F58 (with ƒ or f), decimal, hexadecimal, dotted hex, or mnemonic words
_JOBID = re.compile(r"^(?:[ƒf][1-9A-HJ-NP-Za-km-z]+|\d+|0x[0-9a-fA-F]+"
                    r"|[0-9a-fA-F]{4}(?:\.[0-9a-fA-F]{4}){3}"
                    r"|[a-z]+(?:-[a-z]+){2}--[a-z]+(?:-[a-z]+){2})$")
# Characters a ``#FLUX:`` directive takes as they are; every other ASCII character is
# escaped with a backslash (see directive_word)
_DIRECTIVE_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                            "_@%+=:,./{}-")
DEFAULT_OUTPUT = "fluxlite-{{id}}.out"

# Signals the script takes: BLAHP's set, plus USR1 (Flux's time-limit warning, which would
# kill an untrapped bash) and ALRM (what Flux sends at the time limit itself).
TRAPPED = ("HUP", "INT", "QUIT", "TERM", "XCPU", "ALRM", "USR1")


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """What the batch job asks of Flux; job.json's ``resources`` give the defaults."""

    nodes: int | None = None
    slots: int = 1
    cores_per_slot: int = 1
    gpus_per_slot: int = 0
    time_limit: float | None = None  # seconds
    queue: str | None = None
    bank: str | None = None
    exclusive: bool = False
    job_name: str = "fluxlite"
    output: str | None = None
    error: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""
    dependencies: tuple[str, ...] = ()  # "afterok:ƒ…", as Flux writes them

    def signal_lead(self, spec: JobSpec) -> float | None:
        """Seconds before the time limit at which Flux sends SIGUSR1 (None: no limit)."""
        return warning_lead(spec, self.time_limit)


def parse_duration(text: str) -> float:
    """``--time-limit``: fluxlite's duration syntax (a bare number is seconds)."""
    from fluxlite.numbers import parse_duration as duration

    try:
        return duration(text, exclusive_minimum=True)
    except ValueError as err:
        raise UsageError(f"--time-limit: {err}") from err


def parse_dependency(text: str) -> str:
    """A job dependency as ``flux batch --dependency`` takes it: ``afterok:JOBID``,
    ``afterany:``, ``after:`` or ``afternotok:``."""
    scheme, colon, value = text.partition(":")
    if not colon or scheme not in DEPENDENCY_SCHEMES:
        raise UsageError(f"--dependency: '{text}' is not SCHEME:JOBID with SCHEME one of "
                         + ", ".join(DEPENDENCY_SCHEMES))
    if not _JOBID.match(value):
        raise UsageError(f"--dependency: '{value}' is not a flux job id")
    return f"{scheme}:{value}"


def fsd(seconds: float) -> str:
    """A duration as Flux writes it: whole minutes as 'Nm', anything else in seconds."""
    if seconds >= 60 and float(seconds / 60).is_integer():
        return f"{int(seconds // 60)}m"
    return f"{math.ceil(seconds)}s"


def warning_lead(spec: JobSpec, time_limit: float | None) -> float | None:
    """When Flux's checkpoint warning (SIGUSR1) comes, in seconds before the limit.

    fluxlite TERMs the task on the schedule derived from the time left (Pegasus's timing);
    the warning arrives a little before that TERM, so that a task that checkpoints on
    SIGUSR1 gets its chance first and one that does not is still TERMed in time to stage its
    checkpoint out."""
    if time_limit is None:
        return None
    # a walltime of the spec's own runs from the task's start, not from the batch job's:
    # the warning then only guards the batch job's limit
    limits = spec.limits if spec.limits.maxwalltime is None else Limits()
    sched = from_limits(maxwalltime=limits.maxwalltime, checkpoint_time=limits.checkpoint_time,
                        kill_grace=limits.kill_grace, timeleft=time_limit)
    if sched.term_after is None or sched.term_after >= time_limit:
        return None
    # a margin the signal's way through the script and fluxlite cannot eat up, even for a
    # short limit, yet never more than half the time to the TERM
    margin = min(60.0, max(5.0, 0.1 * sched.term_after), sched.term_after / 2)
    lead = time_limit - sched.term_after + margin
    return float(math.ceil(min(lead, time_limit - 1.0)))


def request_from(spec: JobSpec, *, nodes: int | None = None, slots: int | None = None,
                 cores: int | None = None, gpus: int | None = None,
                 time_limit: str | None = None, queue: str | None = None,
                 bank: str | None = None, exclusive: bool = False,
                 output: str | None = None, error: str | None = None,
                 env: dict[str, str] | None = None, cwd: str | None = None,
                 dependencies: list[str] | None = None) -> BatchRequest:
    """Command-line options over job.json's ``resources``."""
    r = spec.resources
    nodes = nodes if nodes is not None else r.nodes
    n = slots if slots is not None else r.tasks
    limit = parse_duration(time_limit) if time_limit is not None else r.time_limit
    return BatchRequest(
        nodes=nodes, slots=max(n, nodes or 1),
        cores_per_slot=cores if cores is not None else r.cores_per_task,
        gpus_per_slot=gpus if gpus is not None else r.gpus_per_task,
        time_limit=limit, queue=queue or r.queue, bank=bank or r.bank,
        # whole nodes when nodes are asked for, as flux batch -N does
        exclusive=exclusive or nodes is not None,
        job_name=spec.name or "fluxlite", output=output, error=error,
        env=dict(env or {}), cwd=cwd or os.getcwd(),
        dependencies=tuple(parse_dependency(d) for d in dependencies or ()))


def fluxlite_command() -> list[str]:
    """How the batch job starts this same fluxlite: its console script beside this Python,
    or this Python with ``-m fluxlite``."""
    exe = os.path.join(os.path.dirname(sys.executable), "fluxlite")
    if os.access(exe, os.X_OK):
        return [exe]
    return [sys.executable, "-m", "fluxlite"]


def directives(spec: JobSpec, req: BatchRequest) -> list[str]:
    """The ``#FLUX:`` lines, in BLAHP's order."""
    out: list[tuple[str, str | None]] = [("--job-name", req.job_name),
                                         ("--output", req.output or DEFAULT_OUTPUT)]
    if req.error:
        out.append(("--error", req.error))
    if req.bank:
        out.append(("--bank", req.bank))
    if req.time_limit is not None:
        out.append(("--time-limit", fsd(req.time_limit)))
    if req.queue:
        out.append(("--queue", req.queue))
    if req.exclusive:
        out.append(("--exclusive", None))
    if req.nodes is not None:
        out.append(("--nodes", str(req.nodes)))
    out.append(("--nslots", str(req.slots)))
    out.append(("--cores-per-slot", str(req.cores_per_slot)))
    if req.gpus_per_slot:
        out.append(("--gpus-per-slot", str(req.gpus_per_slot)))
    lead = req.signal_lead(spec)
    if lead is not None:
        out.append(("--signal", f"SIGUSR1@{fsd(lead)}"))
    out += [("--dependency", d) for d in req.dependencies]
    lines = []
    for opt, value in out:
        if value is None:
            lines.append(f"#FLUX: {opt}")
            continue
        _one_line(opt, value)
        lines.append(f"#FLUX: {opt}={directive_word(value)}")
    return lines


def directive_word(value: str) -> str:
    """``value`` as one word of a ``#FLUX:`` directive, read back exactly by Flux's parser.

    Flux splits a directive with POSIX shlex rules, where a backslash escapes a quote even
    inside single quotes, ``#`` starts a comment and ``;&|()<>`` are words of their own, and
    it first looks for triple quotes: any three quote characters in a row (``'"'`` as shell
    quoting writes an apostrophe) open a multi-line string. So no quotes are used at all:
    every ASCII character but letters, digits and ``_@%+=:,./{}-`` is escaped with a
    backslash, which puts a backslash between any two quote characters."""
    return "".join(c if c in _DIRECTIVE_SAFE or ord(c) > 127 else "\\" + c for c in value)


def _one_line(what: str, value: str) -> None:
    """A directive or comment is one line: a line break in a value (quoted or not) would
    end it, and bash would run the rest of the value as a command. Python's text files, as
    ``flux batch`` reads the script, also end a line at a carriage return."""
    if any(c in value for c in "\n\r\0"):
        raise UsageError(f"{what}: must not contain a line break")


def shell_word(value: str) -> str:
    """``value`` as one bash word on one line: shell quoting, or ANSI-C quoting (``$'…'``)
    when it holds control characters, so that no line break of a value starts a line of
    the script (a ``#FLUX:`` line there would be an orphan directive, anything else a
    command)."""
    if "\0" in value:
        raise UsageError("a value in the batch script must not contain a NUL byte")
    if not any(ord(c) < 32 or ord(c) == 127 for c in value):
        return shlex.quote(value)
    out = []
    for c in value:
        if c in "\\'":
            out.append("\\" + c)
        elif ord(c) < 32 or ord(c) == 127:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return "$'" + "".join(out) + "'"


def render_script(spec: JobSpec, job_path: str, req: BatchRequest, *,
                  with_directives: bool = True) -> str:
    """The batch script that runs ``fluxlite run JOB``."""
    q = shell_word
    lines = ["#!/bin/bash"]
    if with_directives:
        lines += directives(spec, req)
    _one_line("job", job_path)
    lines.append(f"# fluxlite batch script for {q(os.path.abspath(job_path))}")
    for name, value in req.env.items():
        lines.append(f"export {name}={q(value)}")
    lines.append(f"cd {q(req.cwd)} || exit 71")
    cmd = " ".join(q(a) for a in [*fluxlite_command(), "run", os.path.abspath(job_path)])
    lines += [
        "# fluxlite runs in a process group of its own (set -m): the job shell signals this",
        "# script's group and the broker signals the script once more when it stops, so the",
        "# trap passes on the first terminating signal only (ALRM, Flux's time limit, as TERM)",
        "# and every USR1 (the checkpoint warning); fluxlite's own schedule escalates. Flux",
        "# KILLs the job kill_timeout seconds after a cancel or its time limit: 2 s before",
        "# that, a second TERM makes fluxlite kill the task at once and use the rest of the",
        "# time for its checkpoint and records.",
        "set -m",
        "kill_timeout=${FLUXLITE_KILL_TIMEOUT:-5}",
        'case $kill_timeout in ""|*[!0-9]*) kill_timeout=5 ;; esac',
        "fluxlite_pid=",
        "stopping=",
        "caught=",
        "escalate=",
        "on_signal() {",
        "  caught=1",
        '  [ -n "$fluxlite_pid" ] || return 0',
        '  if [ "$1" = USR1 ]; then',
        '    kill -s USR1 "$fluxlite_pid" 2>/dev/null',
        '  elif [ -z "$stopping" ]; then',
        '    stopping=$1',
        '    if [ "$1" = ALRM ]; then set -- TERM; fi',
        '    kill -s "$1" "$fluxlite_pid" 2>/dev/null',
        '    (sleep $((kill_timeout > 3 ? kill_timeout - 2 : 1))',
        '     kill -s TERM "$fluxlite_pid") 2>/dev/null &',
        "    escalate=$!",
        "  fi",
        "  return 0",
        "}",
        f"for sig in {' '.join(TRAPPED)}; do trap \"on_signal $sig\" \"$sig\"; done",
        f"{cmd} < /dev/null &",
        "fluxlite_pid=$!",
        "while :; do",
        "  caught=",
        '  wait "$fluxlite_pid"',
        "  user_retcode=$?",
        "  # a trapped signal ends wait early: wait on while fluxlite runs",
        '  [ -n "$caught" ] && kill -0 "$fluxlite_pid" 2>/dev/null || break',
        "done",
        '[ -z "$escalate" ] || kill -- "-$escalate" 2>/dev/null',
        "exit $user_retcode",
    ]
    return "\n".join(lines) + "\n"


def jobspec(spec: JobSpec, job_path: str, req: BatchRequest) -> Any:
    """The batch job's jobspec: a sub-instance whose initial program is the script."""
    script = render_script(spec, job_path, req, with_directives=False)
    try:
        # flux batch passes the submitter's environment on; so does fluxlite submit
        js = build(script, kind="batch", count=req.slots, cores=req.cores_per_slot,
                   gpus=req.gpus_per_slot or None, nodes=req.nodes, exclusive=req.exclusive,
                   cwd=req.cwd, env=environment(os.environ, req.env), name=req.job_name,
                   stdout=req.output or os.path.join(req.cwd, "fluxlite-{{id}}.out"),
                   stderr=req.error or None, duration=req.time_limit)
    except ValueError as err:
        raise UsageError(f"resources: {err}") from err
    if req.time_limit is not None:
        lead = req.signal_lead(spec)
        if lead is not None:
            js.setattr_shell_option("signal", {"signum": 10, "timeleft": lead})
    if req.queue:
        js.setattr("system.queue", req.queue)
    if req.bank:
        js.setattr("system.bank", req.bank)
    if req.dependencies:
        js.setattr("system.dependencies",
                   [dict(zip(("scheme", "value"), d.split(":", 1), strict=True))
                    for d in req.dependencies])
    return js


def submit(spec: JobSpec, job_path: str, req: BatchRequest) -> tuple[Any, str]:
    """Submit the batch job; returns the handle and the job's F58 id."""
    if not os.environ.get("FLUX_URI") and shutil.which("flux") is None:
        raise FluxUnavailable("no flux instance to submit to: FLUX_URI is not set and "
                              "flux is not on PATH")
    h = connect()  # first: it says what is missing before anything imports flux
    js = jobspec(spec, job_path, req)
    try:
        job = FluxJobs(None, h).submit_sync(js)
    except OSError as err:
        raise FluxliteError(f"flux submit failed: {err.strerror or err}") from err
    logger.debug("submitted %s as flux job %s", job_path, job.f58)
    return h, str(job.f58)


def wait_exit_code(h: Any, jobid: str) -> int:
    """Wait for the batch job to end; its exit code is fluxlite's."""
    jobs = FluxJobs(None, h)
    info = jobs.result(jobs.by_id(jobid))
    if info.get("waitstatus") is None or "t_run" not in info:
        what = info.get("exception_type") or info.get("result") or "ended"
        note = info.get("exception_note")
        raise FluxliteError(f"flux job {jobid} did not run: {what}"
                            + (f": {note}" if note else ""))
    return ExitStatus.from_wait(int(info["waitstatus"])).code
