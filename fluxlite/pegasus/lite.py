"""PegasusLite's strategy: the runner's default, what ``fluxlite run`` and a cluster's JSON
task do where front ends differ.

- the executable is looked up before anything is created (on the task's PATH; a program of
  a container's image is the runtime's to find, a file of the worker directory is looked at
  after stage-in);
- a fresh worker directory, removed per the job's ``keep``;
- the task's stdio in files of the worker directory (the job's names, else
  ``.fluxlite/stdout`` and ``.fluxlite/stderr``), their tails in the record once it ends;
- a task that handled a forwarded stop signal and exited 0 has not done its work: the job
  fails with 128 + the signal;
- a failure is said once, at the end: a summary (the cause, the end of the task's stderr,
  where the records and a kept worker directory are), then the line PegasusLite's
  monitord reads, ``PegasusLite: exitcode N``.
"""

from __future__ import annotations

import logging
import os
import sys

from fluxlite.errors import EXIT_INFRA, ExecError
from fluxlite.execute.base import signal_name
from fluxlite.execute.resolve import in_workdir, resolve
from fluxlite.record.model import Phase, Record, StdioFile, tail
from fluxlite.strategy import RunStrategy, TaskStdio, judge_task

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from fluxlite.errors import FluxliteError
    from fluxlite.spec import JobSpec
    from fluxlite.workdir import Workdir

logger = logging.getLogger(__name__)

#: where the task's stdio goes in the worker directory when the job names no file for it
STDIO_DIR = ".fluxlite"

# phases whose error names what failed (setup, kickstart's environment hooks): said as it is
_SAID_WHOLE = (Phase.SETUP, Phase.PREJOB, Phase.POSTJOB, Phase.CLEANUP)


class PegasusLite(RunStrategy):
    """The default strategy (see the module docstring)."""

    def prepare(self) -> str | None:
        """Resolve an executable that is not staged, before anything is created."""
        job = self.job
        spec, rec = job.spec, job.record
        exe = spec.executable
        staged = {f.lfn for f in spec.inputs}
        if spec.staged_executable is not None:
            staged.add(spec.staged_executable.lfn)
        if in_workdir(exe, staged):
            return None  # inside the worker directory: checked after stage-in
        if spec.container is not None:
            rec.executable = exe
            return exe  # a program of the image: the runtime finds it inside
        found = resolve(exe, job.task_env().get("PATH", os.defpath))
        rec.executable = found.path or exe
        if found.problem:
            raise ExecError(f"executable {found.problem}")
        return found.path

    def workdir(self) -> Workdir:
        """The worker directory of the job, made fresh."""
        return fresh_workdir(self.job.spec)

    def stdio(self) -> TaskStdio:
        """The job's files in the worker directory."""
        spec, wd = self.job.spec, self.job.workdir.path
        stdin = os.path.join(wd, spec.stdin) if spec.stdin else os.devnull
        stdout = os.path.join(wd, spec.stdout or os.path.join(STDIO_DIR, "stdout"))
        stderr = os.path.join(wd, spec.stderr or os.path.join(STDIO_DIR, "stderr"))
        for name in (spec.stdout, spec.stderr):
            if name and "/" in name:  # "logs/err.txt": its directory, in the worker dir
                os.makedirs(os.path.dirname(os.path.join(wd, name)), exist_ok=True)
        return (stdin, stdout, stderr), [StdioFile("stdin", stdin), StdioFile("stdout", stdout),
                                         StdioFile("stderr", stderr)]

    def around_task(self, exe: str) -> None:
        """The task alone; once it has ended, the tails of its stdout and stderr."""
        job = self.job
        job.run_task(exe)
        for f in job.record.stdio[1:]:
            f.data, f.truncated, f.size = tail(f.path, job.spec.records.stdio_bytes)

    def judge(self) -> bool:
        """The task's end; one that handled a forwarded stop signal has not done its work."""
        return judge_task(self.job.record, stopped_fails=True)

    def failed(self, line: str, err: FluxliteError | None = None) -> None:
        """Said by the summary at the end (here only in the debug log)."""
        logger.debug("%s", line)

    def ending(self) -> None:
        """Nothing: the record has the task's output since the task ended."""

    def finished(self, written: list[str], kept: str | None) -> None:
        """The failure summary and the ``PegasusLite: exitcode N`` line."""
        rec = self.job.record
        rc = rec.exit_code
        if rc != 0:
            for line in failure_summary(rec, written, kept):
                logger.error("%s", line)
        if rc == EXIT_INFRA and rec.task is not None and rec.task.status.raw != -1:
            _protocol(f"PegasusLite: exitcode {rc}, tool originally exited with exitcode "
                      f"{rec.task.status.code}")
        elif rc == EXIT_INFRA:  # monitord reads only the number: the rest is for people
            _protocol(f"PegasusLite: exitcode {rc}, no task ran "
                      f"({rec.failed_phase or 'job'} failed)")
        else:
            _protocol(f"PegasusLite: exitcode {rc}")


def fresh_workdir(spec: JobSpec) -> Workdir:
    """A worker directory made for the job (see :func:`fluxlite.workdir.create`), with the
    area where the task's stdio goes."""
    from fluxlite import workdir

    wd = workdir.create(spec.workdir)
    os.makedirs(os.path.join(wd.path, STDIO_DIR), exist_ok=True)
    logger.info("worker directory %s (%.0f MB free)", wd.path, wd.free_mb)
    return wd


def failure_summary(rec: Record, records: list[str], kept: str | None) -> list[str]:
    """One or two lines for stderr: why the job failed, the end of the task's stderr, and
    where the records and the kept worker directory are."""
    lines = [f"job failed (exit {rec.exit_code}): {failure_cause(rec)}"]
    where = []
    err_tail = _stderr_tail(rec)
    if err_tail:
        where.append(f"task stderr ends: {err_tail}")
    if records:
        where.append("record" + "s" * (len(records) > 1) + ": " + ", ".join(records))
    if kept:
        where.append(f"worker directory kept: {kept}")
    if where:
        lines.append("; ".join(where))
    return lines


def failure_cause(rec: Record) -> str:
    """Why the job failed, in a few words: "time limit: TERM at 29 s of 40 s",
    "killed by signal 9 (SIGKILL)", "exit 3", or the failed phase and its error."""
    task = rec.task
    if task is not None and task.timed_out and rec.failed_phase == Phase.TASK:
        return _time_limit_cause(rec)
    if task is not None and task.pid and rec.failed_phase == Phase.TASK:
        st = task.status
        if st.error is not None:
            return f"task: {st.error}"
        by = f" after {signal_name(task.terminated_by)} to fluxlite" if task.terminated_by else ""
        if st.signal is not None:
            return f"killed by signal {st.signal} ({signal_name(st.signal)}){by}"
        if task.terminated_by and st.exitcode == 0:
            sig = signal_name(task.terminated_by)
            return f"stopped by {sig} to fluxlite: exit 0, work not done"
        return f"exit {st.exitcode}{by}"
    if rec.failed_phase in _SAID_WHOLE and rec.error:
        return rec.error
    phase = rec.failed_phase or "job"
    return f"{phase} failed: {rec.error}" if rec.error else f"{phase} failed"


def _time_limit_cause(rec: Record) -> str:
    task = rec.task
    assert task is not None
    t0 = task.start
    sent = {e.signal: e.time - t0 for e in reversed(rec.signals) if e.direction == "sent"}
    sched = rec.schedule
    of = (f" of {sched.walltime:.0f} s" if sched is not None and sched.walltime is not None
          else "")
    steps = [f"{sig} at {sent[sig]:.0f} s" for sig in ("SIGTERM", "SIGKILL") if sig in sent]
    text = "time limit: " + (", ".join(s[3:] for s in steps) or "stopped") + of
    return text + "; " + task.status.describe()


def _stderr_tail(rec: Record, lines: int = 3, width: int = 300) -> str:
    for f in rec.stdio:
        if f.name == "stderr" and f.data:
            text = f.data.decode("utf-8", "replace").rstrip("\n").splitlines()[-lines:]
            out = " | ".join(t.strip() for t in text if t.strip())
            return out if len(out) <= width else "..." + out[-width:]
    return ""


def _protocol(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
