"""What pegasus-kickstart does beyond running a task, on top of fluxlite's runner.

``KickstartRunner`` is the runner ``fluxlite kickstart`` uses, driven by
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
import stat
import sys
import tempfile
import textwrap
import time
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from fluxlite.errors import (
    EXIT_CANNOT_EXEC,
    EXIT_TIME_LIMIT,
    ExecError,
    FluxliteError,
    Interrupted,
    WorkdirError,
)
from fluxlite.execute.base import ExitStatus, SignalEvent, TaskResult
from fluxlite.execute.local import LocalLauncher
from fluxlite.execute.timelimit import Schedule
from fluxlite.record import host
from fluxlite.record.model import OutputInfo, Phase, StdioFile, tail
from fluxlite.runner import Runner, RunOptions
from fluxlite.spec import JobSpec

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
    """kickstart's check: the file exists and is readable and executable by us."""
    if not os.path.isabs(path):
        raise CannotExecute(path, errno.ENOENT)
    try:
        st = os.stat(path)
    except OSError as err:
        raise CannotExecute(path, err.errno or errno.ENOENT) from err
    if stat.S_ISDIR(st.st_mode) or not os.access(path, os.R_OK | os.X_OK):
        raise CannotExecute(path, errno.EACCES)


class _AnnouncingEvents(list[SignalEvent]):
    """The record's signal events; the ones the -k/-K clock sends are also announced on
    stderr in kickstart's words, and noted as the alarm having fired."""

    def __init__(self, on_alarm: Any) -> None:
        super().__init__()
        self._on_alarm = on_alarm

    def append(self, event: SignalEvent) -> None:
        super().append(event)
        reason = event.reason or ""
        if event.direction == "sent" and (reason.startswith("checkpoint time")
                                          or reason.startswith("time limit")):
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


class KickstartRunner(Runner):
    """The runner with pegasus-kickstart's strategy: shared stdio, hooks, a given
    working directory, -s/-S stat entries, the -k clock and the record appended to its file."""

    protocol = False  # kickstart prints no protocol line: its stderr is the task's
    stopped_task_fails = False  # a task that handled a forwarded TERM exits with its own code
    appends_record = True  # -l appends: several records may share one file
    opt: KickstartOptions

    def __init__(self, spec: JobSpec, options: KickstartOptions) -> None:
        super().__init__(spec, options)
        self._ks_start = time.monotonic()  # kickstart's clock starts here
        self.alarmed = False
        self._stdio_fds: tuple[int, int, int] | None = None  # opened once, then shared
        self._owned_fds: list[int] = []
        self._temp_files: list[str] = []
        self.record.signals = _AnnouncingEvents(self._fired)
        self._metadata = self._side_file("meta", METADATA_VAR)
        self._integrity = self._side_file("integrity", INTEGRITY_VAR)
        self._failed_hook: tuple[Phase, Any] | None = None

    # -- side files ----------------------------------------------------------------------
    def _side_file(self, kind: str, var: str) -> str | None:
        """A ks.meta.* / ks.integrity.* file in $TMPDIR, named to the task in ``var``."""
        try:
            fd, path = tempfile.mkstemp(prefix=f"ks.{kind}.")
        except OSError as err:
            logger.warning("cannot create the %s file: %s", var, err.strerror)
            return None
        os.close(fd)
        self._temp_files.append(path)  # removed with the capture files
        self.opt.extra_env[var] = path
        return path

    # -- shared stdio, environment hooks -------------------------------------------------
    def _open_stdio(self) -> tuple[int, int, int]:
        """Open the task's stdio once: the hooks and the task write to the same files."""
        fds = self._open_stdio_once()
        if self._metadata and not any(f.name == "metadata" for f in self.record.stdio):
            self.record.stdio.append(StdioFile("metadata", self._metadata))
        return fds

    def _open_stdio_once(self) -> tuple[int, int, int]:
        if self._stdio_fds is not None:
            return self._stdio_fds
        wd = self.workdir.path if self.workdir is not None else os.getcwd()
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
                fd, path = tempfile.mkstemp(prefix=f"ks.{name[3:]}.")
                self._own(fd)
                self._temp_files.append(path)
                info = StdioFile(name, path)
            fds.append(fd)
            infos.append(info)
        self.record.stdio = infos
        self._stdio_fds = (fds[0], fds[1], fds[2])
        return self._stdio_fds

    def _own(self, fd: int) -> int:
        self._owned_fds.append(fd)
        return fd

    def _capture_stdio(self) -> None:
        """Embed the captured output (hooks' included) once everything has written it."""
        for f in self.record.stdio[1:]:
            if f.kind == "temp":
                f.data, f.truncated, f.size = tail(f.path, self.spec.records.stdio_bytes)
                if f.size == 0:
                    f.data = None  # kickstart writes no data for an empty stream
        for f in self.record.stdio:
            if f.name == "metadata":  # always reported with its data, as kickstart does
                f.data, f.truncated, f.size = tail(f.path, self.spec.records.stdio_bytes)
                if f.size == 0:
                    f.data = None
        if self.opt.omit_data_on_success and self.record.exit_code == 0:
            for f in self.record.stdio:
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

    def _task_stdio(self) -> tuple[tuple[str | int, str | int, str | int], list[StdioFile]]:
        return self._open_stdio(), self.record.stdio

    def _task_output(self) -> None:
        """Nothing yet: the output is embedded at the end, with what the hooks wrote."""

    def _run_task(self, exe: str) -> None:
        """kickstart's order: the -S stats, the setup and prejob hooks, the main job unless
        the -k time has passed, the postjob hook; the cleanup hook and the -s stats
        whatever happened before."""
        rec = self.record
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
                    super()._run_task(exe)
                if (rec.task is not None and rec.task.status.ok and not rec.task.timed_out
                        and self.signals.stop_signal is None):
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
            stop = self.signals.stop_signal
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
        rec = self.record
        stdin, stdout, stderr = self._open_stdio()
        ctl = LocalLauncher(list(argv), self.workdir.path, self._task_env(), stdin=stdin,
                            stdout=stdout, stderr=stderr,
                            schedule=Schedule() if name == Phase.CLEANUP else self._clock(),
                            kill_grace=self.spec.limits.kill_grace, usr1=self.spec.usr1,
                            events=rec.signals, on_orphaned=self._orphaned)
        if self.flux is not None:
            ctl.timeleft = self.flux.timeleft
        with self._phase(name) as ph:
            try:
                self.controller = ctl
                ctl.start()
                res = ctl.wait()
            except ExecError as err:
                res = ctl.result
                res.status = ExitStatus.failed_to_start(str(err))
            finally:
                self.controller = None
            ph.ok = res.status.ok
        logger.info("%s %s", name, res.status.describe())
        rec.extra_sections[name] = {
            "start": res.start or time.time(), "duration": res.duration, "pid": res.pid,
            "status": res.status, "executable": argv[0], "argv": list(argv)}
        return res.status

    def _judge(self) -> bool:
        """The -k timeout decides (exit 14), then the task, then a failed prejob or
        postjob."""
        rec, task = self.record, self.record.task
        decided = False
        timed_out = task is not None and task.timed_out and self.opt.term_timeout > 0
        if timed_out:
            assert task is not None
            # kickstart reports its own -k timeout with one code, whatever the task did
            rec.error = rec.error or f"{task.status.describe()} after the time limit"
        else:
            decided = super()._judge() or self._hook_failure()
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
        rec = self.record
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
        wd = self.workdir.path if self.workdir is not None else os.getcwd()
        by_lfn = {o.lfn: o for o in self.record.outputs}
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
            self.record.outputs.append(info)
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

    def _schedule(self) -> Schedule:
        return self._clock() if self.opt.term_timeout > 0 else super()._schedule()

    def _passed(self) -> bool:
        left = self._left()
        if left is not None and left <= 0:
            self.alarmed = True
        return self.alarmed

    # -- kickstart's own worker directory and stat entries ------------------------------
    def _make_workdir(self) -> Any:
        if self.opt.cwd is None:
            return super()._make_workdir()
        return _given_workdir(self.opt.cwd, self.opt.make_cwd)

    def _stat_files(self, files: list[tuple[str | None, str]], output: bool) -> None:
        """kickstart -S/-s: stat files (and hash the ones written) into the record."""
        from fluxlite.integrity import file_sha256

        wd = self.workdir.path if self.workdir is not None else os.getcwd()
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
            self.record.outputs.append(info)

    # -- failures that still end in a record -----------------------------------------
    def _setup(self) -> None:
        super()._setup()
        wd = self.opt.cwd
        if wd is None:
            return
        if self.opt.make_cwd:
            try:
                os.makedirs(wd, exist_ok=True)
            except OSError as err:
                raise WorkdirError(f"cannot create directory {wd}: {err.strerror}") from err
        if not os.path.isdir(wd):
            why = os.strerror(errno.ENOENT if not os.path.exists(wd) else errno.ENOTDIR)
            raise WorkdirError(f"cannot change to directory {wd}: {why}")
        if not os.access(wd, os.X_OK):
            raise WorkdirError(f"cannot change to directory {wd}: {os.strerror(errno.EACCES)}")

    def _precheck_executable(self) -> str | None:
        exe = self.spec.executable
        self.record.executable = exe
        check_executable(exe)
        return exe

    def _fail(self, err: FluxliteError, phase: Phase) -> None:
        super()._fail(err, phase)
        rec = self.record
        if isinstance(err, CannotExecute) and (rec.task is None or not rec.task.pid):
            rec.task = TaskResult(argv=[err.path, *self.spec.arguments],
                                  cwd=self.opt.cwd or os.getcwd(),
                                  status=ExitStatus(-127, error=err.failure_error))
        if isinstance(err, (ExecError, WorkdirError)) and not (rec.task and rec.task.pid):
            rec.exit_code = EXIT_CANNOT_EXEC  # kickstart's code for anything that kept
            # the application from starting
            if isinstance(err, CannotExecute):
                rec.cwd = rec.cwd or self.opt.cwd or os.getcwd()
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

    def _finish(self) -> None:
        self.phase = Phase.RECORDS  # a signal from here on is noted, not raised
        self._merge_integrity_data()
        if self._stdio_fds is not None:
            self._capture_stdio()  # everything has written it now, the hooks included
        super()._finish()

    def _cleanup(self) -> None:
        self._close_stdio()
        super()._cleanup()


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
