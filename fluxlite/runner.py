"""The pipeline of one job, and the only place that knows the order of its phases.

workdir -> stage-in (verified) -> task (monitored, time-limited) -> stage-out -> records.
Every way a job can end, a signal included, goes through the same ending: checkpoints and
outputs staged out where possible, both records written, the worker directory removed per
policy, and an exit code that tells task failures from infrastructure failures.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fluxlite.errors import (
    EXIT_INFRA,
    SIGNAL_BASE,
    ExecError,
    FluxliteError,
    Interrupted,
    SpecError,
    StageError,
)
from fluxlite.execute.base import ExitStatus, Launcher, SignalEvent, rusage_dict, signal_name
from fluxlite.execute.local import LocalLauncher, which
from fluxlite.execute.timelimit import Schedule, from_limits
from fluxlite.execute.timelimit import describe as describe_schedule
from fluxlite.integrity import verify
from fluxlite.record import host
from fluxlite.record.model import (
    Identity,
    OutputInfo,
    Phase,
    PhaseTiming,
    Record,
    StdioFile,
    tail,
)
from fluxlite.signals import Handlers
from fluxlite.spec import JobSpec
from fluxlite.staging.base import Policy, Request
from fluxlite.staging.file import check_local_source
from fluxlite.urls import file_url

if TYPE_CHECKING:
    from fluxlite.staging.phases import StageResult

logger = logging.getLogger("fluxlite")

TERMINATING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU, signal.SIGQUIT)
STDIO_DIR = ".fluxlite"


@dataclass(slots=True)
class RunOptions:
    """How a front end wants a job run and recorded; the defaults are ``fluxlite run``'s."""

    kickstart: str | None = "from-spec"  # a path, "-" or None; "from-spec": spec.records
    json: str | None = "from-spec"
    full: bool = False
    compact: bool = False
    use_flux: bool = True
    stdout: Any = None  # where "-" records go (default sys.stdout)
    extra_env: dict[str, str] = field(default_factory=dict)
    overwrite_records: bool = False  # False: an earlier record is kept as PATH.000, .001...


# the phases of kickstart's environment hooks (pegasus/kickstart.py), in the record
HOOKS = (Phase.SETUP, Phase.PREJOB, Phase.POSTJOB, Phase.CLEANUP)


class _Signals:
    """fluxlite's own signal handling: forward to the task, or stop the current phase."""

    def __init__(self, runner: Runner) -> None:
        self.r = runner
        self.handlers = Handlers((*TERMINATING, signal.SIGUSR1), self.handle)
        self.stop_signal: int | None = None
        self.cancel = threading.Event()

    def phase_cancel(self) -> threading.Event:
        """A fresh cancel event for one staging phase, set by the next stop signal.

        One event per phase: run_transfers also sets it to stop its own workers after a hard
        failure, which must not cancel the phases that follow (outputs after checkpoints).
        """
        self.cancel = threading.Event()
        return self.cancel

    def handle(self, signum: int) -> None:
        """The policy: to the running task or hook, else stop the phase (once)."""
        r = self.r
        ctl = r.controller
        if ctl is not None:  # set only while a task or a hook runs
            ctl.on_signal(signum)  # records the event itself
            if signum != signal.SIGUSR1 and self.stop_signal is None:
                self.stop_signal = signum
            return
        r.record.signals.append(SignalEvent(time.time(), signal_name(signum), "received",
                                            "fluxlite", f"during {r.phase}"))
        if signum == signal.SIGUSR1:
            return  # no task running: nothing to checkpoint
        if r.phase in ("ending", "records", "done"):
            self.stop_signal = self.stop_signal or signum
            return  # finish writing what is being written
        if self.stop_signal is not None and r.phase not in ("stage-out",):
            return  # already stopping: the first signal decides
        self.stop_signal = signum
        self.cancel.set()
        raise Interrupted(signum, r.phase)


class Runner:
    """Runs one job through its phases, in order, and always ends with its records.

    A front end with a strategy of its own (kickstart's, pegasus/kickstart.py) overrides
    where the worker directory and the task's stdio come from, what runs around the task
    and how its end is judged.
    """

    protocol = True  # print the "PegasusLite: exitcode N" line and the failure summary
    # a task that handled a forwarded stop signal and exited N: True makes it 128+signal,
    # work not done; False (kickstart) makes N the exit code
    stopped_task_fails = True
    appends_record = False  # the kickstart record appended to its file, not replacing it

    def __init__(self, spec: JobSpec, options: RunOptions | None = None) -> None:
        self.spec = spec
        self.opt = options or RunOptions()
        self.record = Record(job=Identity.of(spec), start=time.time())
        self.phase = Phase.SETUP
        self.controller: Launcher | None = None
        self.signals = _Signals(self)
        self.flux: Any = None
        self.workdir: Any = None
        self._t0 = time.perf_counter()
        self._failing_phase: Phase | None = None  # the phase the failure left, not a later one
        self._kept_workdir: str | None = None

    # -- phases -----------------------------------------------------------------------
    @contextmanager
    def _phase(self, name: Phase) -> Iterator[PhaseTiming]:
        self.phase = name
        ph = PhaseTiming(name, time.time())
        self.record.phases.append(ph)
        self._memo(name)
        t0 = time.perf_counter()
        try:
            yield ph
        except BaseException as err:
            ph.ok = False
            ph.error = str(err) or type(err).__name__
            self._failing_phase = self._failing_phase or name
            raise
        finally:
            ph.duration = time.perf_counter() - t0

    def _memo(self, phase: Phase, **extra: Any) -> None:
        if self.flux is not None:
            rec = self.record
            self.flux.memo({"phase": phase,
                            "bytes_in": sum(s.bytes for s in rec.stage_in),
                            "files_in": sum(s.files for s in rec.stage_in),
                            "bytes_out": sum(s.bytes for s in rec.stage_out),
                            "files_out": sum(s.files for s in rec.stage_out), **extra})

    def run(self) -> int:
        """Run the whole job; return the exit code. Records are always written."""
        self.signals.handlers.install()
        rec = self.record
        try:
            try:
                # inside the handlers: a signal while the host is inspected (or Flux asked)
                # must still end in a record
                self._setup()
                self._main()
            except Interrupted as err:
                self._ending()
                self._fail(err, err.phase)
            except FluxliteError as err:
                self._fail(err, self._ending())
            except Exception as err:  # noqa: BLE001 - a bug must still end in a record
                phase = self._ending()
                logger.exception("internal error")
                self._fail(FluxliteError(f"internal error: {type(err).__name__}: {err}"),
                           phase)
            self._finish()
        finally:
            self.signals.handlers.restore()
        return rec.exit_code

    def _ending(self) -> Phase:
        """Enter the ending: from here on a further signal is noted, not raised, so that
        handling a failure cannot itself be interrupted. Returns the phase that failed."""
        phase, self.phase = self.phase, Phase.ENDING
        return phase

    def _setup(self) -> None:
        rec = self.record
        rec.process = host.process_info()
        rec.hostname, rec.hostaddr, rec.interface = host.network()
        if self.opt.use_flux and os.environ.get("FLUX_URI"):
            from fluxlite.flux.context import detect

            self.flux = detect()
            if self.flux is not None:
                rec.flux = self.flux.info()
                if self.flux.jobid:
                    rec.jobids["flux"] = self.flux.jobid

    def _fail(self, err: FluxliteError, phase: Phase) -> None:
        rec = self.record
        if isinstance(err, ExecError):
            phase = Phase.TASK  # the task could not be started, whenever that was found out
        elif not isinstance(err, Interrupted):
            phase = self._failing_phase or phase
        rec.error = str(err)
        rec.failed_phase = phase
        if isinstance(err, Interrupted):
            rec.exit_code = err.exit_code
        elif rec.task is not None and rec.task.pid and not rec.task.status.ok:
            rec.exit_code = rec.task.status.code  # the task's failure decides
        else:
            rec.exit_code = err.exit_code
        # fluxlite run says it in the failure summary at the end; kickstart here
        logger.log(logging.DEBUG if self.protocol else logging.ERROR, "%s failed: %s",
                   phase, err)

    def _main(self) -> None:
        rec = self.record
        exe = self._precheck_executable()
        with self._phase(Phase.WORKDIR):
            self.workdir = self._make_workdir()
            rec.workdir = rec.cwd = self.workdir.path
        self._stage_in()
        self.phase = Phase.TASK  # a staged executable that cannot run is not a stage-in failure
        exe = exe or self._workdir_executable()
        rec.executable = exe
        rec.executable_stat = host.stat_info(exe)
        try:
            self._run_task(exe)
        finally:
            self._stage_out()  # outputs and checkpoints leave whatever happened to the task
        self._judge()

    def _judge(self) -> bool:
        """The exit code the task's end makes; False when the task succeeded (or never
        ran) and nothing was decided."""
        rec, task = self.record, self.record.task
        if task is None:
            return False
        if task.status.ok and task.terminated_by and (task.timed_out
                                                      or self.stopped_task_fails):
            # The task caught the TERM (time limit or a signal to fluxlite) and exited
            # cleanly, typically after saving a checkpoint: its work is not done, so the job
            # must not count as a success; a rerun resumes from the checkpoint.
            rec.exit_code = SIGNAL_BASE + task.terminated_by
            rec.error = rec.error or (f"task stopped by {signal_name(task.terminated_by)}"
                                      f" ({'time limit' if task.timed_out else 'signal'})")
        elif not task.status.ok:
            rec.exit_code = task.status.code
            rec.error = rec.error or _describe(task.status)
        else:
            return False
        rec.failed_phase = rec.failed_phase or Phase.TASK
        return True

    def _make_workdir(self) -> Any:
        """The worker directory of the job, made fresh (kickstart's front end uses a given
        one instead)."""
        from fluxlite import workdir

        wd = workdir.create(self.spec.workdir)
        os.makedirs(os.path.join(wd.path, STDIO_DIR), exist_ok=True)
        logger.info("worker directory %s (%.0f MB free)", wd.path, wd.free_mb)
        return wd

    # -- executable ------------------------------------------------------------------
    def _task_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.spec.env)
        env.update(self.opt.extra_env)
        if self.workdir is not None:
            env["FLUXLITE_WORKDIR"] = self.workdir.path
        return env

    def _staged_lfns(self) -> set[str]:
        s = {f.lfn for f in self.spec.inputs}
        if self.spec.staged_executable is not None:
            s.add(self.spec.staged_executable.lfn)
        return s

    def _precheck_executable(self) -> str | None:
        """Resolve an executable that is not staged, before anything is created."""
        exe = self.spec.executable
        if exe in self._staged_lfns() or (not os.path.isabs(exe) and "/" in exe):
            return None  # inside the worker directory: checked after stage-in
        if self.spec.container is not None:
            self.record.executable = exe
            return exe  # a program of the image: the runtime finds it inside
        path = which(exe, self._task_env())  # an absolute path is itself
        if path is None:
            self.record.executable = exe
            raise ExecError(f"executable '{exe}' not found on PATH")
        self.record.executable = path
        self._check_exec(path)
        return path

    def _workdir_executable(self) -> str:
        path = os.path.join(self.workdir.path, self.spec.executable)
        self.record.executable = path
        self._check_exec(path)
        return path

    @staticmethod
    def _check_exec(path: str) -> None:
        if not os.path.exists(path):
            raise ExecError(f"executable '{path}' does not exist")
        if not host.is_executable_file(path):
            raise ExecError(f"executable '{path}' is not an executable file")

    # -- staging ---------------------------------------------------------------------------
    def _policy(self) -> Policy:
        s = self.spec.staging
        return Policy(attempts=s.attempts, backoff=s.backoff, max_backoff=s.max_backoff,
                      timeout=s.timeout, min_rate=s.min_rate, rate_window=s.rate_window)

    def _expected_from_meta(self) -> dict[str, str]:
        if not self.spec.meta:
            return {}
        from fluxlite.meta import read_meta_files

        return read_meta_files(self.spec.meta)

    def _stage_in(self) -> None:
        from fluxlite.staging.phases import run_transfers

        spec, rec, wd = self.spec, self.record, self.workdir.path
        expected = self._expected_from_meta()
        reqs: list[Request] = []
        files = list(spec.inputs)
        if spec.staged_executable is not None:
            files.append(spec.staged_executable)
        self._unverified(files, expected)
        for f in files:
            reqs.append(Request(
                lfn=f.lfn, sources=tuple((s.url, s.tls_verify) for s in f.sources),
                dst=os.path.join(wd, f.lfn), expected=f.sha256 or expected.get(f.lfn),
                # the file the task runs is made executable, as Pegasus does
                executable=(f.executable or f is spec.staged_executable
                            or f.lfn == spec.executable), symlink=f.symlink,
                optional=f.optional))
        if reqs:
            with self._phase(Phase.STAGE_IN) as ph:
                try:
                    st = run_transfers("stage-in", reqs, self._policy(), spec.staging.threads,
                                       self.signals.phase_cancel())
                except StageError as err:
                    if err.stage is not None:
                        rec.stage_in.append(err.stage)
                        self._verifications(err.stage)
                    raise
                rec.stage_in.append(st)
                self._verifications(st)
                ph.bytes, ph.files = st.bytes, st.files
                logger.info("stage-in: %d files, %s in %.3f s", st.files, _mb(st.bytes),
                            ph_elapsed(ph))
        ck = [Request(lfn=c.lfn, sources=((c.url, True),), dst=os.path.join(wd, c.lfn),
                      optional=True) for c in spec.checkpoints]
        if ck:
            with self._phase(Phase.CHECKPOINT_IN) as ph:
                try:
                    ck_st: StageResult | None = run_transfers("checkpoint-in", ck, self._policy(),
                                       spec.staging.threads, self.signals.phase_cancel(),
                                       stop_on_error=False)
                except StageError as err:
                    # a checkpoint that cannot be read is not fatal: the task starts afresh
                    ck_st = err.stage
                    logger.warning("checkpoint stage-in: %s", err)
                if ck_st is not None:
                    rec.stage_in.append(ck_st)
                    ph.files = ck_st.files
                    ph.bytes = ck_st.bytes
                    found = [r.lfn for r in ck_st.results if r.success]
                    logger.info("checkpoint stage-in: %s", ", ".join(found) or "none present")

    def _unverified(self, files: list[Any], expected: dict[str, str]) -> None:
        """Inputs no checksum covers: logged and recorded; refused with integrity
        "required" (validate and run refuse them earlier where they can)."""
        missing = [f.lfn for f in files if not (f.sha256 or expected.get(f.lfn))]
        if not missing:
            return
        self.record.unverified = missing
        if self.spec.integrity == "required":
            raise SpecError([f"integrity \"required\": no checksum for {', '.join(missing)}"])
        logger.log(logging.WARNING if self.spec.meta else logging.INFO,
                   "not verified (no sha256 in the job%s): %s",
                   " or its meta files" if self.spec.meta else "", ", ".join(missing))

    def _verifications(self, st: Any) -> None:
        for r in st.results:
            if r.expected:
                self.record.verifications.append(
                    verify(r.lfn, r.expected, r.sha256 or "", r.hash_seconds))

    def _stage_out(self) -> None:
        from fluxlite.staging.phases import run_transfers

        spec, rec = self.spec, self.record
        if self.workdir is None or self.phase == Phase.WORKDIR:
            return
        wd = self.workdir.path
        after_signal = self.signals.stop_signal is not None or bool(
            rec.task is not None and rec.task.terminated_by)
        # checkpoints first: under a time limit they are what matters most
        ck_error: StageError | None = None
        ck_reqs = []
        for c in spec.checkpoints:
            src = os.path.join(wd, c.lfn)
            try:
                if check_local_source(src, wd, c.lfn):
                    ck_reqs.append(Request(lfn=c.lfn, sources=((file_url(src), True),),
                                           dst=c.url, fsync=True, confine=wd))
            except StageError as err:  # a link leading out, a FIFO, ...: refused
                ck_error = ck_error or err
        if ck_reqs:
            with self._phase(Phase.CHECKPOINT_OUT) as ph:
                st: StageResult | None
                try:
                    st = run_transfers("checkpoint-out", ck_reqs, self._policy(),
                                       spec.staging.threads, self.signals.phase_cancel(),
                                       stop_on_error=False)
                except StageError as err:
                    # recorded and raised after the outputs: a checkpoint that cannot be
                    # saved must not keep the outputs from leaving
                    st = err.stage
                    ck_error = err
                    ph.ok, ph.error = False, str(err)
                    logger.error("checkpoint stage-out failed: %s", err)
                if st is not None:
                    rec.stage_out.append(st)
                    ph.files, ph.bytes = st.files, st.bytes
                    if after_signal:
                        rec.staged_after_signal += [r.lfn for r in st.results if r.success]
                    if ck_error is None:
                        logger.info("checkpoint stage-out: %d files, %s", st.files,
                                    _mb(st.bytes))
        self._stage_out_outputs(after_signal)  # an error here wins; ck_error is recorded
        if ck_error is not None:
            raise ck_error

    def _stage_out_outputs(self, after_signal: bool) -> None:
        from fluxlite.staging.phases import run_transfers

        spec, rec = self.spec, self.record
        wd = self.workdir.path
        if not spec.outputs:
            return
        reqs = []
        missing: list[str] = []
        task_ok = (rec.task is not None and rec.task.status.ok
                   and not rec.task.terminated_by)
        refused: StageError | None = None
        for o in spec.outputs:
            src = os.path.join(wd, o.lfn)
            try:
                present = check_local_source(src, wd, o.lfn)
            except StageError as err:  # a link leading out, a FIFO, a directory: refused
                refused = refused or err
                continue
            if not present:
                if not o.optional:
                    missing.append(o.lfn)
                continue
            rec.outputs.append(OutputInfo(o.lfn, src, host.stat_info(src)))
            reqs.append(Request(lfn=o.lfn, sources=((file_url(src), True),), dst=o.urls[0],
                                fallback_dsts=tuple(o.urls[1:]), fsync=True, confine=wd))
        with self._phase(Phase.STAGE_OUT) as ph:
            if refused is not None:
                raise refused  # before any output leaves
            st = None
            try:
                if reqs:
                    st = run_transfers("stage-out", reqs, self._policy(), spec.staging.threads,
                                       self.signals.phase_cancel())
            except StageError as err:
                st = err.stage
                raise
            finally:
                if st is not None:
                    rec.stage_out.append(st)
                    by_lfn = {r.lfn: r for r in st.results}
                    for info in rec.outputs:
                        r = by_lfn.get(info.lfn)
                        if r is not None and r.success:
                            info.sha256, info.checksum_timing = r.sha256, r.hash_seconds
                            info.staged_to = r.dst
                    if after_signal:
                        rec.staged_after_signal += [r.lfn for r in st.results if r.success]
            if st is not None:
                ph.files, ph.bytes = st.files, st.bytes
                logger.info("stage-out: %d files, %s in %.3f s", st.files, _mb(st.bytes),
                            ph_elapsed(ph))
            if spec.write_meta:
                from fluxlite.meta import write_meta

                write_meta(spec.write_meta, rec.outputs)
            if missing and task_ok:
                raise StageError("missing output" + "s" * (len(missing) > 1) + ": "
                                 + ", ".join(missing), lfn=missing[0])
            if missing:
                logger.warning("outputs not produced: %s", ", ".join(missing))

    # -- the task ----------------------------------------------------------------------------
    def _schedule(self) -> Schedule:
        timeleft = None
        if self.spec.limits.maxwalltime is None and self.flux is not None:
            timeleft = self.flux.timeleft_at_start
        elapsed = time.perf_counter() - self._t0
        return from_limits(maxwalltime=self.spec.limits.maxwalltime,
                           checkpoint_time=self.spec.limits.checkpoint_time,
                           kill_grace=self.spec.limits.kill_grace, timeleft=timeleft,
                           elapsed=elapsed)

    def _run_task(self, exe: str) -> None:
        from fluxlite.execute.monitor import Monitor

        spec, rec, wd = self.spec, self.record, self.workdir.path
        sched = self._schedule()
        rec.schedule = sched
        if sched.term_after is not None or sched.kill_after is not None:
            logger.info("time limit: %s", describe_schedule(sched))
        (stdin, stdout, stderr), stdio = self._task_stdio()
        argv, env, cwd, undo, linger = [exe, *spec.arguments], self._task_env(), wd, None, None
        if spec.container is not None:  # the task runs inside an image (fluxlite.container)
            from fluxlite.container import wrap

            with self._phase(Phase.CONTAINER):
                w = wrap(argv, env, wd, spec, extra_env=self.opt.extra_env, flux=self.flux,
                         policy=self._policy(), cancel=self.signals.phase_cancel())
            argv, env, cwd, undo, rec.container = w.argv, w.env, w.cwd, w.cleanup, w.info
            linger = w.linger
        ctl_cls: Any = LocalLauncher
        if spec.placement != "local":
            from fluxlite.flux.launcher import launcher_for

            ctl_cls = launcher_for(spec, self.flux)
        on_flux = ctl_cls is not LocalLauncher  # a Flux launcher: placement flux or nested
        local = {} if on_flux else {"on_orphaned": self._orphaned, "linger": linger}
        ctl = ctl_cls(argv, cwd, env, stdin=stdin, stdout=stdout, stderr=stderr,
                      schedule=sched, kill_grace=spec.limits.kill_grace, usr1=spec.usr1,
                      events=rec.signals, **local)
        if self.flux is not None:
            ctl.timeleft = self.flux.timeleft  # re-derives the schedule at Flux's warning
        rec.stdio = stdio
        with self._phase(Phase.TASK) as ph:
            mon = Monitor(spec.monitor_interval)
            try:
                self.controller = ctl
                ctl.start()
                rec.task = ctl.result
                if on_flux and ctl.flux_jobid:  # a job of its own
                    rec.jobids["flux-task"] = ctl.flux_jobid
                    if rec.flux is not None:
                        rec.flux["task"] = ctl.flux_info  # filled in further as it ends
                if ctl.monitors_tree:  # not a Flux job's: its processes are not below us
                    mon.start(exclude=ctl.helper_pids)
                logger.info("task started: pid %d", ctl.result.pid)
                res = ctl.wait()
            except ExecError as err:
                rec.task = ctl.result
                rec.task.status = ExitStatus.failed_to_start(str(err))
                raise
            finally:
                self.controller = None
                rec.usage = mon.stop()
                self.phase = Phase.TASK_DONE
                if undo is not None:
                    undo()  # no container is left, however the task ended
            rec.task = res
            ph.ok = res.status.ok
            self._task_output()
            msg = _describe(res.status)
            logger.info("task %s after %.3f s", msg, res.duration)
            if res.killed:
                logger.info("killed %d leftover process%s of the task", len(res.killed),
                            "es" * (len(res.killed) != 1))

    def _task_stdio(self) -> tuple[tuple[str | int, str | int, str | int], list[StdioFile]]:
        """Where the task's stdin, stdout and stderr go (the job's files in the worker
        directory), and their entries in the record."""
        spec, wd = self.spec, self.workdir.path
        stdin = os.path.join(wd, spec.stdin) if spec.stdin else os.devnull
        stdout = os.path.join(wd, spec.stdout or os.path.join(STDIO_DIR, "stdout"))
        stderr = os.path.join(wd, spec.stderr or os.path.join(STDIO_DIR, "stderr"))
        for name in (spec.stdout, spec.stderr):
            if name and "/" in name:  # "logs/err.txt": its directory, in the worker dir
                os.makedirs(os.path.dirname(os.path.join(wd, name)), exist_ok=True)
        return (stdin, stdout, stderr), [StdioFile("stdin", stdin), StdioFile("stdout", stdout),
                                         StdioFile("stderr", stderr)]

    def _task_output(self) -> None:
        """Once the task has ended: the tails of its stdout and stderr into the record."""
        for f in self.record.stdio[1:]:
            f.data, f.truncated, f.size = tail(f.path, self.spec.records.stdio_bytes)

    def _orphaned(self) -> None:
        """Run by the task's supervisor when fluxlite died (SIGKILL) during the task, after
        it killed every process of the job: the worker directory goes as ``keep`` says of
        a failed job (kept unless "never"); a directory fluxlite did not create stays."""
        wd = self.workdir
        if wd is not None and wd.identity is not None and self.spec.workdir.keep == "never":
            wd.remove()

    # -- the ending --------------------------------------------------------------------------
    def _finish(self) -> None:
        rec = self.record
        self.phase = Phase.RECORDS
        if rec.exit_code == 0:
            self._memo(Phase.DONE, exit_code=0)
        else:  # the cause as stderr says it, for `flux jobs -o {user.fluxlite.cause}`
            self._memo(Phase.FAILED, exit_code=rec.exit_code, cause=failure_cause(rec))
        rec.self_usage = rusage_dict(resource.getrusage(resource.RUSAGE_SELF))
        if not self.opt.compact:
            rec.machine = host.machine()
        rec.full = self.opt.full
        rec.compact = self.opt.compact
        if rec.exit_code != 0 or rec.full:
            rec.environment = host.redacted_env(self._task_env())
            rec.rlimits = host.rlimits()
        rec.duration = time.time() - rec.start
        written = self._write_records()
        self._cleanup()
        self.phase = Phase.DONE
        rc = rec.exit_code
        if rc == 0:
            logger.info("job succeeded in %.3f s", rec.duration)
        if not self.protocol:
            return
        if rc != 0:
            for line in failure_summary(rec, written, self._kept_workdir):
                logger.error("%s", line)
        if rc == EXIT_INFRA and rec.task is not None and rec.task.status.raw != -1:
            _protocol(f"PegasusLite: exitcode {rc}, tool originally exited with exitcode "
                      f"{rec.task.status.code}")
        elif rc == EXIT_INFRA:  # monitord reads only the number: the rest is for people
            _protocol(f"PegasusLite: exitcode {rc}, no task ran "
                      f"({rec.failed_phase or 'job'} failed)")
        else:
            _protocol(f"PegasusLite: exitcode {rc}")

    def _write_records(self) -> list[str]:
        """Write the records; the files written (not stdout)."""
        rec, spec = self.record, self.spec
        ks = spec.records.kickstart if self.opt.kickstart == "from-spec" else self.opt.kickstart
        js = spec.records.json if self.opt.json == "from-spec" else self.opt.json
        written = []
        if ks:
            from fluxlite.record import kickstart

            if self._emit_record("kickstart", ks, lambda: kickstart.render(rec).encode(
                    "utf-8", "backslashreplace"), append=self.appends_record):
                written.append(ks)
        if js:
            from fluxlite.record import jsonrecord  # orjson: imported only when asked for

            if self._emit_record("JSON", js, lambda: jsonrecord.render(rec)):
                written.append(js)
        return [w for w in written if w != "-"]

    def _emit_record(self, kind: str, dest: str, render: Any, append: bool = False) -> bool:
        """Write one record; a record that cannot be written fails the job (exit 71), but
        the other record is still written and nothing else is skipped. An earlier attempt's
        record at dest is kept as dest.000 (.001, ...) unless told to overwrite it."""
        if not append and not self.opt.overwrite_records and dest != "-":
            kept = keep_earlier(dest)
            if kept:
                logger.info("the earlier %s record is kept as %s", kind, kept)
        try:
            data = render()
        except Exception as err:  # noqa: BLE001 - the cleanup and the exit line must follow
            self._record_failed(f"cannot render the {kind} record: {type(err).__name__}: {err}")
            return False
        try:
            _emit(dest, data, self.opt.stdout, append=append)
        except OSError as err:
            self._record_failed(f"cannot write the {kind} record to {dest}: "
                                f"{err.strerror or err}")
            return False
        return True

    def _record_failed(self, why: str) -> None:
        """A record that cannot be written fails a job that had succeeded (its summary line
        then says why); the failure of a job that had failed already keeps its own cause,
        and this is a line of its own."""
        rec = self.record
        summary = rec.exit_code == 0 and self.protocol  # said by the failure summary
        if rec.exit_code == 0:
            rec.exit_code = EXIT_INFRA
            rec.error = why
            rec.failed_phase = Phase.RECORDS
        if not summary:
            logger.error("%s", why)

    def _cleanup(self) -> None:
        wd = self.workdir
        if wd is None or wd.identity is None:
            return  # a given directory is the caller's: never removed
        keep = self.spec.workdir.keep
        if keep == "always" or (keep == "on-failure" and self.record.exit_code != 0):
            logger.info("worker directory kept: %s", wd.path)
            self._kept_workdir = wd.path
            return
        wd.remove()


def keep_earlier(dest: str) -> str | None:
    """Rename a non-empty regular file at dest to the first free dest.NNN (000 to 999), as
    pegasus-exitcode keeps the .out of each attempt; its new name, or None. A device, a FIFO
    or anything that is not a regular file is left alone."""
    import stat

    try:
        st = os.lstat(dest)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return None
    for i in range(1000):
        cand = f"{dest}.{i:03d}"
        if os.path.lexists(cand):
            continue
        try:
            os.link(dest, cand)  # never replaces: a concurrent rerun takes the next number
        except FileExistsError:
            continue
        except OSError as err:
            logger.warning("cannot keep the earlier record %s: %s", dest, err.strerror)
            return None
        return cand
    logger.warning("the earlier records of %s are not kept: %s.000 to .999 exist", dest, dest)
    return None


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
    if rec.failed_phase in HOOKS and rec.error:
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
    return text + "; " + _describe(task.status)


def _stderr_tail(rec: Record, lines: int = 3, width: int = 300) -> str:
    for f in rec.stdio:
        if f.name == "stderr" and f.data:
            text = f.data.decode("utf-8", "replace").rstrip("\n").splitlines()[-lines:]
            out = " | ".join(t.strip() for t in text if t.strip())
            return out if len(out) <= width else "..." + out[-width:]
    return ""


def _emit(dest: str, data: bytes, stdout: Any, append: bool = False) -> None:
    if dest == "-":
        if stdout is None and sys.stdout is None:  # started with its stdout closed
            raise OSError(errno.EBADF, "standard output is closed")
        out = stdout if stdout is not None else sys.stdout.buffer
        out.write(data)
        out.flush()
        return
    if append:
        # kickstart -l appends: several records may share one file (clustered jobs);
        # one write() with O_APPEND keeps concurrent writers' records whole
        # a FIFO without a reader is an error at once (ENXIO), not a wait
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK, 0o666)
        try:
            os.set_blocking(fd, True)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        return
    from fluxlite.fsutil import write_atomic

    # a reader sees the whole record or none (no fsync: the record is read after the job by
    # the submit host, and an fsync per job costs more than it buys)
    write_atomic(dest, data)


def _protocol(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _describe(status: Any) -> str:
    if status.error is not None:
        return f"could not start: {status.error}"
    if status.signal is not None:
        return f"killed by {signal_name(status.signal)}"
    return f"exited with code {status.exitcode}"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


def ph_elapsed(ph: PhaseTiming) -> float:
    """Seconds since a phase began."""
    return time.time() - ph.start


def run_job(spec: JobSpec, options: RunOptions | None = None) -> int:
    """Run one job; return its exit code."""
    return Runner(spec, options).run()


__all__ = ["RunOptions", "Runner", "run_job"]
