"""Executors start task attempts and report them finished.

- ``LocalExecutor``: the local launcher (:class:`fluxlite.execute.local.LocalLauncher`,
  cleanup policy "group") with a pool of slots (one per core by default, ``--jobs N``
  otherwise) and a memory budget; a task takes as many slots as the cores it asks for.
- ``FluxJobsExecutor`` (:mod:`fluxlite.cluster.flux_jobs`): every attempt a Flux job.

Tasks run concurrently, so nothing here may wait for or signal "every child of the
process" (as the single-job controller does): each attempt is its own process group,
signalled with ``killpg`` and reaped with ``wait4`` on its own pid only. What tasks leave
behind re-parents to this process (a subreaper); once exited it is reaped by pid, never a
pid that is a current task.
"""

from __future__ import annotations

import fcntl
import os
import selectors
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from fluxlite.fsutil import NO_UNNAMED, O_TMPFILE, read_tail, unlink_quietly
from fluxlite.cluster.formats import Task
from fluxlite.cluster.attempt import Attempt
from fluxlite.errors import FluxliteError
from fluxlite.execute import supervisor
from fluxlite.execute.base import ExitStatus
from fluxlite.execute.local import (
    GROUP,
    LocalLauncher,
    become_subreaper,
    has_children,
    kill_descendants,
    reap_all,
    reap_exited,
    which,
)
from fluxlite.lazylog import get_logger

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

logger = get_logger(__name__)

_OUT_FLAGS = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
_UNNAMED = O_TMPFILE | os.O_RDWR | os.O_CLOEXEC
# what a task's id may hold to be a file name as it is (else other characters become _)
_SAFE_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
# PMC -f: forwarded data kept in memory up to this, then in a private file; appended to its
# destination in writes of at most _FWD_CHUNK bytes each
_FWD_SPILL = 4 << 20
_FWD_CHUNK = 4 << 20
# how often the local executor looks for exited processes tasks left behind
_STRAY_INTERVAL = 1.0
# how often the flux executor asks whether its (nested) instance still runs
_LOST_INTERVAL = 1.0


class Executor(ABC):
    """Runs the attempts of a cluster's tasks, many at once, for the scheduler
    (:class:`fluxlite.cluster.scheduler.Scheduler`), which calls it from its one thread:
    :meth:`fits` and then :meth:`start` for each attempt it starts, :meth:`poll` in its loop
    until every attempt it started has come back, :meth:`signal_all` at the cluster's stop
    (TERM, then KILL after the grace: the escalation is the scheduler's), :meth:`close`
    once at the end, after an error too.

    An implementation keeps its own record of what each running attempt holds (its
    launcher, its Flux job, the key a pool worker knows it by); an :class:`Attempt` carries
    only what the records say of it. Before it hands an attempt back it fills in how the
    attempt ended: ``status``, ``start``, ``duration``, and what it knows of ``rusage``,
    the stdio tails, ``host``, ``flux_id``, a job task's own records.

    What it has, for the input check and the records: ``name`` (the records' executor),
    ``cores``, ``gpus`` and ``memory_mb`` (0: not accounted) that one task can have at the
    most, ``where`` (those resources, as an error names them), ``uri`` (the Flux instance
    its tasks run in, None for none).
    """

    name = "base"
    cores = 1
    gpus = 0
    memory_mb = 0
    where = "this executor"
    uri: str | None = None

    @abstractmethod
    def fits(self, task: Task) -> bool:
        """Whether ``task`` can start now (free slots, GPUs, memory, room in flight); asked
        before each :meth:`start`, answered from what the executor accounts for, never by
        waiting."""

    @abstractmethod
    def start(self, a: Attempt) -> Attempt | None:
        """Start attempt ``a`` of a task that :meth:`fits`, setting ``a.start`` and
        ``a.t0``: None once it is under way (it comes back from :meth:`poll`), or ``a``
        itself at once, its status saying why (``ExitStatus.failed_to_start``), when it
        cannot be started. A task's own failure is never raised; a
        :class:`~fluxlite.errors.FluxliteError` says the executor itself failed, and ends
        the cluster."""

    @abstractmethod
    def poll(self, timeout: float) -> list[Attempt]:
        """The attempts that have ended since the last call, each once, complete (see the
        class) and no longer held: waits at most ``timeout`` seconds for one (0: not at
        all). Raises :class:`~fluxlite.errors.FluxliteError` (``NestedInstanceLost``) when
        the place its tasks run is gone."""

    @abstractmethod
    def running(self) -> int:
        """How many attempts were started and have not come back from :meth:`poll`."""

    @abstractmethod
    def signal_all(self, signum: int, reason: str) -> None:
        """Send ``signum`` to every running attempt now, without waiting, and mark each
        ``stopped`` for ``reason`` (but one that had ended on its own: its status stands);
        each still comes back from :meth:`poll`."""

    @abstractmethod
    def close(self) -> None:
        """Kill what still runs and collect it, then release all the executor holds
        (descriptors, Flux handles, a pool's job); called once, at the end of the cluster,
        also when it ends by an error or before any task started."""

    def finish(self) -> None:
        """The cluster is over (nothing runs, nothing more will start): begin to release
        what takes time to end, without waiting, so that it ends while the cluster writes
        its records; :meth:`close` still follows and waits. Nothing to do by default."""
        return None

    def hold(self, reason: str) -> None:
        """Start nothing more of what ``start`` took: an attempt that waits in the executor
        (a pool worker's queue) comes back from ``poll`` stopped for ``reason``, never
        started. An executor that starts every attempt in ``start`` has nothing waiting:
        nothing to do."""
        return None

    def wakeup_fd(self) -> int | None:
        """A descriptor readable when an attempt may have ended, for a caller that waits on
        more than this executor (a pool worker, the tiered executor); None where there is
        none (the caller then polls with a timeout)."""
        return None

    def info(self) -> dict[str, Any] | None:
        """What the cluster's JSON record tells of the executor itself (a pool's workers);
        None where there is nothing beyond its name and ``uri``."""
        return None


def task_argv(a: Attempt, jobtask_files: tuple[str, str, str] | None) -> list[str]:
    """The argv an attempt runs: its own, a pegasus-cluster line under /bin/sh, or a whole
    fluxlite job run by ``fluxlite.cluster.jobtask`` on ``jobtask_files``."""
    t = a.task
    if t.job is not None:
        assert jobtask_files is not None
        # a whole fluxlite job (staging, checksums, its own record): run by fluxlite itself in
        # a process of its own, so that its task, signals and leftovers stay its own
        return [sys.executable, "-m", "fluxlite.cluster.jobtask", *jobtask_files]
    if t.argv is not None:
        return list(t.argv)
    # a pegasus-cluster line is a shell command line by design; pegasus-cluster runs it with
    # /bin/sh -c, so do we (the user wrote it, nobody else's string reaches the shell)
    return ["/bin/sh", "-c", t.command or ""]


def task_env(a: Attempt, base: str, executor: str,
             forward_files: bool = True) -> tuple[dict[str, str], dict[str, str]]:
    """The variables a task gets on top of the cluster's environment, and the files its PMC
    ``-f VAR=FILE`` variables name (forwarded to FILE when the attempt ends). Without
    ``forward_files`` the executor gives those variables descriptors of its own."""
    t = a.task
    env = {"PMC_TASK": t.id, "PMC_CPUS": str(t.cores), "PMC_MEMORY": str(t.memory_mb),
           "FLUXLITE_CLUSTER_TASK": t.id, "FLUXLITE_CLUSTER_TRY": str(a.number),
           "FLUXLITE_CLUSTER_EXECUTOR": executor}
    fwd: dict[str, str] = {}
    if forward_files:
        fwd = {var: f"{base}.fwd.{var}" for var, _dest in t.pipe_forward}
        env.update(fwd)
    return env, fwd


class TaskFiles:
    """Where an attempt's stdout/stderr and a job task's records go, in the cluster's
    private directory."""

    #: pairs of unused capture files kept for the attempts to come (:meth:`recycle`)
    SPARES = 8

    def __init__(self, tmpdir: str, stdio_bytes: int) -> None:
        self.tmpdir = tmpdir
        self.stdio_bytes = stdio_bytes
        self._specs: dict[str, str] = {}
        self.unnamed = bool(O_TMPFILE)  # until the filesystem says otherwise
        self._spare: list[tuple[int, int]] = []
        self._flags = -1  # the status flags of a new capture file, as fcntl tells them

    def open_stdio(self, a: Attempt) -> tuple[int, int]:
        """The attempt's stdout and stderr files, open to write and read back: unnamed
        files in the directory (O_TMPFILE: nothing to name and remove, which costs a file
        system with a journal more than the file itself) where it can make them, a pair
        :meth:`recycle` kept first, else at ``stdout_path`` and ``stderr_path`` (removed
        when the attempt is reaped)."""
        if self._spare:
            return self._spare.pop()
        if self.unnamed:
            try:
                fo = os.open(self.tmpdir, _UNNAMED, 0o600)
            except OSError as err:
                if err.errno not in NO_UNNAMED:
                    raise
                self.unnamed = False
            else:
                try:
                    fe = os.open(self.tmpdir, _UNNAMED, 0o600)
                    if self._flags < 0:
                        self._flags = fcntl.fcntl(fo, fcntl.F_GETFL)
                    return fo, fe
                except BaseException:
                    os.close(fo)
                    raise
        fo = os.open(a.stdout_path, _OUT_FLAGS, 0o600)
        try:
            return fo, os.open(a.stderr_path, _OUT_FLAGS, 0o600)
        except BaseException:
            os.close(fo)
            unlink_quietly(a.stdout_path)
            raise

    def recycle(self, fo: int, fe: int, stats: tuple[os.stat_result, os.stat_result],
                alone: Callable[[], bool]) -> bool:
        """Keep an ended attempt's stdout and stderr files for the next attempt, when they
        are as new: unnamed, empty (``stats``, their fstat), never linked to a name, at
        offset 0, their status flags untouched, and ``alone()`` says no process the
        attempt started is left to hold them (the executor's test: every child it has is
        a task still running). An unnamed file costs a file system with a journal two
        journaled updates to make and two to free, more than the rest of a short task's
        launch; these checks cost a few plain system calls. False (the caller closes them)
        when not, or when enough are kept."""
        if not self.unnamed or len(self._spare) >= self.SPARES:
            return False
        for fd, st in zip((fo, fe), stats, strict=True):
            if (st.st_size or st.st_nlink or os.lseek(fd, 0, os.SEEK_CUR)
                    or fcntl.fcntl(fd, fcntl.F_GETFL) != self._flags):
                return False
        if not alone():
            return False
        self._spare.append((fo, fe))
        return True

    def close(self) -> None:
        """Close the capture files kept for attempts that will not come."""
        spare, self._spare = self._spare, []
        for pair in spare:
            for fd in pair:
                os.close(fd)

    def drop_stdio(self, a: Attempt) -> None:
        """Remove the attempt's named stdout and stderr files (unnamed ones went with
        their last descriptor)."""
        if not self.unnamed:
            unlink_quietly(a.stdout_path)
            unlink_quietly(a.stderr_path)

    def base(self, a: Attempt) -> str:
        """The path prefix of an attempt's files (``.out``, ``.err``, forwarding)."""
        safe = a.task.id[:80]
        if not _SAFE_NAME.issuperset(safe):  # not a safe file name as it is
            safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in safe)
        return os.path.join(self.tmpdir, f"{a.task.seq}.{safe}.{a.number}")

    def jobtask(self, a: Attempt) -> tuple[str, str, str] | None:
        """For a task that is a whole fluxlite job: its job.json and where its kickstart
        and JSON records go; None for a command."""
        t = a.task
        if t.job is None:
            return None
        spec = self._specs.get(t.id)
        if spec is None:
            import orjson

            spec = self.base(a) + ".job.json"
            with open(spec, "wb") as fh:
                fh.write(orjson.dumps(t.job_doc))
            self._specs[t.id] = spec
        b = self.base(a)
        return spec, b + ".ks.yml", b + ".rec.json"

    def collect_job_records(self, a: Attempt, files: tuple[str, str, str] | None) -> None:
        """A job task's kickstart and JSON records into the attempt (then removed)."""
        if files is None:
            return
        import orjson

        _, ks, js = files
        try:
            with open(ks, encoding="utf-8") as fh:
                a.record_text = fh.read() or None
        except OSError:
            a.record_text = None  # the job died before writing: a record is made from status
        try:
            with open(js, "rb") as fh:
                a.job_record = orjson.loads(fh.read())
        except (OSError, orjson.JSONDecodeError):
            a.job_record = None
        for p in (ks, js):
            unlink_quietly(p)
        if a.job_record is not None:
            jid = (a.job_record.get("jobids") or {}).get("flux")
            a.flux_id = a.flux_id or jid

    def read_tail(self, fd: int, st: os.stat_result | None = None) -> tuple[bytes, bool, int]:
        """The last ``stdio_bytes`` of the file open at ``fd`` (``st`` its fstat, when
        known), whether that is less than all of it, and its size."""
        return read_tail(fd, self.stdio_bytes, st)


def forward_files(a: Attempt, env_paths: dict[str, str]) -> None:
    """PMC -F SRC=DEST (and, for Flux jobs, -f VAR=FILE done through files): append what an
    attempt that succeeded left in SRC to DEST, whole, in order of completion. As PMC, a
    failed attempt's data is dropped (it may be partial) and SRC is removed either way. A
    forwarding that fails (SRC a directory, DEST full, read-only, a directory) fails the
    attempt, and DEST is left as it was."""
    t = a.task
    pairs = [(env_paths[var], dest) for var, dest in t.pipe_forward if var in env_paths]
    pairs += list(t.file_forward)
    for src, dest in pairs:
        if a.ok:
            try:
                with open(src, "rb") as fin:
                    data = fin.read()
            except FileNotFoundError:
                data = b""  # the task had nothing to forward (PMC skips a missing SRC too)
            except OSError as err:
                a.failure = f"cannot forward {src}: {err.strerror}"
                continue  # left in place: the data is not lost
            try:
                append_whole(dest, [data])
            except OSError as err:
                a.failure = f"cannot forward {src} to {dest}: {err.strerror}"
                continue
        unlink_quietly(src)


def append_whole(dest: str, chunks: Any) -> None:
    """Append the ``chunks`` (bytes-like) to ``dest`` with O_APPEND, one write per chunk of
    at most ``_FWD_CHUNK`` bytes, so that what several tasks forward to the same file lands
    block by block, never interleaved mid-block. When a write fails (a full disk) the file
    is cut back to where this block began: it never keeps part of one."""
    fd = -1
    start = 0
    try:
        for data in chunks:
            if not data:
                continue
            if fd < 0:
                # O_NONBLOCK: a FIFO without a reader is an error, not a hang
                fd = os.open(dest, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                             | os.O_NONBLOCK, 0o666)
                os.set_blocking(fd, True)
                start = os.fstat(fd).st_size
            view = memoryview(data)
            while view:
                n = os.write(fd, view[:_FWD_CHUNK])  # a regular file takes it, or ENOSPC
                view = view[n:]
    except OSError:
        if fd >= 0:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass  # not a regular file: nothing to cut back
        raise
    finally:
        if fd >= 0:
            os.close(fd)


class PipeForward:
    """PMC ``-f VAR=FILE`` for a local task: a pipe whose write end the task gets (its
    number in ``$VAR``) and whose read end the executor drains while the task runs, keeping
    the data (spilled to a private file past ``_FWD_SPILL`` bytes) until the task ends."""

    __slots__ = ("buf", "dest", "fd", "spill_path", "spool", "var", "wfd")

    def __init__(self, var: str, dest: str, spill_path: str) -> None:
        self.var, self.dest, self.spill_path = var, dest, spill_path
        self.fd, self.wfd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.fd, False)
        self.buf = bytearray()
        self.spool = -1

    def read(self) -> int:
        """Bytes read; 0 at the end (every writer closed it); -1 when nothing is there now."""
        try:
            chunk = os.read(self.fd, 1 << 16)
        except BlockingIOError:
            return -1
        self.buf += chunk
        if len(self.buf) >= _FWD_SPILL:
            self._spill()
        return len(chunk)

    def drain(self) -> None:
        """Everything in the pipe now. A process the task left behind may still hold the
        write end: what it has not written yet is not waited for."""
        while self.fd >= 0 and self.read() > 0:
            pass

    def _spill(self) -> None:
        if self.spool < 0:
            self.spool = os.open(self.spill_path, os.O_RDWR | os.O_CREAT | os.O_EXCL
                                 | os.O_CLOEXEC, 0o600)
            unlink_quietly(self.spill_path)  # the descriptor is all that is needed
        os.write(self.spool, self.buf)
        self.buf.clear()

    def deliver(self) -> None:
        """Append everything the task wrote to FILE, as one block."""
        append_whole(self.dest, self._chunks())

    def _chunks(self) -> Any:
        if self.spool >= 0:
            os.lseek(self.spool, 0, os.SEEK_SET)
            while chunk := os.read(self.spool, _FWD_CHUNK):
                yield chunk
        yield self.buf

    def close_write(self) -> None:
        """Close this process's write end (the task holds its own copy)."""
        if self.wfd >= 0:
            os.close(self.wfd)
            self.wfd = -1

    def close(self) -> None:
        """Close every descriptor of the pipe and drop what it held."""
        self.close_write()
        for attr in ("fd", "spool"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)
        self.buf = bytearray()


# ------------------------------------------------------------------------------ local

@dataclass(slots=True, eq=False)
class LocalRun:
    """What the local executor holds for an attempt it runs, until it is reaped."""

    attempt: Attempt
    launcher: LocalLauncher
    stdout_fd: int  # the attempt's stdout and stderr files, open from its start
    stderr_fd: int
    jobtask: tuple[str, str, str] | None  # a job task's files (TaskFiles.jobtask)
    pipes: list[PipeForward] = field(default_factory=list)  # PMC -f VAR=FILE


class LocalExecutor(Executor):
    """Tasks on this machine, each started by the local launcher under the group cleanup
    policy (:data:`fluxlite.execute.local.GROUP`), as many at once as the slots, GPUs and
    memory budget allow; PMC's forwarding (``-f``/``-F``) and the stdio tails are done here."""

    name = "local"

    def __init__(self, files: TaskFiles, jobs: int | None = None, memory_mb: int | None = None,
                 gpus: int = 0, env: dict[str, str] | None = None) -> None:
        self.files = files
        self.cores, self.gpus, self.memory_mb = local_capacity(jobs, memory_mb, gpus)
        self.where = "the local executor"
        self.free_cores = self.cores
        self.free_gpus = gpus
        self.free_mem = self.memory_mb
        self.env = dict(os.environ if env is None else env)
        # which GPUs a task gets, as Flux's job shell tells it (CUDA_VISIBLE_DEVICES and
        # ROCR_VISIBLE_DEVICES): the ones this process was given, else 0..N-1
        self.gpu_ids = gpu_ids(gpus, self.env)
        self.free_gpu_ids = list(self.gpu_ids)
        self.sel = selectors.DefaultSelector()
        self.procs: dict[int, LocalRun] = {}  # by the pid of the task
        self.cwd = os.getcwd()
        self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self._which: dict[str, str | None] = {}
        self._unwatched = 0  # tasks without a pidfd: asked in rounds
        # processes a task put out of its group (setsid, daemons) re-parent to us instead of
        # init, so that close() finds them and nothing outlives the cluster
        self._subreaper = become_subreaper()
        self._next_strays = 0.0

    def fits(self, task: Task) -> bool:
        return (task.cores <= self.free_cores and task.gpus <= self.free_gpus
                and (self.memory_mb == 0 or task.memory_mb <= self.free_mem))

    def running(self) -> int:
        return len(self.procs)

    def wakeup_fd(self) -> int | None:
        """The selector's descriptor: readable when a task ended or forwarded data (None
        without pidfds, when ended tasks are found by asking)."""
        return None if self._unwatched else self.sel.fileno()

    def _resolve(self, exe: str) -> str | None:
        if exe not in self._which:
            self._which[exe] = which(exe, self.env)
        return self._which[exe]

    def start(self, a: Attempt) -> Attempt | None:
        t = a.task
        jt = self.files.jobtask(a)
        argv = task_argv(a, jt)
        a.argv = argv
        exe = self._resolve(argv[0])
        a.start = time.time()
        a.t0 = time.monotonic()
        if exe is None:
            a.status = ExitStatus.failed_to_start(f"executable '{argv[0]}' not found on PATH")
            return a
        a.argv = [exe, *argv[1:]] if t.job is None else argv
        base = self.files.base(a)
        a.stdout_path, a.stderr_path = base + ".out", base + ".err"
        extra, _ = task_env(a, base, "local", forward_files=False)
        if self.gpu_ids:
            a.gpus = self.free_gpu_ids[: t.gpus]
            visible = ",".join(a.gpus) if a.gpus else "-1"  # none asked for: none visible
            extra.update(CUDA_VISIBLE_DEVICES=visible, ROCR_VISIBLE_DEVICES=visible,
                         CUDA_DEVICE_ORDER="PCI_BUS_ID")
        fo, fe = self.files.open_stdio(a)
        pipes: list[PipeForward] = []
        try:
            # PMC -f VAR=FILE: the task finds the number of a pipe's write end in $VAR (the
            # last -f for a VAR wins, as in PMC)
            for var, dest in dict(t.pipe_forward).items():
                pipes.append(PipeForward(var, dest, f"{base}.fwd.{len(pipes)}"))
        except OSError as err:
            return _abandon(a, self.files, fo, fe, pipes, f"cannot make a forwarding pipe: "
                            f"{err.strerror or err}")
        # The write ends stay close-on-exec here, so that no other task inherits one (it
        # would keep that pipe from ending); the task gets a copy at a low number (3, 4...:
        # /bin/sh's '>&N' takes one digit), never one of the write ends themselves, so that
        # no copy overwrites an end still to be copied.
        taken = {pf.wfd for pf in pipes}
        low = 3
        passed = []
        for pf in pipes:
            while low in taken:
                low += 1
            passed.append((pf.wfd, low))
            extra[pf.var] = str(low)
            low += 1
        la = LocalLauncher(a.argv, self.cwd, {**self.env, **extra}, cleanup=GROUP,
                           executable=exe, pass_fds=tuple(passed), stdin=self._devnull,
                           stdout=fo, stderr=fe)
        try:
            la.start()
        except FluxliteError as err:
            return _abandon(a, self.files, fo, fe, pipes, str(err))
        for pf in pipes:
            # only the task may hold the write end: the pipe ends when the task's side does
            pf.close_write()
            self.sel.register(pf.fd, selectors.EVENT_READ, pf)
        a.pid = la.result.pid
        run = LocalRun(a, la, fo, fe, jt, pipes)
        if la.fileno() >= 0:
            self.sel.register(la.fileno(), selectors.EVENT_READ, run)
        else:
            self._unwatched += 1
        self.procs[a.pid] = run
        self.free_cores -= t.cores
        self.free_gpus -= t.gpus
        del self.free_gpu_ids[: len(a.gpus)]
        self.free_mem -= t.memory_mb
        return None

    def poll(self, timeout: float) -> list[Attempt]:
        if not self.procs:
            if timeout > 0:
                time.sleep(min(timeout, 0.05))
            return []
        ended: list[LocalRun] = []
        end = time.monotonic() + timeout
        while True:
            # the launchers' descriptors (pidfds) and the forwarding pipes; without pidfds,
            # the launchers are asked in short rounds
            unwatched = self._unwatched > 0
            for key, _ in self.sel.select(min(timeout, 0.002) if unwatched else timeout):
                if isinstance(key.data, PipeForward):
                    self._read_pipe(key.data)
                else:
                    ended.append(key.data)
            if unwatched:
                ended += [r for r in self.procs.values()
                          if r.launcher.fileno() < 0 and r.launcher.ended()]
            if ended or not unwatched or time.monotonic() >= end:
                break
        done = [self._reap(r) for r in ended]
        now = time.monotonic()
        if self._subreaper and now >= self._next_strays:
            self._next_strays = now + _STRAY_INTERVAL
            reap_exited(spare=self.procs)
        return done

    def _read_pipe(self, pf: PipeForward) -> None:
        try:
            n = pf.read()
        except OSError as err:
            logger.warning("cannot read the data forwarded to %s: %s", pf.dest, err)
            n = 0
        if n == 0:  # every writer is gone: nothing more can come
            self.sel.unregister(pf.fd)
            os.close(pf.fd)
            pf.fd = -1

    def _reap(self, run: LocalRun) -> Attempt:
        a, la, fo, fe = run.attempt, run.launcher, run.stdout_fd, run.stderr_fd
        del self.procs[a.pid]
        if la.fileno() >= 0:
            self.sel.unregister(la.fileno())
        else:
            self._unwatched -= 1
        res = la.poll() or la.wait()  # it has ended: its group killed, it reaped at once
        a.duration, a.status, a.rusage = res.duration, res.status, res.rusage
        stats = os.fstat(fo), os.fstat(fe)
        a.stdout, trunc, size = self.files.read_tail(fo, stats[0])
        a.stdout_info = (trunc, size)
        a.stderr, trunc, size = self.files.read_tail(fe, stats[1])
        a.stderr_info = (trunc, size)
        if not (self._subreaper and self.files.recycle(fo, fe, stats, self._alone)):
            os.close(fo)
            os.close(fe)
            self.files.drop_stdio(a)
        self.files.collect_job_records(a, run.jobtask)
        for pf in run.pipes:
            # the task is gone and its group killed: take what is in the pipe and close the
            # read end (a leftover outside the group that still writes gets SIGPIPE)
            try:
                if pf.fd >= 0:
                    self.sel.unregister(pf.fd)
                    pf.drain()
                if a.ok:  # as PMC: a failed attempt's data is dropped
                    pf.deliver()
            except OSError as err:
                # the attempt fails: its data did not reach FILE (which keeps no part of it)
                a.failure = f"cannot forward ${pf.var} to {pf.dest}: {err.strerror or err}"
            pf.close()
        if a.task.file_forward:
            forward_files(a, {})
        t = a.task
        self.free_cores += t.cores
        self.free_gpus += t.gpus
        self.free_gpu_ids += a.gpus
        self.free_mem += t.memory_mb
        return a

    def _alone(self) -> bool:
        """Whether every child of this process is a task still running: this process is
        a subreaper, so what an ended task started and left behind, alive or dying, has
        been re-parented here (to the thread that started the task) and would show. False
        when the kernel does not tell."""
        try:
            kids = supervisor.thread_children(os.getpid(), threading.get_native_id())
        except OSError:
            return False
        procs = self.procs
        return all(k in procs for k in kids)

    def signal_all(self, signum: int, reason: str) -> None:
        for run in self.procs.values():
            a, la = run.attempt, run.launcher
            if a.stopped is None:
                if la.ended():
                    continue  # it ended on its own before the signal: its status stands
                a.stopped = reason
            la.send(signum, reason)

    def close(self) -> None:
        self.signal_all(signal.SIGKILL, "shutdown")
        for run in list(self.procs.values()):
            self._reap(run)
        self.sel.close()
        self.files.close()
        os.close(self._devnull)
        if self._subreaper and has_children():
            # what tasks left outside their groups: every child of this process is one now
            killed = kill_descendants("left behind by a task")
            logger.info("killed %d process(es) tasks left behind", len(killed))
            reap_all()


def _abandon(a: Attempt, files: TaskFiles, fo: int, fe: int, pipes: list[PipeForward],
             error: str) -> Attempt:
    """An attempt that could not be started: its files and pipes go, its status says why."""
    for pf in pipes:
        pf.close()
    os.close(fo)
    os.close(fe)
    files.drop_stdio(a)
    a.status = ExitStatus.failed_to_start(error)
    return a


def gpu_ids(count: int, env: dict[str, str]) -> list[str]:
    """The ids of the GPUs a local executor of ``count`` GPUs hands out: the first of those
    CUDA_VISIBLE_DEVICES (or ROCR_VISIBLE_DEVICES) gives this process, else 0..count-1."""
    if count <= 0:
        return []
    for var in ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
        given = [g.strip() for g in env.get(var, "").split(",") if g.strip()]
        if len(given) >= count and "-1" not in given:
            return given[:count]
    return [str(i) for i in range(count)]


def local_capacity(jobs: int | None, memory_mb: int | None,
                   gpus: int) -> tuple[int, int, int]:
    """Cores (slots), GPUs and memory (MB, 0: not accounted) of a local executor."""
    return (jobs or _usable_cores(), gpus,
            memory_mb if memory_mb is not None else _total_memory_mb())


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _total_memory_mb() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20))
    except (ValueError, OSError):
        return 0
