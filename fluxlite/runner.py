"""The pipeline of one job, and the only place that knows the order of its phases.

workdir -> stage-in (verified) -> task (monitored, time-limited) -> stage-out -> records.
Every way a job can end, a signal included, goes through the same ending: checkpoints and
outputs staged out where possible, both records written, the worker directory removed per
policy, and an exit code that tells task failures from infrastructure failures.

Where front ends differ (the worker directory, the task's stdio, what runs around the task,
how its end is judged, the lines that tell the end) a strategy decides
(:class:`fluxlite.strategy.RunStrategy`); PegasusLite's is the default.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from fluxlite.errors import EXIT_INFRA, ExecError, FluxliteError, Interrupted, StageError
from fluxlite.execute.base import ExitStatus, SignalEvent, TaskCommand, rusage_dict, signal_name
from fluxlite.execute.resolve import resolve
from fluxlite.execute.timelimit import Schedule, from_limits
from fluxlite.execute.timelimit import describe as describe_schedule
from fluxlite.pegasus.lite import STDIO_DIR, PegasusLite, failure_cause
from fluxlite.record import host
from fluxlite.record.model import Identity, OutputInfo, Phase, PhaseTiming, Record
from fluxlite.signals import HANDLED_SIGNALS, Handlers, Stop
from fluxlite.spec import JobSpec
from fluxlite.staging import job as staging

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any
    from fluxlite.execute.base import Launcher, TaskResult
    from fluxlite.execute.monitor import Monitor
    from fluxlite.staging.base import Request
    from fluxlite.staging.phases import StageResult
    from fluxlite.strategy import RunStrategy

logger = logging.getLogger("fluxlite")


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
    # the kickstart record appended to its file (several records share one), not replacing it
    append_record: bool = False


class _Stopped(Stop):
    """A stop signal outside the task, raised wherever the main thread is: a BaseException,
    so that no ``except Exception`` on the way (logging's ``emit``, a retry loop) swallows
    it; the runner turns it into :class:`Interrupted` of the phase it stopped."""

    def __init__(self, signum: int, phase: Phase) -> None:
        super().__init__(signum)
        self.phase = phase

    def interrupted(self) -> Interrupted:
        """The job's error: interrupted by the signal during the phase."""
        return Interrupted(self.signum, self.phase)


class _Signals:
    """fluxlite's own signal handling: forward to the task, or stop the current phase."""

    def __init__(self, runner: Runner) -> None:
        self.r = runner
        self.handlers = Handlers(HANDLED_SIGNALS, self.handle)
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
        """The policy: to the running task (or a program beside it), else stop the phase
        (once)."""
        r = self.r
        ctl = r.controller
        if ctl is not None:  # set only while the task or a program beside it runs
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
        raise _Stopped(signum, r.phase)


class Runner:
    """Runs one job through its phases, in order, and always ends with its records.

    ``strategy`` decides where front ends differ (PegasusLite's by default). What the
    runner offers a strategy: :meth:`run_task` (the task, with its container, launcher and
    monitor), :meth:`run_command` (a program beside it), :meth:`task_env` and
    :attr:`stop_signal`.
    """

    def __init__(self, spec: JobSpec, options: RunOptions | None = None,
                 strategy: RunStrategy | None = None) -> None:
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
        self.strategy = strategy or PegasusLite()
        self.strategy.attach(self)

    @property
    def stop_signal(self) -> int | None:
        """The signal that told fluxlite to stop, once one has."""
        return self.signals.stop_signal

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
            stop = err.interrupted() if isinstance(err, _Stopped) else None
            ph.error = str(stop or err) or type(err).__name__
            self._failing_phase = self._failing_phase or name
            if stop is not None:
                raise stop from None
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
            except (Interrupted, _Stopped) as err:
                stop = err.interrupted() if isinstance(err, _Stopped) else err
                self._ending()
                self._fail(stop, stop.phase)
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
        self.strategy.failed(f"{phase} failed: {err}", err)

    def _main(self) -> None:
        rec = self.record
        exe = self.strategy.prepare()
        with self._phase(Phase.WORKDIR):
            self.workdir = self.strategy.workdir()
            rec.workdir = rec.cwd = self.workdir.path
        self._stage_in()
        self.phase = Phase.TASK  # a staged executable that cannot run is not a stage-in failure
        exe = exe or self._workdir_executable()
        rec.executable = exe
        rec.executable_stat = host.stat_info(exe)
        try:
            self.strategy.around_task(exe)
        finally:
            self._stage_out()  # outputs and checkpoints leave whatever happened to the task
        self.strategy.judge()

    # -- executable ------------------------------------------------------------------
    def task_env(self) -> dict[str, str]:
        """The task's environment: fluxlite's, with what the job sets on top."""
        return {**os.environ, **self._inner_env()}

    def _inner_env(self) -> dict[str, str]:
        env = dict(self.spec.env)
        env.update(self.opt.extra_env)
        if self.workdir is not None:
            env["FLUXLITE_WORKDIR"] = self.workdir.path
        return env

    def command(self, argv: list[str]) -> TaskCommand:
        """``argv`` as the job runs it: in the worker directory, in the task's environment."""
        inner = self._inner_env()
        return TaskCommand(argv, self.workdir.path, {**os.environ, **inner}, inner)

    def _workdir_executable(self) -> str:
        r = resolve(os.path.join(self.workdir.path, self.spec.executable), None)
        self.record.executable = r.path
        if r.problem:
            raise ExecError(f"executable {r.problem}")
        assert r.path is not None
        return r.path

    # -- staging ---------------------------------------------------------------------------
    def _transfers(self, kind: str, reqs: list[Request], stop_on_error: bool = True
                   ) -> StageResult:
        from fluxlite.staging.phases import run_transfers

        return run_transfers(kind, reqs, staging.policy(self.spec), self.spec.staging.threads,
                             self.signals.phase_cancel(), stop_on_error=stop_on_error)

    def _stage_in(self) -> None:
        spec, rec, wd = self.spec, self.record, self.workdir.path
        expected = staging.expected_hashes(spec)
        rec.unverified = staging.unverified(spec, expected)
        staging.check_unverified(spec, rec.unverified)
        reqs = staging.input_requests(spec, wd, expected)
        if reqs:
            with self._phase(Phase.STAGE_IN) as ph:
                try:
                    st = self._transfers("stage-in", reqs)
                except StageError as err:
                    if err.stage is not None:
                        rec.stage_in.append(err.stage)
                        rec.verifications += staging.verifications(err.stage)
                    raise
                rec.stage_in.append(st)
                rec.verifications += staging.verifications(st)
                ph.bytes, ph.files = st.bytes, st.files
                logger.info("stage-in: %d files, %s in %.3f s", st.files, _mb(st.bytes),
                            ph_elapsed(ph))
        ck = staging.checkpoint_requests(spec, wd)
        if ck:
            with self._phase(Phase.CHECKPOINT_IN) as ph:
                try:
                    ck_st: StageResult | None = self._transfers("checkpoint-in", ck, False)
                except StageError as err:
                    # a checkpoint that cannot be read is not fatal: the task starts afresh
                    ck_st = err.stage
                    logger.warning("checkpoint stage-in: %s", err)
                if ck_st is not None:
                    rec.stage_in.append(ck_st)
                    ph.files, ph.bytes = ck_st.files, ck_st.bytes
                    found = [r.lfn for r in ck_st.results if r.success]
                    logger.info("checkpoint stage-in: %s", ", ".join(found) or "none present")

    def _stage_out(self) -> None:
        rec = self.record
        if self.workdir is None or self.phase == Phase.WORKDIR:
            return
        after_signal = self.stop_signal is not None or bool(
            rec.task is not None and rec.task.terminated_by)
        # checkpoints first: under a time limit they are what matters most
        ck_reqs, ck_error = staging.checkpoint_out_requests(self.spec, self.workdir.path)
        if ck_reqs:
            with self._phase(Phase.CHECKPOINT_OUT) as ph:
                st: StageResult | None
                try:
                    st = self._transfers("checkpoint-out", ck_reqs, False)
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
        spec, rec = self.spec, self.record
        if not spec.outputs:
            return
        out = staging.output_requests(spec, self.workdir.path)
        rec.outputs += [OutputInfo(lfn, src, host.stat_info(src)) for lfn, src in out.found]
        task_ok = (rec.task is not None and rec.task.status.ok
                   and not rec.task.terminated_by)
        with self._phase(Phase.STAGE_OUT) as ph:
            if out.refused is not None:
                raise out.refused  # before any output leaves
            st = None
            try:
                if out.requests:
                    st = self._transfers("stage-out", out.requests)
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
            missing = out.missing
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

    def _launcher(self, cmd: TaskCommand, stdio: tuple[Any, Any, Any], schedule: Schedule,
                  **kw: Any) -> Launcher:
        from fluxlite.flux.launcher import launcher_for

        return launcher_for(cmd, stdio, ctx=self.flux, schedule=schedule,
                            kill_grace=self.spec.limits.kill_grace, usr1=self.spec.usr1,
                            events=self.record.signals, on_orphaned=self._orphaned, **kw)

    def _launch(self, ctl: Launcher, started: Callable[[], None] | None = None) -> TaskResult:
        """The one launch sequence, of the task and of the programs beside it: the signals
        fluxlite receives go to the launcher while it runs; it is started, then waited for.
        An ExecError (it could not start) leaves its result saying so."""
        try:
            self.controller = ctl
            ctl.start()
            if started is not None:
                started()
            return ctl.wait()
        except ExecError as err:
            ctl.result.status = ExitStatus.failed_to_start(str(err))
            raise
        finally:
            self.controller = None

    def run_task(self, exe: str, schedule: Schedule | None = None) -> None:
        """Run the task to its end: in its container if it has one, by the launcher of its
        placement, monitored, on the strategy's stdio, under ``schedule`` (None: the one
        the job's limits, or Flux's time left, make)."""
        from fluxlite.execute.monitor import Monitor

        spec, rec = self.spec, self.record
        sched = schedule if schedule is not None else self._schedule()
        rec.schedule = sched
        if sched.term_after is not None or sched.kill_after is not None:
            logger.info("time limit: %s", describe_schedule(sched))
        stdio, entries = self.strategy.stdio()
        cmd, undo, linger = self.command([exe, *spec.arguments]), None, None
        if spec.container is not None:  # the task runs inside an image (fluxlite.container)
            from fluxlite.container import wrap

            with self._phase(Phase.CONTAINER):
                w = wrap(cmd, spec, flux=self.flux, policy=staging.policy(spec),
                         cancel=self.signals.phase_cancel())
            cmd, undo, rec.container, linger = w.command, w.cleanup, w.info, w.linger
        ctl = self._launcher(cmd, stdio, sched, placement=spec.placement,
                             resources=spec.resources, name=spec.name, linger=linger)
        rec.stdio = entries
        with self._phase(Phase.TASK) as ph:
            mon = Monitor(spec.monitor_interval)
            try:
                res = self._launch(ctl, lambda: self._task_started(ctl, mon))
            except ExecError:
                rec.task = ctl.result
                raise
            finally:
                rec.usage = mon.stop()
                self.phase = Phase.TASK_DONE
                if undo is not None:
                    undo()  # no container is left, however the task ended
            rec.task = res
            ph.ok = res.status.ok
            msg = res.status.describe()
            logger.info("task %s after %.3f s", msg, res.duration)
            if res.killed:
                logger.info("killed %d leftover process%s of the task", len(res.killed),
                            "es" * (len(res.killed) != 1))

    def _task_started(self, ctl: Launcher, mon: Monitor) -> None:
        rec = self.record
        rec.task = ctl.result
        ids = ctl.job_ids()
        if ids:  # a job of its own
            rec.jobids.update(ids)
            if rec.flux is not None:
                rec.flux["task"] = ctl.job_info()  # filled in further as it ends
        if ctl.monitors_tree:  # not a Flux job's: its processes are not below us
            mon.start(exclude=ctl.helper_pids)
        logger.info("task started: pid %d", ctl.result.pid)

    def run_command(self, phase: Phase, argv: list[str], stdio: tuple[Any, Any, Any],
                    schedule: Schedule) -> TaskResult:
        """Run a program beside the task (a strategy's, before or after it) as ``phase``:
        locally, in the worker directory, in the task's environment, on ``stdio``, under
        ``schedule``. One that cannot be started is a result that says so (exit 127)."""
        ctl = self._launcher(self.command(list(argv)), stdio, schedule)
        with self._phase(phase) as ph:
            try:
                res = self._launch(ctl)
            except ExecError:
                res = ctl.result
            ph.ok = res.status.ok
        return res

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
        self.strategy.ending()
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
            rec.environment = host.redacted_env(self.task_env())
            rec.rlimits = host.rlimits()
        rec.duration = time.time() - rec.start
        written = self._write_records()
        self._cleanup()
        self.phase = Phase.DONE
        if rec.exit_code == 0:
            logger.info("job succeeded in %.3f s", rec.duration)
        self.strategy.finished(written, self._kept_workdir)

    def _write_records(self) -> list[str]:
        """Write the records; the files written (not stdout)."""
        from fluxlite.record.write import write_records

        opt, where = self.opt, self.spec.records
        return write_records(
            self.record, where.kickstart if opt.kickstart == "from-spec" else opt.kickstart,
            where.json if opt.json == "from-spec" else opt.json, stdout=opt.stdout,
            append=opt.append_record, overwrite=opt.overwrite_records,
            failed=self._record_failed)

    def _record_failed(self, why: str) -> None:
        """A record that cannot be rendered or written fails a job that had succeeded (the
        strategy says why, as it says any cause); the failure of a job that had failed already
        keeps its own cause, and this is a line of its own."""
        rec = self.record
        if rec.exit_code == 0:
            rec.exit_code = EXIT_INFRA
            rec.error = why
            rec.failed_phase = Phase.RECORDS
            self.strategy.failed(why)
        else:
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


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


def ph_elapsed(ph: PhaseTiming) -> float:
    """Seconds since a phase began."""
    return time.time() - ph.start


def run_job(spec: JobSpec, options: RunOptions | None = None) -> int:
    """Run one job; return its exit code."""
    return Runner(spec, options).run()


__all__ = ["STDIO_DIR", "RunOptions", "Runner", "run_job"]
