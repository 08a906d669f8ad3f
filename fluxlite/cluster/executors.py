"""Executors start task attempts and report them finished.

- ``LocalExecutor``: fork/exec on this machine with a pool of slots (one per core by
  default, ``--jobs N`` otherwise) and a memory budget; a task takes as many slots as the
  cores it asks for.
- ``FluxExecutor`` (:mod:`fluxlite.cluster.flux_executor`): every attempt a Flux job.

Tasks run concurrently, so nothing here may wait for or signal "every child of the
process" (as the single-job controller does): each attempt is its own process group,
signalled with ``killpg`` and reaped with ``wait4`` on its own pid only. What tasks leave
behind re-parents to this process (a subreaper); once exited it is reaped by pid, never a
pid that is a current task.
"""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import signal
import sys
import time
from typing import Any

from fluxlite.cluster.formats import Task
from fluxlite.cluster.records import Attempt
from fluxlite.execute.base import ExitStatus, rusage_dict
from fluxlite.execute.local import become_subreaper

logger = logging.getLogger(__name__)

# Signals Python changes for itself that a task must get back at their defaults.
_SIGDEF = tuple(s for s in (signal.SIGPIPE, getattr(signal, "SIGXFSZ", None),
                            getattr(signal, "SIGXFZ", None)) if s is not None)
_OUT_FLAGS = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
# PMC -f: forwarded data kept in memory up to this, then in a private file; appended to its
# destination in writes of at most _FWD_CHUNK bytes each
_FWD_SPILL = 4 << 20
_FWD_CHUNK = 4 << 20
# how often the local executor looks for exited processes tasks left behind
_STRAY_INTERVAL = 1.0
# how often the flux executor asks whether its (nested) instance still runs
_LOST_INTERVAL = 1.0


class Executor:
    """The interface the scheduler drives."""

    name = "base"
    cores = 1
    gpus = 0
    memory_mb = 0  # 0: not accounted
    where = "this executor"

    def fits(self, task: Task) -> bool:
        raise NotImplementedError

    def start(self, a: Attempt) -> Attempt | None:
        """Start an attempt; return it at once when it could not be started."""
        raise NotImplementedError

    def poll(self, timeout: float) -> list[Attempt]:
        """Attempts that have finished, waiting at most ``timeout`` seconds for one."""
        raise NotImplementedError

    def running(self) -> int:
        raise NotImplementedError

    def signal_all(self, signum: int, reason: str) -> None:
        raise NotImplementedError

    def wakeup_fd(self) -> int | None:
        return None

    def close(self) -> None:
        pass


def task_argv(a: Attempt, jobtask_files: tuple[str, str, str] | None) -> list[str]:
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

    def __init__(self, tmpdir: str, stdio_bytes: int) -> None:
        self.tmpdir = tmpdir
        self.stdio_bytes = stdio_bytes
        self._specs: dict[str, str] = {}

    def base(self, a: Attempt) -> str:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in a.task.id)[:80]
        return os.path.join(self.tmpdir, f"{a.task.seq}.{safe}.{a.number}")

    def jobtask(self, a: Attempt) -> tuple[str, str, str] | None:
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
            _unlink(p)
        if a.job_record is not None:
            jid = (a.job_record.get("jobids") or {}).get("flux")
            a.flux_id = a.flux_id or jid

    def read_tail(self, fd: int) -> tuple[bytes, bool, int]:
        size = os.fstat(fd).st_size
        limit = self.stdio_bytes
        if limit and size > limit:
            return os.pread(fd, limit, size - limit), True, size
        if limit == 0:
            return b"", size > 0, size
        return (os.pread(fd, size, 0) if size else b""), False, size


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


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
        _unlink(src)


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
            _unlink(self.spill_path)  # the descriptor is all that is needed
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
        if self.wfd >= 0:
            os.close(self.wfd)
            self.wfd = -1

    def close(self) -> None:
        self.close_write()
        for attr in ("fd", "spool"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)
        self.buf = bytearray()


# ------------------------------------------------------------------------------ local

class LocalExecutor(Executor):
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
        self.procs: dict[int, Attempt] = {}
        self._pidfd = hasattr(os, "pidfd_open")
        self._which: dict[str, str | None] = {}
        self._signalled: set[int] = set()
        # processes a task put out of its group (setsid, daemons) re-parent to us instead of
        # init, so that close() finds them and nothing outlives the cluster
        self._subreaper = become_subreaper()
        self._next_strays = 0.0

    def fits(self, task: Task) -> bool:
        return (task.cores <= self.free_cores and task.gpus <= self.free_gpus
                and (self.memory_mb == 0 or task.memory_mb <= self.free_mem))

    def running(self) -> int:
        return len(self.procs)

    def _resolve(self, exe: str) -> str | None:
        if "/" in exe:
            return exe
        if exe not in self._which:
            self._which[exe] = shutil.which(exe, path=self.env.get("PATH", os.defpath))
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
        fo = os.open(a.stdout_path, _OUT_FLAGS, 0o600)
        fe = os.open(a.stderr_path, _OUT_FLAGS, 0o600)
        pipes: list[PipeForward] = []
        actions: list[tuple[Any, ...]] = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, fo, 1), (os.POSIX_SPAWN_DUP2, fe, 2)]
        try:
            # PMC -f VAR=FILE: the task finds the number of a pipe's write end in $VAR (the
            # last -f for a VAR wins, as in PMC)
            for var, dest in dict(t.pipe_forward).items():
                pipes.append(PipeForward(var, dest, f"{base}.fwd.{len(pipes)}"))
        except OSError as err:
            return _abandon(a, fo, fe, pipes, f"cannot make a forwarding pipe: "
                            f"{err.strerror or err}")
        # The write ends stay close-on-exec here, so that no other task inherits one (it
        # would keep that pipe from ending); the task gets a copy at a low number (3, 4...:
        # /bin/sh's '>&N' takes one digit), never one of the write ends themselves, so that
        # no copy overwrites an end still to be copied.
        taken = {pf.wfd for pf in pipes}
        low = 3
        for pf in pipes:
            while low in taken:
                low += 1
            actions.append((os.POSIX_SPAWN_DUP2, pf.wfd, low))
            extra[pf.var] = str(low)
            low += 1
        env = {**self.env, **extra}
        try:
            pid = os.posix_spawn(exe, a.argv, env, file_actions=actions,
                                 setpgroup=0, setsigdef=_SIGDEF, setsigmask=())
        except OSError as err:
            return _abandon(a, fo, fe, pipes, f"cannot execute {exe}: {err.strerror or err}")
        except ValueError as err:  # a NUL in an argument or the environment
            return _abandon(a, fo, fe, pipes, f"cannot execute {exe}: {err}")
        for pf in pipes:
            # only the task may hold the write end: the pipe ends when the task's side does
            pf.close_write()
            self.sel.register(pf.fd, selectors.EVENT_READ, pf)
        a.pid = pid
        pidfd = -1
        if self._pidfd:
            try:
                pidfd = os.pidfd_open(pid)
                self.sel.register(pidfd, selectors.EVENT_READ, pid)
            except OSError:
                self._pidfd = False
                pidfd = -1
        a.handle = (fo, fe, pidfd, jt, pipes)
        self.procs[pid] = a
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
        pids: list[int] = []
        if self._pidfd:
            for key, _ in self.sel.select(timeout):
                if isinstance(key.data, PipeForward):
                    self._read_pipe(key.data)
                else:
                    pids.append(key.data)
        else:
            end = time.monotonic() + timeout
            while True:
                for key, _ in self.sel.select(0.002):  # forwarding pipes only
                    self._read_pipe(key.data)
                pids = [p for p in self.procs if _exited(p)]
                if pids or time.monotonic() >= end:
                    break
        done = [self._reap(pid) for pid in pids]
        now = time.monotonic()
        if self._subreaper and now >= self._next_strays:
            self._next_strays = now + _STRAY_INTERVAL
            self._reap_strays()
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

    def _reap_strays(self) -> None:
        """Reap processes that tasks left behind and that have exited: re-parented to this
        process (the subreaper), they would stay zombies until the cluster ends. A pid that
        is a current task is never touched: its status is for ``_reap`` to collect."""
        for pid in _zombie_children():
            if pid in self.procs:
                continue
            try:
                os.waitpid(pid, os.WNOHANG)
            except (ChildProcessError, InterruptedError):
                pass

    def _reap(self, pid: int) -> Attempt:
        a = self.procs.pop(pid)
        fo, fe, pidfd, jt, pipes = a.handle
        # the leader is a zombie still (not reaped): its pid cannot have been reused, so the
        # group it leads can be cleared of anything it left behind
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        _, status, ru = os.wait4(pid, 0)  # EINTR is retried by Python itself
        a.duration = time.monotonic() - a.t0
        a.status = ExitStatus.from_wait(status)
        a.rusage = rusage_dict(ru)
        if pidfd >= 0:
            self.sel.unregister(pidfd)
            os.close(pidfd)
        a.stdout, trunc, size = self.files.read_tail(fo)
        a.stdout_info = (trunc, size)
        a.stderr, trunc, size = self.files.read_tail(fe)
        a.stderr_info = (trunc, size)
        os.close(fo)
        os.close(fe)
        _unlink(a.stdout_path)
        _unlink(a.stderr_path)
        self.files.collect_job_records(a, jt)
        for pf in pipes:
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
        a.handle = None
        self._signalled.discard(pid)
        t = a.task
        self.free_cores += t.cores
        self.free_gpus += t.gpus
        self.free_gpu_ids += a.gpus
        self.free_mem += t.memory_mb
        return a

    def signal_all(self, signum: int, reason: str) -> None:
        for pid, a in self.procs.items():
            if a.stopped is None:
                if _exited(pid):
                    continue  # it ended on its own before the signal: its status stands
                a.stopped = reason
            try:
                os.killpg(pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        self.signal_all(signal.SIGKILL, "shutdown")
        for pid in list(self.procs):
            self._reap(pid)
        self.sel.close()
        if self._subreaper:
            _kill_orphans()


def _abandon(a: Attempt, fo: int, fe: int, pipes: list[PipeForward], error: str) -> Attempt:
    """An attempt that could not be started: its files and pipes go, its status says why."""
    for pf in pipes:
        pf.close()
    os.close(fo)
    os.close(fe)
    _unlink(a.stdout_path)
    _unlink(a.stderr_path)
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


def _kill_orphans() -> None:
    """Kill and reap what tasks left behind outside their process groups: every child of
    this process is one of them once the tasks are reaped. Killing one re-parents its own
    children here, hence the rounds."""
    import psutil

    me = psutil.Process()
    for _ in range(16):
        try:
            kids = me.children()
        except psutil.Error:
            return
        if not kids:
            return
        logger.info("killing %d process(es) tasks left behind", len(kids))
        for k in kids:
            try:
                os.kill(k.pid, signal.SIGKILL)
            except OSError:
                pass
        for k in kids:
            try:
                os.waitpid(k.pid, 0)
            except (ChildProcessError, InterruptedError):
                pass


def _zombie_children() -> list[int]:
    """Pids of this process's children that have exited and wait to be reaped."""
    me = os.getpid()
    kids: list[int] = []
    try:
        # every thread's children (CONFIG_PROC_CHILDREN): cheap, no scan of all processes
        for tid in os.listdir(f"/proc/{me}/task"):
            with open(f"/proc/{me}/task/{tid}/children", "rb") as fh:
                kids += [int(x) for x in fh.read().split()]
        scan = False
    except OSError:
        scan = True
        kids = [int(d) for d in os.listdir("/proc") if d.isdigit()]
    out = []
    for pid in kids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == b"Z" and (not scan or int(fields[1]) == me):
            out.append(pid)
    return out


def _exited(pid: int) -> bool:
    # WNOWAIT: look without reaping, so that _reap still finds the zombie's group
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


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
