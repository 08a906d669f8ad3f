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
import json
import logging
import math
import os
import re
import signal
import sys
import time
from dataclasses import dataclass

import orjson

from fluxlite.cluster.executors import Executor
from fluxlite.cluster.formats import TaskGraph
from fluxlite.cluster.attempt import Attempt
from fluxlite.cluster.records import RecordWriter, attempt_dict, summary_line
from fluxlite.errors import (
    EXIT_INFRA,
    EXIT_OK,
    EXIT_TASK_FAILED,
    EXIT_TIME_LIMIT,
    SIGNAL_BASE,
    FluxliteError,
    UsageError,
    one_line,
)
from fluxlite.execute.base import Escalation, signal_name
from fluxlite.record.host import iso
from fluxlite.signals import HANDLED_SIGNALS, WARNING_SIGNAL, Handlers

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import IO, Any

logger = logging.getLogger(__name__)

_NAMED = re.compile(r" '[^']*'")  # a task named in a reason
_UNRUN = ("waiting", "ready", "not-run")  # states of tasks that did not run (to the end)
NOT_RUN_LINES = 10_000  # [cluster-not-run] lines at most; then one line says how many more


def rescue_id(tid: str) -> str:
    """A task id as a rescue file's DONE line holds it: as it is when it is a plain word
    (PMC's format), else as a JSON string, so that no blank, line break or quote in an id
    can name another task."""
    if tid and tid.isascii() and tid.isprintable() and " " not in tid and tid[0] != '"':
        return tid
    return json.dumps(tid)


def parse_rescue_line(line: str) -> str | None:
    """The task id of a ``DONE id`` line, or None for any other line."""
    if not line.startswith("DONE "):
        return None
    word = line[5:].strip(" \t")
    if word.startswith('"'):
        try:
            tid = json.loads(word)
        except ValueError:
            return None
        return tid if isinstance(tid, str) else None
    return word if word and " " not in word and "\t" not in word else None


@dataclass(slots=True)
class Options:
    """How the scheduler runs a cluster: stops, retries, rescue file, time limit."""

    fail_fast: bool = False
    rescue: str | None = None
    max_wall_time: float | None = None  # seconds from the start of the cluster
    time_margin: float | None = None  # seconds before the limit at which tasks get TERM
    kill_grace: float = 5.0
    progress_interval: float = 10.0
    default_tries: int = 1
    flux_context: Any = None  # FluxContext: time left and the memo on the enclosing job
    keep_attempts: bool = False  # every attempt kept (serialized) for the JSON record


@dataclass(slots=True)
class TaskState:
    """Where one task is in the cluster's run: its state and tries, why it did not run, and
    (for the JSON record only) its attempts, each as the JSON it is written as."""

    state: str = "waiting"  # waiting, ready, running, done, rescued, failed, not-run
    waiting_on: int = 0
    tries: int = 0
    attempts: list[bytes] | None = None
    reason: str = ""  # why it did not run (or not to its end) this time


class Scheduler:
    """Runs a TaskGraph on an executor: ready tasks by priority, retries, the rescue file and
    the cluster's stop, writing each attempt's records as it ends."""

    def __init__(self, graph: TaskGraph, executor: Executor, writer: RecordWriter,
                 out: IO[bytes] | Output, options: Options,
                 handlers: Handlers | None = None) -> None:
        """``handlers``: the command's own, installed already; the scheduler takes over
        their policy while it runs and hands it to :func:`finishing` at its end. Without
        them it installs handlers of its own for the run and restores what was there."""
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
        # the cluster's TERM (at the time limit or a stop signal) and KILL, for all its tasks
        self.escalation = Escalation(options.kill_grace)
        self._rescue_fh: IO[str] | None = None
        self._rescue_keep: int | None = None  # bytes of the rescue file that end in "\n"
        self._own_handlers = handlers is None
        self._handlers = handlers or Handlers(HANDLED_SIGNALS, self._on_signal)
        self._last_progress = 0.0
        self._last_flush = 0.0
        self._progress_key: tuple[int, ...] = ()
        self._warned = False  # SIGUSR1: the time limit is near
        self._fail_fast_by = ""
        self.rescue_error: str | None = None
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
        # only '\n' ends a line, as in PMC: an id may hold any other character
        for raw in data[: self._rescue_keep].split(b"\n"):
            tid = parse_rescue_line(raw.removesuffix(b"\r").decode("utf-8", "replace"))
            if tid is None:
                continue
            if tid in self.g.tasks:
                done.add(tid)
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
            # the input's name escaped as an id is: a line break in it ends no line here
            self._rescue_write(f"# fluxlite cluster rescue file for {rescue_id(self.g.path)}\n")

    def _rescue_write(self, line: str) -> None:
        fh = self._rescue_fh
        if fh is None:
            return
        try:
            fh.write(line)
            fh.flush()
        except OSError as err:
            self._rescue_failed(err)

    def _rescue_failed(self, err: OSError) -> None:
        """The rescue file cannot take more (a full disk, /dev/full): said once; the
        cluster goes on and its summary is written. A rerun runs again what is missing."""
        self.rescue_error = (f"cannot write the rescue file {self.opt.rescue}: "
                             f"{err.strerror or err}")
        logger.error("error: %s; a rerun will run again the tasks done from here on",
                     self.rescue_error)
        fh, self._rescue_fh = self._rescue_fh, None
        try:
            if fh is not None:
                fh.close()
        except OSError:
            pass

    def _close_rescue(self) -> None:
        fh = self._rescue_fh
        if fh is None:
            return
        try:
            fh.flush()
        except OSError as err:
            self._rescue_failed(err)
            return
        try:
            os.fsync(fh.fileno())
        except OSError:
            pass  # a device or a pipe (--rescue /dev/null): nothing to sync
        try:
            fh.close()
        except OSError as err:
            self._rescue_failed(err)
        self._rescue_fh = None

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
        self.escalation.term_at = self._t0 + term
        self.limit_source = source
        logger.info("time limit: %.1f s (%s); running tasks get SIGTERM after %.1f s",
                    limit, source, term)

    def _on_signal(self, signum: int) -> None:
        """The policy: USR1 is the time-limit warning; a stop signal stops, a second one
        ends the grace."""
        if signum == WARNING_SIGNAL:
            self._warned = True
            return
        if self.signum is not None:  # a second stop signal: no more grace
            now = time.monotonic()
            self.escalation.sooner(now, now)
        self.signum = self.signum or signum

    # -- the loop -------------------------------------------------------------------------
    def run(self, pending: Any = None) -> dict[str, Any]:
        """Run the cluster. ``pending()`` gives the signals that came before this
        scheduler's policy was in place (it takes over first of all)."""
        if self._own_handlers:
            self._handlers.install()
        else:
            self._handlers.hand_over(self._on_signal)
        for signum in (pending() if pending is not None else ()):
            self._on_signal(signum)
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
        try:
            self._loop()
        finally:
            if self._own_handlers:
                self._handlers.restore()
            else:  # a signal from here on must not cut the summary or the shutdown short
                self._handlers.hand_over(finishing)
            if self._live is not None:
                self._live.erase()  # what follows (an error too) starts on a clean line
            self._close_rescue()
        self._not_run()
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
        if self.stopping or not self.ready or self.signum is not None or self._warned:
            return
        if self._output_lost():
            self.stopping = "output"  # nothing more can be recorded: start nothing more
            self.ex.hold("the output could not be written")
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
            self._check_stops(time.monotonic())
            self._launch()
            if self.counts["running"] == 0 and (self.stopping or not self.ready):
                break
            if self.counts["running"] == 0 and self.ex.running() == 0:
                # nothing runs and nothing could start: the input check should have caught
                # it; refuse to spin
                tid = self.ready[0][2]
                raise FluxliteError(f"task '{one_line(tid)}' can never start on "
                                    f"{self.ex.where}")
            now = time.monotonic()
            # short enough to notice signals and deadlines promptly
            timeout = 0.2
            due = self.escalation.next()
            if due is not None:
                timeout = min(timeout, max(0.0, due - now))
            for a in self.ex.poll(timeout):
                self._completed(a)
            now = time.monotonic()
            self._check_stops(now)
            if now - self._last_flush >= 0.5:
                self._last_flush = now
                self.out.flush()
                self._progress()

    def _check_stops(self, now: float) -> None:
        e = self.escalation
        if self.signum is not None and self.stopping != "interrupted":
            self.stopping = "interrupted"
            why = f"interrupted by {signal.Signals(self.signum).name}"
            if e.stop(why) == "term":
                self._term_all(why)
            else:  # the tasks had their TERM (the time limit): no more grace
                e.sooner(now, now)
        if self._warned and not e.termed:
            logger.warning("SIGUSR1: the time limit is near")
            e.sooner(now)
        act = e.due(now)
        if act == "term":
            self.stopping = "time limit"
            self._term_all("time limit")
        elif act == "kill" and e.kill_once():
            n = self.ex.running()
            if n:
                logger.warning("sending SIGKILL to %d task(s) still running", n)
            self.ex.signal_all(signal.SIGKILL, self.stopping or "killed")

    def _term_all(self, reason: str) -> None:
        """Start nothing new and TERM the running tasks (the escalation KILLs them
        ``kill_grace`` later)."""
        n = self.ex.running()
        logger.warning("%s: starting no more tasks%s", reason,
                       f"; sending SIGTERM to {n} running" if n else "")
        self.ex.signal_all(signal.SIGTERM, reason)

    # -- completions ----------------------------------------------------------------------
    def _completed(self, a: Attempt) -> None:
        t = a.task
        st = self.states[t.id]
        self.counts["running"] -= 1
        self.out.write(self.w.kickstart(a).encode("utf-8", "backslashreplace"))
        self.out.write(self.w.task_line(a).encode("utf-8", "backslashreplace"))
        if self.opt.keep_attempts:
            # what the JSON record says of it, as it says it: no dictionaries kept
            if st.attempts is None:
                st.attempts = []
            # (a copy: orjson's own bytes hold 4 KB whatever their length)
            st.attempts.append(bytes(memoryview(orjson.dumps(attempt_dict(a)))))
        if a.ok:
            st.state = "done"
            self.counts["done"] += 1
            self._rescue_write(f"DONE {rescue_id(t.id)}\n")
            for c in t.children:
                cs = self.states[c]
                cs.waiting_on -= 1
                if cs.waiting_on == 0 and cs.state == "waiting":
                    self._make_ready(c)
            return
        # a task's own tries win over --tries, as PMC's -t over its --tries
        tries = t.tries or self.opt.default_tries
        if a.stopped is not None:
            # stopped by fluxlite, not failed, whatever it exited with: a rerun runs it
            st.state = "waiting"
            st.reason = f"stopped ({a.stopped})"
            logger.info("task %s stopped (%s)", one_line(t.id), a.stopped)
            return
        if st.tries < tries and not self.stopping:
            self.counts["retries"] += 1
            # the try that failed, never the next one: "try 2 of 3" read as a second failure
            logger.info("task %s try %d of %d failed (%s), retrying", one_line(t.id),
                        st.tries, tries, _describe(a))
            self._make_ready(t.id)
            return
        st.state = "failed"
        self.counts["failed"] += 1
        cause = a.failure or a.status.error or _last_line(a.stderr)
        logger.warning("task %s failed (%s) after %d tr%s%s", one_line(t.id), _describe(a),
                       st.tries, "y" if st.tries == 1 else "ies",
                       f": {one_line(cause)}" if cause else "")
        if self.opt.fail_fast and not self.stopping:
            self.stopping = "fail-fast"
            self._fail_fast_by = t.id
            logger.warning("--fail-fast: starting no more tasks")
            self.ex.hold("fail-fast")

    def _not_run(self) -> None:
        """Mark what did not run, say why on a line each (before the summary) and once on
        stderr: a parent failed or did not run, the time limit, a signal, --fail-fast."""
        if self.signum is not None:
            stop = f"interrupted by {signal.Signals(self.signum).name}"
        elif self.stopping == "time limit":
            stop = "time limit"
        elif self.stopping == "fail-fast":
            stop = f"--fail-fast after task '{self._fail_fast_by}' failed"
        elif self.stopping == "output":
            stop = "the output could not be written"
        else:
            stop = "not started"
        tally: dict[str, int] = {}
        lines = 0
        states = self.states
        for tid, t in self.g.tasks.items():
            st = states[tid]
            if st.state not in _UNRUN:
                continue
            st.state = "not-run"
            if not st.reason:
                bad = next((p for p in t.parents if states[p].state == "failed"), None)
                if bad is not None:
                    st.reason = f"parent '{bad}' failed"
                else:
                    gone = next((p for p in t.parents if states[p].state in _UNRUN), None)
                    st.reason = f"parent '{gone}' did not run" if gone is not None else stop
            kind = _NAMED.sub("", st.reason)
            tally[kind] = tally.get(kind, 0) + 1
            lines += 1
            if lines <= NOT_RUN_LINES:
                self.out.write(self.w.not_run_line(t, st.reason).encode("utf-8",
                                                                        "backslashreplace"))
        if lines > NOT_RUN_LINES:
            # the rest is in the JSON record: a stopped cluster of a million tasks does not
            # make a million lines
            self.out.write(f"[cluster-not-run more={lines - NOT_RUN_LINES}]\n".encode())
        if tally:
            logger.warning("%d task(s) not run (%s)", sum(tally.values()),
                           ", ".join(f"{k}: {n}" for k, n in tally.items()))

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
        if self.signum is not None:
            s["signal"] = signal.Signals(self.signum).name
        return s

    def _output_lost(self) -> bool:
        """Whether the output stream could take no more (only an ``Output`` tells)."""
        return isinstance(self.out, Output) and self.out.error is not None

    def exit_code(self, summary: dict[str, Any]) -> int:
        """The cluster's exit code for its summary (errors.py's table)."""
        if self._output_lost():
            return EXIT_INFRA  # the records are lost: no task can be judged
        if summary["stat"] == "ok":
            return EXIT_OK
        if self.signum is not None:
            return SIGNAL_BASE + self.signum
        if self.stopping == "time limit":
            return EXIT_TIME_LIMIT
        return EXIT_TASK_FAILED

    def report(self, summary: dict[str, Any]) -> dict[str, Any]:
        """The JSON record of the cluster: every task, every attempt (kept only with
        ``keep_attempts``). Its ``tasks`` are serialized already, one task a line (an
        ``orjson.Fragment``): a cluster of a million tasks is never a million dictionaries
        at once."""
        buf = bytearray(b"[")
        dumps, frag = orjson.dumps, orjson.Fragment
        for tid, t in self.g.tasks.items():
            st = self.states[tid]
            if len(buf) > 1:
                buf += b",\n"
            buf += dumps({"id": tid, "name": t.name, "line": t.line or None,
                          "app": t.app, "cores": t.cores, "gpus": t.gpus,
                          "memory_mb": t.memory_mb, "priority": t.priority,
                          "parents": t.parents, "state": st.state,
                          "reason": st.reason or None,
                          "attempts": [frag(x) for x in st.attempts or ()]})
        buf += b"]"
        tasks = frag(bytes(buf))
        del buf
        return {"fluxlite_cluster": 1, "input": os.path.abspath(self.g.path),
                "format": self.g.format, "executor": self.ex.name,
                "start": iso(self.start), "start_epoch": self.start,
                "time_limit_source": self.limit_source or None,
                "summary": summary, "tasks": tasks}


class Output:
    """The cluster's output stream. When it cannot take more (a full disk, ``-o
    /dev/full``, a closed pipe) that is said once, what follows is dropped and
    ``error`` tells the scheduler, which starts no more tasks and exits 71."""

    def __init__(self, raw: IO[bytes], name: str) -> None:
        self.raw = raw
        self.name = name
        self.error: str | None = None

    def write(self, data: bytes) -> None:
        """Write ``data``, or drop it once the stream has failed."""
        if self.error is None:
            try:
                self.raw.write(data)
            except OSError as err:
                self._failed(err)

    def flush(self) -> None:
        """Flush what is buffered, unless the stream has failed."""
        if self.error is None:
            try:
                self.raw.flush()
            except OSError as err:
                self._failed(err)

    def close(self) -> None:
        """Close the stream; a failure there counts as the stream's first."""
        try:
            self.raw.close()
        except OSError as err:
            if self.error is None:
                self._failed(err)

    def _failed(self, err: OSError) -> None:
        self.error = f"cannot write the output {self.name}: {err.strerror or err}"
        logger.error("error: %s; starting no more tasks", self.error)
        try:
            self.raw.close()  # what is buffered cannot go anywhere either
        except OSError:
            pass


def finishing(signum: int) -> None:
    """The cluster's signal policy once its tasks are over or stopped (its summary, records
    and shutdown under way), or when it failed to start: a signal is logged and what is
    under way completes."""
    if signum == signal.SIGUSR1:  # the warning that the time limit is near
        logger.warning("SIGUSR1 during the cluster's shutdown")
        return
    logger.warning("%s during the cluster's shutdown: finishing it first",
                   signal.Signals(signum).name)


def _describe(a: Attempt) -> str:
    sig = a.status.signal
    return f"killed by {signal_name(sig)}" if sig is not None else f"exit {a.code}"


def _last_line(data: bytes | None, most: int = 200) -> str:
    """The last line a task wrote to stderr, for the one line that says why it failed."""
    if not data:
        return ""
    lines = [ln for ln in data.split(b"\n") if ln.strip()]
    if not lines:
        return ""
    text = lines[-1].decode("utf-8", "replace").strip()
    return text if len(text) <= most else text[:most] + "..."


def binary_out(path: str | None) -> Output:
    """The cluster's output stream: the file at ``path``, or stdout for None and ``-``."""
    if path in (None, "-"):
        raw: IO[bytes] = io.BufferedWriter(io.FileIO(os.dup(sys.stdout.fileno()), "wb"),
                                           1 << 16)
        return Output(raw, "stdout")
    try:
        return Output(open(path, "wb", buffering=1 << 16), path)  # noqa: SIM115
    except OSError as err:
        from fluxlite.errors import UsageError

        raise UsageError(f"cannot write the output {path}: {err.strerror}") from err
