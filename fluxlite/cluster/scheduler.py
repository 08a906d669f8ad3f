"""The cluster's scheduler: which task runs next, and how a cluster ends.

- Ready set: a task is ready when all its parents succeeded; ready tasks start in order of
  priority (higher first), then of the input; a task that does not fit the free resources
  lets smaller ones behind it start (backfill).
- Retries: a failed attempt is run again until the task's tries are used up; a task that
  finally failed leaves its descendants unrun, other branches go on (as PMC does).
- ``--fail-fast``: after the first final failure nothing new starts; running tasks finish.
- Rescue file: a ``DONE id`` line per succeeded task, appended as tasks succeed; a rerun with
  the same rescue file skips those tasks (PMC's format).
- Time limit: before the allocation ends (``--max-wall-time`` or Flux's time left, minus a
  margin) nothing new starts, running tasks get SIGTERM and, after a grace, SIGKILL; the
  rescue file and the summary are written so that a rerun continues.
"""

from __future__ import annotations

import heapq
import io
import logging
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

from fluxlite.cluster.executors import Executor
from fluxlite.cluster.formats import TaskGraph
from fluxlite.cluster.records import Attempt, RecordWriter, attempt_dict, summary_line
from fluxlite.errors import FluxliteError, UsageError
from fluxlite.record.host import iso

logger = logging.getLogger(__name__)

# Exit codes of `fluxlite cluster` (docs/cluster.md)
EXIT_OK = 0
EXIT_TASK_FAILED = 5  # as pegasus-cluster: at least one task failed (or never ran because
#                       a parent failed)
EXIT_TIME_LIMIT = 14  # as kickstart's -k timeout: stopped by the time limit; rerun continues

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


@dataclass(slots=True)
class Options:
    fail_fast: bool = False
    rescue: str | None = None
    max_wall_time: float | None = None  # seconds from the start of the cluster
    time_margin: float | None = None  # seconds before the limit at which tasks get TERM
    kill_grace: float = 5.0
    progress_interval: float = 10.0
    default_tries: int = 1
    flux_context: Any = None  # FluxContext: time left and the memo on the enclosing job


@dataclass(slots=True)
class TaskState:
    state: str = "waiting"  # waiting, ready, running, done, rescued, failed, not-run
    waiting_on: int = 0
    tries: int = 0
    attempts: list[dict[str, Any]] = field(default_factory=list)


class Scheduler:
    def __init__(self, graph: TaskGraph, executor: Executor, writer: RecordWriter,
                 out: IO[bytes], options: Options) -> None:
        self.g = graph
        self.ex = executor
        self.w = writer
        self.out = out
        self.opt = options
        self.states = {tid: TaskState() for tid in graph.tasks}
        self.ready: list[tuple[int, int, str]] = []
        self.counts = {"done": 0, "failed": 0, "running": 0, "retries": 0, "rescued": 0}
        self.stopping: str | None = None
        self.signum: int | None = None
        self.start = time.time()
        self._t0 = time.monotonic()
        self._term_at: float | None = None
        self._kill_at: float | None = None
        self._rescue_fh: IO[str] | None = None
        self._rescue_keep: int | None = None  # bytes of the rescue file that end in "\n"
        self._old_handlers: dict[int, Any] = {}
        self._last_progress = 0.0
        self._last_flush = 0.0
        self._progress_key: tuple[int, ...] = ()
        self.limit_source = ""
        from fluxlite.progress import Progress  # one line updated in place on a terminal

        self._live = Progress.for_terminal("fluxlite cluster")
        # read now: an unreadable rescue file is an error before anything runs
        self._rescued = self._read_rescue()

    # -- setup ---------------------------------------------------------------------------
    def _read_rescue(self) -> set[str]:
        path = self.opt.rescue
        if not path:
            return set()
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return set()
        except OSError as err:
            raise UsageError(f"cannot read the rescue file {path}: {err.strerror}") from err
        # a line without its newline was cut short by a crash ('DONE ab' of 'DONE abc'):
        # it proves nothing, and _open_rescue cuts it off before appending
        self._rescue_keep = data.rfind(b"\n") + 1
        done: set[str] = set()
        unknown = 0
        for line in data[: self._rescue_keep].decode("utf-8", "replace").splitlines():
            words = line.split()
            if len(words) == 2 and words[0] == "DONE":
                if words[1] in self.g.tasks:
                    done.add(words[1])
                else:
                    unknown += 1
        if unknown:
            logger.warning("rescue file %s: %d DONE line(s) name tasks not in %s", path,
                           unknown, self.g.path)
        if self._rescue_keep < len(data):
            logger.warning("rescue file %s: ignoring its unfinished last line", path)
        logger.info("rescue file %s: %d of %d tasks already done", path, len(done),
                    len(self.g))
        return done

    def _open_rescue(self) -> None:
        if not self.opt.rescue:
            return
        new = not os.path.exists(self.opt.rescue)
        try:
            self._rescue_fh = open(self.opt.rescue, "a", encoding="utf-8")  # noqa: SIM115
            if self._rescue_keep is not None and self._rescue_fh.tell() > self._rescue_keep:
                self._rescue_fh.truncate(self._rescue_keep)
        except OSError as err:
            raise UsageError(f"cannot write the rescue file {self.opt.rescue}: "
                             f"{err.strerror}") from err
        if new:
            self._rescue_fh.write(f"# fluxlite cluster rescue file for {self.g.path}\n")

    def _deadline(self) -> None:
        limit = self.opt.max_wall_time
        source = "--max-wall-time"
        ctx = self.opt.flux_context
        if ctx is not None:
            left = ctx.timeleft()
            if left is not None and math.isfinite(left) and (limit is None or left < limit):
                limit, source = left, "flux time left"
        if limit is None:
            return
        margin = self.opt.time_margin
        if margin is None:
            # 10 % of the limit, at most 60 s, but long enough for the KILL that follows
            # the TERM after kill_grace to land before the limit, with a moment left for
            # the records and the shutdown of an enclosing instance
            margin = max(min(60.0, 0.1 * limit), self.opt.kill_grace + 2.0)
        term = max(0.0, limit - margin)
        self._term_at = self._t0 + term
        self.limit_source = source
        logger.info("time limit: %.1f s (%s); running tasks get SIGTERM after %.1f s",
                    limit, source, term)

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in _STOP_SIGNALS:
            try:
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
            except (OSError, ValueError):
                pass

    def _restore_signals(self) -> None:
        for sig, old in self._old_handlers.items():
            try:
                signal.signal(sig, old)
            except (OSError, ValueError):
                pass

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.signum is not None and signum in (signal.SIGTERM, signal.SIGINT):
            self._kill_at = time.monotonic()  # a second signal: no more grace
        self.signum = self.signum or signum

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        rescued = self._rescued
        for tid, st in self.states.items():
            if tid in rescued:
                st.state = "rescued"
        self.counts["rescued"] = len(rescued)
        for tid, t in self.g.tasks.items():
            st = self.states[tid]
            if st.state == "rescued":
                continue
            st.waiting_on = sum(1 for p in t.parents if self.states[p].state != "rescued")
            if st.waiting_on == 0:
                self._make_ready(tid)
        self._open_rescue()
        self._deadline()
        self._install_signals()
        try:
            self._loop()
        finally:
            self._restore_signals()
            if self._live is not None:
                self._live.erase()  # what follows (an error too) starts on a clean line
            if self._rescue_fh is not None:
                self._rescue_fh.flush()
                os.fsync(self._rescue_fh.fileno())
                self._rescue_fh.close()
        for st in self.states.values():
            if st.state in ("waiting", "ready"):
                st.state = "not-run"
        summary = self._summary()
        self.out.write(summary_line(summary).encode("utf-8"))
        self.out.flush()
        self._progress(force=True)
        return summary

    def _make_ready(self, tid: str) -> None:
        t = self.g.tasks[tid]
        self.states[tid].state = "ready"
        heapq.heappush(self.ready, (-t.priority, t.seq, tid))

    def _launch(self) -> None:
        if self.stopping or not self.ready:
            return
        skipped: list[tuple[int, int, str]] = []
        while self.ready and len(skipped) < 32:
            item = heapq.heappop(self.ready)
            t = self.g.tasks[item[2]]
            if not self.ex.fits(t):
                skipped.append(item)
                if t.cores <= 1 and t.memory_mb == 0 and t.gpus == 0:
                    break  # not even the smallest task fits: nothing behind it will
                continue
            st = self.states[t.id]
            st.tries += 1
            st.state = "running"
            self.counts["running"] += 1
            a = Attempt(task=t, number=st.tries)
            failed = self.ex.start(a)
            if failed is not None:
                self._completed(failed)
        for item in skipped:
            heapq.heappush(self.ready, item)

    def _loop(self) -> None:
        while True:
            self._launch()
            if self.counts["running"] == 0 and (self.stopping or not self.ready):
                break
            if self.counts["running"] == 0 and self.ex.running() == 0:
                # nothing runs and nothing could start: the input check should have caught
                # it; refuse to spin
                tid = self.ready[0][2]
                raise FluxliteError(f"task '{tid}' can never start on {self.ex.where}")
            now = time.monotonic()
            # short enough to notice signals and deadlines promptly
            timeout = 0.2
            if self._term_at is not None and self.stopping in (None, "fail-fast"):
                timeout = min(timeout, max(0.0, self._term_at - now))
            if self._kill_at is not None:
                timeout = min(timeout, max(0.0, self._kill_at - now))
            for a in self.ex.poll(timeout):
                self._completed(a)
            now = time.monotonic()
            if self.signum is not None and self.stopping != "interrupted":
                self._stop("interrupted", signal.SIGTERM)
            if self._term_at is not None and now >= self._term_at and self.stopping in (
                    None, "fail-fast"):
                self._stop("time limit", signal.SIGTERM)
            if self._kill_at is not None and now >= self._kill_at:
                self._kill_at = None
                self.ex.signal_all(signal.SIGKILL, self.stopping or "killed")
            if now - self._last_flush >= 0.5:
                self._last_flush = now
                self.out.flush()
                self._progress()

    def _stop(self, reason: str, signum: int) -> None:
        self.stopping = reason
        n = self.ex.running()
        logger.warning("%s: starting no more tasks%s", reason,
                       f"; sending SIGTERM to {n} running" if n else "")
        self.ex.signal_all(signum, reason)
        self._kill_at = time.monotonic() + self.opt.kill_grace

    # -- completions ----------------------------------------------------------------------
    def _completed(self, a: Attempt) -> None:
        t = a.task
        st = self.states[t.id]
        self.counts["running"] -= 1
        self.out.write(self.w.kickstart(a).encode("utf-8", "backslashreplace"))
        self.out.write(self.w.task_line(a).encode("utf-8", "backslashreplace"))
        st.attempts.append(attempt_dict(a))
        if a.ok:
            st.state = "done"
            self.counts["done"] += 1
            if self._rescue_fh is not None:
                self._rescue_fh.write(f"DONE {t.id}\n")
                self._rescue_fh.flush()
            for c in t.children:
                cs = self.states[c]
                cs.waiting_on -= 1
                if cs.waiting_on == 0 and cs.state == "waiting":
                    self._make_ready(c)
            return
        # a task's own tries win over --tries, as PMC's -t over its --tries
        tries = t.tries or self.opt.default_tries
        if a.stopped is not None and a.stopped != "fail-fast":
            st.state = "waiting"  # stopped by fluxlite, not failed: a rerun runs it
            logger.info("task %s stopped (%s)", t.id, a.stopped)
            return
        if st.tries < tries and not self.stopping:
            self.counts["retries"] += 1
            logger.info("task %s failed (exit %d), try %d of %d", t.id, a.code, st.tries + 1,
                        tries)
            self._make_ready(t.id)
            return
        st.state = "failed"
        self.counts["failed"] += 1
        logger.warning("task %s failed (exit %d) after %d tr%s", t.id, a.code, st.tries,
                       "y" if st.tries == 1 else "ies")
        if self.opt.fail_fast and not self.stopping:
            self.stopping = "fail-fast"
            logger.warning("--fail-fast: starting no more tasks")

    # -- reporting ------------------------------------------------------------------------
    def _tally(self) -> dict[str, int]:
        c = self.counts
        n = len(self.g)
        done = c["done"] + c["rescued"]
        return {"tasks": n, "done": done, "running": c["running"], "failed": c["failed"],
                "waiting": n - done - c["running"] - c["failed"]}

    def _progress(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._live is not None:  # a terminal: the live line instead of the plain lines
            t = self._tally()
            self._live.update(t["done"], t["tasks"], t["running"], t["failed"], force=force)
            if force:
                self._live.close()
        if not force and now - self._last_progress < self.opt.progress_interval:
            return
        tally = self._tally()
        key = tuple(tally.values())
        if key == self._progress_key:
            return  # said already (force only lifts the rate limit)
        self._last_progress = now
        self._progress_key = key
        if logger.isEnabledFor(logging.INFO) and self._live is None:  # -q: warnings only
            sys.stderr.write(f"fluxlite cluster: {tally['done']}/{tally['tasks']} done, "
                             f"{tally['running']} running, {tally['failed']} failed, "
                             f"{tally['waiting']} waiting ({now - self._t0:.1f} s)\n")
            sys.stderr.flush()
        ctx = self.opt.flux_context
        if ctx is not None:
            ctx.memo({"phase": "cluster", **tally})

    def _summary(self) -> dict[str, Any]:
        c = self.counts
        n = len(self.g)
        succeeded = c["done"] + c["rescued"]
        ok = succeeded == n
        s: dict[str, Any] = {
            "stat": "ok" if ok else "fail", "lines": self.g.lines, "tasks": n,
            "succeeded": succeeded, "failed": c["failed"], "extra": 0,
            "rescued": c["rescued"], "not_run": n - succeeded - c["failed"],
            "retries": c["retries"], "duration": time.monotonic() - self._t0,
            "start": iso(self.start), "pid": os.getpid(), "app": "fluxlite cluster",
            "executor": self.ex.name}
        if (self.stopping and self.stopping != "fail-fast") or self.signum is not None:
            s["stopped"] = self.stopping or "interrupted"
        return s

    def exit_code(self, summary: dict[str, Any]) -> int:
        if summary["stat"] == "ok":
            return EXIT_OK
        if self.signum is not None:
            return 128 + self.signum
        if self.stopping == "time limit":
            return EXIT_TIME_LIMIT
        return EXIT_TASK_FAILED

    def report(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The JSON record of the cluster: every task, every attempt."""
        tasks = []
        for tid, t in self.g.tasks.items():
            st = self.states[tid]
            tasks.append({"id": tid, "name": t.name, "line": t.line or None,
                          "app": t.app, "cores": t.cores, "gpus": t.gpus,
                          "memory_mb": t.memory_mb, "priority": t.priority,
                          "parents": t.parents, "state": st.state, "attempts": st.attempts})
        return {"fluxlite_cluster": 1, "input": os.path.abspath(self.g.path),
                "format": self.g.format, "executor": self.ex.name,
                "start": iso(self.start), "start_epoch": self.start,
                "time_limit_source": self.limit_source or None,
                "summary": summary, "tasks": tasks}


def binary_out(path: str | None) -> IO[bytes]:
    if path in (None, "-"):
        return io.BufferedWriter(io.FileIO(os.dup(sys.stdout.fileno()), "wb"), 1 << 16)
    try:
        return open(path, "wb", buffering=1 << 16)  # noqa: SIM115
    except OSError as err:
        from fluxlite.errors import UsageError

        raise UsageError(f"cannot write the output {path}: {err.strerror}") from err
