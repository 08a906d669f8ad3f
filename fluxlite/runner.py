"""The pipeline of one job, and the only place that knows the order of its phases.

workdir -> stage-in (verified) -> task (monitored, time-limited) -> stage-out -> records.
Every way a job can end, a signal included, goes through the same ending: checkpoints and
outputs staged out where possible, both records written, the worker directory removed per
policy, and an exit code that tells task failures from infrastructure failures.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fluxlite.errors import (
    EXIT_INFRA,
    ExecError,
    FluxliteError,
    IntegrityError,
    Interrupted,
    StageError,
)
from fluxlite.execute.task import SignalEvent, TaskController, signal_name
from fluxlite.execute.timelimit import Schedule, from_limits
from fluxlite.integrity import verify
from fluxlite.record import host
from fluxlite.record.model import OutputInfo, Phase, Record, StdioFile, tail
from fluxlite.spec import JobSpec
from fluxlite.staging.base import Policy, Request
from fluxlite.urls import file_url

logger = logging.getLogger("fluxlite")

TERMINATING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGXCPU, signal.SIGQUIT)
STDIO_DIR = ".fluxlite"


@dataclass(slots=True)
class RunOptions:
    kickstart: str | None = "from-spec"  # a path, "-" or None; "from-spec": spec.records
    json: str | None = "from-spec"
    full: bool = False
    compact: bool = False
    use_flux: bool = True
    stdout: Any = None  # where "-" records go (default sys.stdout)
    extra_env: dict[str, str] = field(default_factory=dict)


class _Signals:
    """fluxlite's own signal handling: forward to the task, or stop the current phase."""

    def __init__(self, runner: Runner) -> None:
        self.r = runner
        self.old: dict[int, Any] = {}
        self.stop_signal: int | None = None
        self.cancel = threading.Event()

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (*TERMINATING, signal.SIGUSR1):
            try:
                self.old[sig] = signal.signal(sig, self.handle)
            except (OSError, ValueError):
                pass

    def restore(self) -> None:
        for sig, old in self.old.items():
            try:
                signal.signal(sig, old)
            except (OSError, ValueError):
                pass
        self.old.clear()

    def handle(self, signum: int, frame: object) -> None:
        r = self.r
        ctl = r.controller
        if r.phase == "task" and ctl is not None:
            ctl.on_signal(signum)  # records the event itself
            if signum != signal.SIGUSR1 and self.stop_signal is None:
                self.stop_signal = signum
            return
        r.record.signals.append(SignalEvent(time.time(), signal_name(signum), "received",
                                            "fluxlite", f"during {r.phase}"))
        if signum == signal.SIGUSR1:
            return  # no task running: nothing to checkpoint
        if r.phase in ("records", "done"):
            self.stop_signal = self.stop_signal or signum
            return  # finish writing what is being written
        if self.stop_signal is not None and r.phase not in ("stage-out",):
            return  # already stopping: the first signal decides
        self.stop_signal = signum
        self.cancel.set()
        raise Interrupted(signum, r.phase)


class Runner:
    def __init__(self, spec: JobSpec, options: RunOptions | None = None) -> None:
        self.spec = spec
        self.opt = options or RunOptions()
        self.record = Record(spec=spec, start=time.time())
        self.phase = "setup"
        self.controller: TaskController | None = None
        self.signals = _Signals(self)
        self.flux: Any = None
        self.workdir: Any = None
        self._t0 = time.perf_counter()

    # -- phases -----------------------------------------------------------------------
    @contextmanager
    def _phase(self, name: str) -> Iterator[Phase]:
        self.phase = name
        ph = Phase(name, time.time())
        self.record.phases.append(ph)
        self._memo(name)
        t0 = time.perf_counter()
        try:
            yield ph
        except BaseException as err:
            ph.ok = False
            ph.error = str(err) or type(err).__name__
            raise
        finally:
            ph.duration = time.perf_counter() - t0

    def _memo(self, phase: str, **extra: Any) -> None:
        if self.flux is not None:
            rec = self.record
            self.flux.memo({"phase": phase,
                            "bytes_in": sum(s.bytes for s in rec.stage_in),
                            "files_in": sum(s.files for s in rec.stage_in),
                            "bytes_out": sum(s.bytes for s in rec.stage_out),
                            "files_out": sum(s.files for s in rec.stage_out), **extra})

    def run(self) -> int:
        """Run the whole job; return the exit code. Records are always written."""
        self.signals.install()
        rec = self.record
        try:
            self._setup()
            try:
                self._main()
            except Interrupted as err:
                self._fail(err, err.phase)
            except FluxliteError as err:
                self._fail(err, self.phase)
            except Exception as err:  # noqa: BLE001 - a bug must still end in a record
                logger.exception("internal error")
                self._fail(FluxliteError(f"internal error: {type(err).__name__}: {err}"),
                           self.phase)
            self._finish()
        finally:
            self.signals.restore()
        return rec.exit_code

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

    def _fail(self, err: FluxliteError, phase: str) -> None:
        rec = self.record
        rec.error = str(err)
        rec.failed_phase = phase
        if isinstance(err, Interrupted):
            rec.exit_code = err.exit_code
        elif rec.task is not None and rec.task.pid and not rec.task.status.ok:
            rec.exit_code = rec.task.status.code  # the task's failure decides
        else:
            rec.exit_code = err.exit_code
        logger.error("%s failed: %s", phase, err)

    def _main(self) -> None:
        spec, rec = self.spec, self.record
        exe = self._precheck_executable()
        with self._phase("workdir") as ph:
            from fluxlite import workdir

            self.workdir = workdir.create(spec.workdir)
            rec.workdir = rec.cwd = self.workdir.path
            os.makedirs(os.path.join(self.workdir.path, STDIO_DIR), exist_ok=True)
            logger.info("worker directory %s (%.0f MB free)", self.workdir.path,
                        self.workdir.free_mb)
            del ph
        self._stage_in()
        exe = exe or self._workdir_executable()
        rec.executable = exe
        rec.executable_stat = host.stat_info(exe)
        try:
            self._run_task(exe)
        finally:
            # outputs and checkpoints leave whatever happened to the task
            self._stage_out()
        task = rec.task
        assert task is not None
        if not task.status.ok:
            rec.exit_code = task.status.code
            rec.error = rec.error or _describe(task.status)
            rec.failed_phase = rec.failed_phase or "task"

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
        if os.path.isabs(exe):
            path = exe
        else:
            path = shutil.which(exe, path=self._task_env().get("PATH", os.defpath)) or ""
            if not path:
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
                      timeout=s.timeout)

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
        for f in files:
            reqs.append(Request(
                lfn=f.lfn, sources=tuple((s.url, s.tls_verify) for s in f.sources),
                dst=os.path.join(wd, f.lfn), expected=f.sha256 or expected.get(f.lfn),
                executable=f.executable, symlink=f.symlink, optional=f.optional))
        if reqs:
            with self._phase("stage-in") as ph:
                try:
                    st = run_transfers("stage-in", reqs, self._policy(), spec.staging.threads,
                                       self.signals.cancel)
                except StageError as err:
                    stage = getattr(err, "stage", None)
                    if stage is not None:
                        rec.stage_in.append(stage)
                        self._verifications(stage)
                    raise
                except Interrupted:
                    raise
                rec.stage_in.append(st)
                self._verifications(st)
                ph.bytes, ph.files = st.bytes, st.files
                logger.info("stage-in: %d files, %s in %.3f s", st.files, _mb(st.bytes),
                            ph_elapsed(ph))
        ck = [Request(lfn=c.lfn, sources=((c.url, True),), dst=os.path.join(wd, c.lfn),
                      optional=True) for c in spec.checkpoints]
        if ck:
            with self._phase("checkpoint-in") as ph:
                try:
                    st = run_transfers("checkpoint-in", ck, self._policy(),
                                       spec.staging.threads, self.signals.cancel,
                                       stop_on_error=False)
                except StageError as err:
                    # a checkpoint that cannot be read is not fatal: the task starts afresh
                    st = getattr(err, "stage", None)
                    logger.warning("checkpoint stage-in: %s", err)
                if st is not None:
                    rec.stage_in.append(st)
                    ph.files = st.files
                    ph.bytes = st.bytes
                    found = [r.lfn for r in st.results if r.success]
                    logger.info("checkpoint stage-in: %s", ", ".join(found) or "none present")

    def _verifications(self, st: Any) -> None:
        for r in st.results:
            if r.expected:
                actual = r.sha256
                if actual is None and r.attempts:
                    last = r.attempts[-1].error or ""
                    actual = last.split("got ")[-1].split(" ")[0] if "got " in last else ""
                self.record.verifications.append(
                    verify(r.lfn, r.expected, actual or "", r.hash_seconds))

    def _stage_out(self) -> None:
        from fluxlite.staging.phases import run_transfers

        spec, rec = self.spec, self.record
        if self.workdir is None or self.phase == "workdir":
            return
        wd = self.workdir.path
        after_signal = self.signals.stop_signal is not None
        # checkpoints first: under a time limit they are what matters most
        ck_reqs = []
        for c in spec.checkpoints:
            src = os.path.join(wd, c.lfn)
            if os.path.isfile(src):
                ck_reqs.append(Request(lfn=c.lfn, sources=((file_url(src), True),),
                                       dst=c.url, fsync=True))
        if ck_reqs:
            with self._phase("checkpoint-out") as ph:
                try:
                    st = run_transfers("checkpoint-out", ck_reqs, self._policy(),
                                       spec.staging.threads, self.signals.cancel,
                                       stop_on_error=False)
                except StageError as err:
                    st = getattr(err, "stage", None)
                    if st is not None:
                        rec.stage_out.append(st)
                    raise
                rec.stage_out.append(st)
                ph.files, ph.bytes = st.files, st.bytes
                if after_signal:
                    rec.staged_after_signal += [r.lfn for r in st.results if r.success]
                logger.info("checkpoint stage-out: %d files, %s", st.files, _mb(st.bytes))
        if not spec.outputs:
            return
        reqs = []
        missing: list[str] = []
        task_ok = rec.task is not None and rec.task.status.ok
        for o in spec.outputs:
            src = os.path.join(wd, o.lfn)
            info = OutputInfo(o.lfn, src, host.stat_info(src))
            if info.stat is None or not os.path.isfile(src):
                if not o.optional:
                    missing.append(o.lfn)
                continue
            rec.outputs.append(info)
            reqs.append(Request(lfn=o.lfn, sources=((file_url(src), True),), dst=o.urls[0],
                                fallback_dsts=tuple(o.urls[1:]), fsync=True))
        with self._phase("stage-out") as ph:
            st = None
            try:
                if reqs:
                    st = run_transfers("stage-out", reqs, self._policy(), spec.staging.threads,
                                       self.signals.cancel)
            except StageError as err:
                st = getattr(err, "stage", None)
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
        return from_limits(self.spec.limits, timeleft, elapsed)

    def _run_task(self, exe: str) -> None:
        from fluxlite.execute.monitor import Monitor

        spec, rec, wd = self.spec, self.record, self.workdir.path
        sched = self._schedule()
        rec.schedule = sched
        if sched.term_after is not None:
            logger.info("time limit: TERM after %.1f s, KILL after %.1f s (%s)",
                        sched.term_after, sched.kill_after or 0.0, sched.source)
        stdin = os.path.join(wd, spec.stdin) if spec.stdin else os.devnull
        stdout = os.path.join(wd, spec.stdout) if spec.stdout else os.path.join(
            wd, STDIO_DIR, "stdout")
        stderr = os.path.join(wd, spec.stderr) if spec.stderr else os.path.join(
            wd, STDIO_DIR, "stderr")
        argv = [exe, *spec.arguments]
        ctl_cls: Any = TaskController
        if spec.placement != "local":
            from fluxlite.flux.placement import controller_for

            ctl_cls = controller_for(spec, self.flux)
        ctl = ctl_cls(argv, wd, self._task_env(), stdin=stdin, stdout=stdout, stderr=stderr,
                      schedule=sched, kill_grace=spec.limits.kill_grace, usr1=spec.usr1,
                      events=rec.signals)
        rec.stdio = [StdioFile("stdin", stdin), StdioFile("stdout", stdout),
                     StdioFile("stderr", stderr)]
        with self._phase("task") as ph:
            mon = Monitor(spec.monitor_interval)
            try:
                self.controller = ctl
                ctl.start()
                rec.task = ctl.result
                mon.start()
                logger.info("task started: pid %d", ctl.result.pid)
                res = ctl.wait()
            except ExecError as err:
                rec.task = ctl.result
                rec.task.status = _failed_status(str(err))
                raise
            finally:
                self.controller = None
                rec.usage = mon.stop()
                self.phase = "task-done"
            rec.task = res
            ph.ok = res.status.ok
            for f in rec.stdio[1:]:
                f.data, f.truncated, f.size = tail(f.path, spec.records.stdio_bytes)
            msg = _describe(res.status)
            logger.info("task %s after %.3f s", msg, res.duration)
            if res.killed:
                logger.info("killed %d leftover process%s of the task", len(res.killed),
                            "es" * (len(res.killed) != 1))

    # -- the ending --------------------------------------------------------------------------
    def _finish(self) -> None:
        rec = self.record
        self.phase = "records"
        self._memo("done" if rec.exit_code == 0 else "failed", exit_code=rec.exit_code)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        from fluxlite.execute.task import rusage_dict

        rec.self_usage = rusage_dict(ru)
        if not self.opt.compact:
            rec.machine = host.machine()
        rec.full = self.opt.full
        rec.compact = self.opt.compact
        if rec.exit_code != 0 or rec.full:
            rec.environment = host.redacted_env(self._task_env())
            rec.rlimits = host.rlimits()
        rec.duration = time.time() - rec.start
        self._write_records()
        self._cleanup()
        self.phase = "done"
        rc = rec.exit_code
        if rc == 0:
            logger.info("job succeeded in %.3f s", rec.duration)
        if rc == EXIT_INFRA:
            tool_rc = rec.task.status.code if rec.task and rec.task.pid else 1
            _protocol(f"PegasusLite: exitcode {rc}, tool originally exited with exitcode "
                      f"{tool_rc}")
        else:
            _protocol(f"PegasusLite: exitcode {rc}")

    def _write_records(self) -> None:
        from fluxlite.record import jsonrecord, kickstart

        rec, spec = self.record, self.spec
        ks = spec.records.kickstart if self.opt.kickstart == "from-spec" else self.opt.kickstart
        js = spec.records.json if self.opt.json == "from-spec" else self.opt.json
        if ks:
            _emit(ks, kickstart.render(rec).encode("utf-8"), self.opt.stdout)
        if js:
            _emit(js, jsonrecord.render(rec), self.opt.stdout)

    def _cleanup(self) -> None:
        wd = self.workdir
        if wd is None:
            return
        keep = self.spec.workdir.keep
        if keep == "always" or (keep == "on-failure" and self.record.exit_code != 0):
            logger.info("worker directory kept: %s", wd.path)
            return
        wd.remove()


def _emit(dest: str, data: bytes, stdout: Any) -> None:
    if dest == "-":
        out = stdout if stdout is not None else sys.stdout.buffer
        out.write(data)
        out.flush()
        return
    d = os.path.dirname(os.path.abspath(dest))
    os.makedirs(d, exist_ok=True)
    tmp = f"{dest}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, dest)


def _protocol(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _failed_status(error: str) -> Any:
    from fluxlite.execute.task import ExitStatus

    return ExitStatus.failed_to_start(error)


def _describe(status: Any) -> str:
    if status.error is not None:
        return f"could not start: {status.error}"
    if status.signal is not None:
        return f"killed by {signal_name(status.signal)}"
    return f"exited with code {status.exitcode}"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


def ph_elapsed(ph: Phase) -> float:
    return time.time() - ph.start


def run_job(spec: JobSpec, options: RunOptions | None = None) -> int:
    """Run one job; return its exit code."""
    return Runner(spec, options).run()


__all__ = ["run_job", "Runner", "RunOptions", "IntegrityError"]
