"""What pegasus-kickstart does beyond running a task: its strategy over fluxlite's runner.

``KickstartStrategy`` is how ``fluxlite kickstart`` runs a job, driven by
``KickstartOptions`` (the runner's options and kickstart's own: the given directory, the
shared stdio, the hooks, ``-s``/``-S``, ``-q``, ``-k``/``-K``):

- one ``-k``/``-K`` clock from kickstart's start across setup, prejob, main job and postjob
  (kickstart's ``alarm()``): whatever runs when it fires is TERMed, then KILLed, and what
  has not started yet is skipped; the cleanup hook still runs; exit code 14;
- ``Job timed out, sending SIGTERM`` / ``Job still running, sending SIGKILL`` on stderr;
- an application that cannot be run, or a ``-w`` directory that cannot be entered, still
  ends in a complete record (status ``failure_error: ERRNO   TEXT``, environment) and 127;
- ``KICKSTART_METADATA``: a file for the task's ``key=value`` lines, reported as the
  ``metadata`` entry of ``files`` with its data;
- ``KICKSTART_INTEGRITY_DATA``: a file where ``pegasus-integrity --generate-fullstat-yaml``
  appends ``files`` entries; they are merged into the record's ``files``.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import textwrap
import time
from contextlib import suppress
from dataclasses import dataclass, field

from fluxlite import fsutil
from fluxlite.errors import (
    EXIT_CANNOT_EXEC,
    EXIT_TIME_LIMIT,
    ExecError,
    FluxliteError,
    Interrupted,
    WorkdirError,
)
from fluxlite.execute.base import Cause, ExitStatus, SignalEvent, TaskResult
from fluxlite.execute.resolve import resolve
from fluxlite.execute.timelimit import Schedule
from fluxlite.pegasus.lite import fresh_workdir
from fluxlite.record import host
from fluxlite.record.model import OutputInfo, Phase, StdioFile, tail
from fluxlite.runner import Runner, RunOptions
from fluxlite.strategy import RunStrategy, TaskStdio, judge_task

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any
    from fluxlite.spec import JobSpec
    from fluxlite.workdir import Workdir

logger = logging.getLogger(__name__)

METADATA_VAR = "KICKSTART_METADATA"
INTEGRITY_VAR = "KICKSTART_INTEGRITY_DATA"


@dataclass(frozen=True, slots=True)
class Stdio:
    """Where one standard stream of the task (and of the hooks) goes.

    Neither path nor fd: a temporary file whose content is embedded in the record (and
    removed afterwards), as pegasus-kickstart captures stdout and stderr.
    """

    path: str | None = None
    append: bool = False
    fd: int | None = None  # share this descriptor of fluxlite's own (kickstart's "-")


@dataclass(slots=True)
class KickstartOptions(RunOptions):
    """What kickstart's command line and environment add to the runner's options."""

    cwd: str | None = None  # run the task here (-w/-W): no worker directory is made
    make_cwd: bool = False  # create ``cwd`` first (kickstart -W)
    stdio: dict[str, Stdio] = field(default_factory=dict)  # stdin/stdout/stderr targets
    stat_before: list[tuple[str | None, str]] = field(default_factory=list)  # -S (lfn, path)
    stat_after: list[tuple[str | None, str]] = field(default_factory=list)  # -s, + sha256
    hooks: dict[str, list[str]] = field(default_factory=dict)  # setup/prejob/postjob/cleanup
    omit_data_on_success: bool = False  # kickstart -q
    term_timeout: int = 0  # -k: TERM this many seconds after kickstart's start (0: none)
    kill_timeout: int = 5  # -K: KILL this many seconds after that TERM
    append_record: bool = True  # -l appends: several records may share one file


class CannotExecute(ExecError):
    """The application is missing or not executable, with the OS's reason."""

    def __init__(self, path: str, err_no: int) -> None:
        self.path = path
        self.errno = err_no
        self.strerror = os.strerror(err_no)
        super().__init__(f"cannot execute {path}: {self.strerror}")

    @property
    def failure_error(self) -> str:
        """kickstart's ``failure_error`` value: ``errno   strerror``."""
        return f"{self.errno}   {self.strerror}"


def check_executable(path: str) -> None:
    """kickstart's check: the file is given by its absolute path (kickstart's command line
    looked for it), and is a regular file we may read and execute."""
    why = resolve(path, None, os.R_OK | os.X_OK).errno if os.path.isabs(path) else errno.ENOENT
    if why:
        raise CannotExecute(path, why)


class _AnnouncingEvents(list[SignalEvent]):
    """The record's signal events; the ones the -k/-K clock sends are also announced on
    stderr in kickstart's words, and noted as the alarm having fired."""

    def __init__(self, on_alarm: Any) -> None:
        super().__init__()
        self._on_alarm = on_alarm

    def append(self, event: SignalEvent) -> None:
        super().append(event)
        if event.direction == "sent" and event.cause is Cause.TIME_LIMIT:
            self._on_alarm()
            if event.signal == "SIGKILL":
                _say("Job still running, sending SIGKILL")
            else:
                _say("Job timed out, sending SIGTERM")


def _say(line: str) -> None:
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except OSError:
        pass


class KickstartStrategy(RunStrategy):
    """pegasus-kickstart's strategy: a given working directory, stdio shared by the hooks
    and the task, the hooks around the task under the -k clock, -s/-S stat entries, the
    record appended to its file; failures said as they happen (its stderr is the task's)."""

    opt: KickstartOptions

    def attach(self, job: Runner) -> None:
        """Start kickstart's clock, and make the side files the task is told of."""
        super().attach(job)
        assert isinstance(job.opt, KickstartOptions)
        self.opt = job.opt
        self._ks_start = time.monotonic()  # kickstart's clock starts here
        self.alarmed = False
        self._stdio_fds: tuple[int, int, int] | None = None  # opened once, then shared
        self._owned_fds: list[int] = []
        self._temp_files: list[str] = []
        job.record.signals = _AnnouncingEvents(self._fired)
        self._metadata = self._side_file("meta", METADATA_VAR)
        self._integrity = self._side_file("integrity", INTEGRITY_VAR)
        self._failed_hook: tuple[Phase, Any] | None = None

    # -- side files ----------------------------------------------------------------------
    def _side_file(self, kind: str, var: str) -> str | None:
        """A ks.meta.* / ks.integrity.* file in $TMPDIR, named to the task in ``var``."""
        try:
            fd, path = fsutil.mkstemp(fsutil.tmpdir(), f"ks.{kind}.")
        except OSError as err:
            logger.warning("cannot create the %s file: %s", var, err.strerror)
            return None
        os.close(fd)
        self._temp_files.append(path)  # removed with the capture files
        self.opt.extra_env[var] = path
        return path

    # -- before anything is created ------------------------------------------------------
    def prepare(self) -> str | None:
        """The -w/-W directory entered (made first with -W), and the application checked
        as kickstart checks it: failures that still end in a record."""
        wd = self.opt.cwd
        if wd is not None:
            if self.opt.make_cwd:
                try:
                    os.makedirs(wd, exist_ok=True)
                except OSError as err:
                    raise WorkdirError(f"cannot create directory {wd}: {err.strerror}") from err
            if not os.path.isdir(wd):
                why = os.strerror(errno.ENOENT if not os.path.exists(wd) else errno.ENOTDIR)
                raise WorkdirError(f"cannot change to directory {wd}: {why}")
            if not os.access(wd, os.X_OK):
                raise WorkdirError(f"cannot change to directory {wd}: "
                                   f"{os.strerror(errno.EACCES)}")
        exe = self.job.spec.executable
        self.job.record.executable = exe
        check_executable(exe)
        return exe

    def workdir(self) -> Workdir:
        """The directory given with -w/-W, used as it is (else a fresh one)."""
        if self.opt.cwd is None:
            return fresh_workdir(self.job.spec)
        return _given_workdir(self.opt.cwd, self.opt.make_cwd)

    # -- shared stdio, environment hooks -------------------------------------------------
    def stdio(self) -> TaskStdio:
        """The task's stdio, opened once and shared with the hooks."""
        return self._open_stdio(), self.job.record.stdio

    def _open_stdio(self) -> tuple[int, int, int]:
        """Open the task's stdio once: the hooks and the task write to the same files."""
        fds = self._open_stdio_once()
        rec = self.job.record
        if self._metadata and not any(f.name == "metadata" for f in rec.stdio):
            rec.stdio.append(StdioFile("metadata", self._metadata))
        return fds

    def _open_stdio_once(self) -> tuple[int, int, int]:
        if self._stdio_fds is not None:
            return self._stdio_fds
        wd = self.job.workdir.path if self.job.workdir is not None else os.getcwd()
        fds: list[int] = []
        infos: list[StdioFile] = []
        for name in ("stdin", "stdout", "stderr"):
            t = self.opt.stdio.get(name) or Stdio()
            if t.fd is not None:
                fd, info = t.fd, StdioFile(name, "", kind="fd", fd=t.fd)
            elif name == "stdin" or t.path:
                path = os.path.join(wd, t.path) if t.path else os.devnull
                flags = os.O_RDONLY if name == "stdin" else (
                    os.O_WRONLY | os.O_CREAT | (os.O_APPEND if t.append else os.O_TRUNC))
                fd = self._own(_open_fd(path, flags))
                info = StdioFile(name, path, kind="file")
            else:
                # kickstart's capture files, named as it names them, in $TMPDIR
                fd, path = fsutil.mkstemp(fsutil.tmpdir(), f"ks.{name[3:]}.")
                self._own(fd)
                self._temp_files.append(path)
                info = StdioFile(name, path)
            fds.append(fd)
            infos.append(info)
        self.job.record.stdio = infos
        self._stdio_fds = (fds[0], fds[1], fds[2])
        return self._stdio_fds

    def _own(self, fd: int) -> int:
        self._owned_fds.append(fd)
        return fd

    def _capture_stdio(self) -> None:
        """Embed the captured output (hooks' included) once everything has written it."""
        rec, limit = self.job.record, self.job.spec.records.stdio_bytes
        for f in rec.stdio[1:]:
            if f.kind == "temp":
                f.data, f.truncated, f.size = tail(f.path, limit)
                if f.size == 0:
                    f.data = None  # kickstart writes no data for an empty stream
        for f in rec.stdio:
            if f.name == "metadata":  # always reported with its data, as kickstart does
                f.data, f.truncated, f.size = tail(f.path, limit)
                if f.size == 0:
                    f.data = None
        if self.opt.omit_data_on_success and rec.exit_code == 0:
            for f in rec.stdio:
                f.data = None

    def _close_stdio(self) -> None:
        """Close the descriptors and remove the capture and side files fluxlite made."""
        for fd in self._owned_fds:
            with suppress(OSError):
                os.close(fd)
        for path in self._temp_files:
            with suppress(OSError):
                os.unlink(path)
        self._owned_fds.clear()
        self._temp_files.clear()

    def around_task(self, exe: str) -> None:
        """kickstart's order: the -S stats, the setup and prejob hooks, the main job unless
        the -k time has passed, the postjob hook; the cleanup hook and the -s stats
        whatever happened before. The output is embedded at the end, with what the hooks
        wrote."""
        rec = self.job.record
        self._stat_files(self.opt.stat_before, output=False)
        # until the main job is started, the record has no mainjob entry (as kickstart's,
        # whose record tells a main job never tried from one that failed)
        rec.main_skipped = True
        try:
            if self._run_hooks(Phase.SETUP, Phase.PREJOB):
                if self._passed():
                    logger.info("main job skipped: the -k time limit has passed")
                else:
                    rec.main_skipped = False
                    self.job.run_task(exe, self._clock() if self.opt.term_timeout > 0
                                      else None)
                if (rec.task is not None and rec.task.status.ok and not rec.task.timed_out
                        and self.job.stop_signal is None):
                    self._run_hooks(Phase.POSTJOB)  # nothing new starts once told to stop
        finally:
            self._run_hooks(Phase.CLEANUP)
            self._stat_files(self.opt.stat_after, output=True)

    def _run_hooks(self, *names: Phase) -> bool:
        """Run kickstart's environment hooks; False when a prejob or postjob failed."""
        for name in names:
            argv = self.opt.hooks.get(name)
            if not argv:
                continue
            status = self._run_hook(name, argv)
            stop = self.job.stop_signal
            if stop is not None and name != Phase.CLEANUP:
                # the signal was forwarded to the hook; the job ends here, as it would have
                # if the signal had come during the task
                raise Interrupted(stop, name)
            if name in (Phase.PREJOB, Phase.POSTJOB) and not status.ok:
                self._failed_hook = (name, status)
                return False
        return True

    def _run_hook(self, name: Phase, argv: list[str]) -> ExitStatus:
        """Run one hook, on the task's stdio, under the -k clock (but the cleanup hook)."""
        if name in (Phase.PREJOB, Phase.POSTJOB) and self._passed():
            logger.info("%s skipped: the -k time limit has passed", name)
            return ExitStatus(-1, error="skipped after the -k time limit")
        res = self.job.run_command(name, argv, self._open_stdio(),
                                   Schedule() if name == Phase.CLEANUP else self._clock())
        logger.info("%s %s", name, res.status.describe())
        self.job.record.extra_sections[name] = {
            "start": res.start or time.time(), "duration": res.duration, "pid": res.pid,
            "status": res.status, "executable": argv[0], "argv": list(argv)}
        return res.status

    def judge(self) -> bool:
        """The -k timeout decides (exit 14), then the task (its own exit code, even after
        a forwarded TERM), then a failed prejob or postjob."""
        rec, task = self.job.record, self.job.record.task
        decided = False
        timed_out = task is not None and task.timed_out and self.opt.term_timeout > 0
        if timed_out:
            assert task is not None
            # kickstart reports its own -k timeout with one code, whatever the task did
            rec.error = rec.error or f"{task.status.describe()} after the time limit"
        else:
            decided = judge_task(rec, stopped_fails=False) or self._hook_failure()
        if not (timed_out or self.alarmed):
            return decided
        rec.exit_code = EXIT_TIME_LIMIT
        rec.error = rec.error or "the -k time limit fired"
        rec.failed_phase = rec.failed_phase or Phase.TASK
        return True

    def _hook_failure(self) -> bool:
        """A failed prejob or postjob decides the exit code (when the task did not)."""
        if self._failed_hook is None:
            return False
        name, status = self._failed_hook
        rec = self.job.record
        rec.exit_code = status.code
        rec.error = rec.error or f"{name} {status.describe()}"
        rec.failed_phase = rec.failed_phase or name
        return True

    def _merge_integrity_data(self) -> None:
        """Entries ``pegasus-integrity --generate-fullstat-yaml`` appended: into ``files``
        (an lfn already there from -s gets the checksum; the others are added)."""
        if not self._integrity:
            return
        limit = 64 << 20  # entries of a few hundred bytes each: far more than any job makes
        try:
            with open(self._integrity, encoding="utf-8", errors="replace") as fh:
                text = fh.read(limit + 1)
        except OSError:
            return
        if len(text) > limit:
            logger.warning("%s: its entries are left out: larger than %d MiB", INTEGRITY_VAR,
                           limit >> 20)
            return
        if not text.strip():
            return
        import yaml

        from fluxlite.record import yamlload

        try:  # anything may have written it: no aliases, bounded (the record comes first)
            doc = yamlload.load(textwrap.dedent(text))
        except yaml.YAMLError as err:
            logger.warning("%s: its entries are left out: %s", INTEGRITY_VAR,
                           str(err).splitlines()[0])
            return
        if not isinstance(doc, dict):
            return
        rec = self.job.record
        wd = self.job.workdir.path if self.job.workdir is not None else os.getcwd()
        by_lfn = {o.lfn: o for o in rec.outputs}
        for lfn, entry in doc.items():
            if not isinstance(entry, dict):
                continue
            lfn = str(lfn)
            pfn = os.path.join(wd, str(entry.get("file_name") or lfn))
            sha = entry.get("sha256")
            timing = _float(entry.get("checksum_timing"))
            known = by_lfn.get(lfn)
            if known is not None:
                known.sha256 = str(sha) if sha else known.sha256
                known.checksum_timing = timing if sha else known.checksum_timing
                continue
            info = OutputInfo(lfn, pfn, host.stat_info(pfn), str(sha) if sha else None,
                              timing, output=bool(entry.get("output", True)))
            rec.outputs.append(info)
            by_lfn[lfn] = info

    # -- the -k/-K clock -----------------------------------------------------------------
    def _fired(self) -> None:
        self.alarmed = True

    def _left(self) -> float | None:
        if self.opt.term_timeout <= 0:
            return None
        return self.opt.term_timeout - (time.monotonic() - self._ks_start)

    def _clock(self) -> Schedule:
        left = self._left()
        if left is None:
            return Schedule()
        left = max(left, 0.001)
        return Schedule(left, left + self.opt.kill_timeout, "kickstart", None)

    def _passed(self) -> bool:
        left = self._left()
        if left is not None and left <= 0:
            self.alarmed = True
        return self.alarmed

    # -- kickstart's stat entries --------------------------------------------------------
    def _stat_files(self, files: list[tuple[str | None, str]], output: bool) -> None:
        """kickstart -S/-s: stat files (and hash the ones written) into the record."""
        from fluxlite.integrity import file_sha256

        wd = self.job.workdir.path if self.job.workdir is not None else os.getcwd()
        for lfn, pfn in files:
            path = os.path.join(wd, pfn)
            info = OutputInfo(lfn or pfn, path, host.stat_info(path), output=output)
            if info.stat is None:  # recorded all the same, with why, as kickstart does
                try:
                    os.stat(path)
                except OSError as err:
                    info.error = err.errno
            if output and info.stat is not None and os.path.isfile(path):
                try:
                    info.sha256, _, info.checksum_timing = file_sha256(path)
                except OSError as err:
                    logger.warning("cannot checksum %s: %s", path, err.strerror)
            self.job.record.outputs.append(info)

    # -- the ending --------------------------------------------------------------------
    def failed(self, line: str, err: FluxliteError | None = None) -> None:
        """Said now; an application that could not be started, or a directory that could
        not be entered, still gets its mainjob and stdio entries (exit 127)."""
        logger.error("%s", line)
        rec, cwd = self.job.record, self.opt.cwd or os.getcwd()
        if isinstance(err, CannotExecute) and (rec.task is None or not rec.task.pid):
            rec.task = TaskResult(argv=[err.path, *self.job.spec.arguments], cwd=cwd,
                                  status=ExitStatus(-127, error=err.failure_error))
        if isinstance(err, (ExecError, WorkdirError)) and not (rec.task and rec.task.pid):
            rec.exit_code = EXIT_CANNOT_EXEC  # kickstart's code for anything that kept
            # the application from starting
            if isinstance(err, CannotExecute):
                rec.cwd = rec.cwd or cwd
            self._stdio_for_the_record(named_ok=not isinstance(err, WorkdirError))

    def _stdio_for_the_record(self, named_ok: bool) -> None:
        """The stdin/stdout/stderr/metadata entries of ``files``, as kickstart has them
        even when nothing ran. Files named with -o/-e are opened only where they belong:
        not when the -w directory they are relative to could not be entered."""
        if self._stdio_fds is not None or not self.opt.stdio:
            return
        named = any(t.path for name, t in self.opt.stdio.items() if name != "stdin")
        if named and not named_ok:
            return
        try:
            self._open_stdio()
        except FluxliteError as err:
            logger.warning("%s", err)

    def ending(self) -> None:
        """The integrity entries merged, the output embedded (the hooks' included)."""
        self._merge_integrity_data()
        if self._stdio_fds is not None:
            self._capture_stdio()  # everything has written it now, the hooks included

    def finished(self, written: list[str], kept: str | None) -> None:
        """No line of its own (its stderr is the task's): the stdio is closed, the capture
        and side files removed."""
        self._close_stdio()


def run_kickstart(spec: JobSpec, options: KickstartOptions) -> int:
    """Run the job as pegasus-kickstart would; its exit code."""
    return Runner(spec, options, KickstartStrategy()).run()


def _float(v: object) -> float:
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def _given_workdir(path: str, create: bool) -> Any:
    """The directory the caller chose (kickstart -w/-W), used as it is."""
    from fluxlite.workdir import Workdir

    try:
        if create:
            os.makedirs(path, exist_ok=True)
        st = os.statvfs(path)
    except OSError as err:
        verb = "create" if create else "use"
        raise WorkdirError(f"cannot {verb} directory {path}: {err.strerror}") from err
    if not os.path.isdir(path):
        raise WorkdirError(f"cannot use directory {path}: not a directory")
    return Workdir(os.path.abspath(path), path, st.f_bavail * st.f_frsize / 1e6, [])


def _open_fd(path: str, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_CLOEXEC, 0o666)
    except OSError as err:
        raise ExecError(f"cannot open {path}: {err.strerror}") from err
