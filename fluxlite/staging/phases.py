"""Stage-in and stage-out of a whole job: many transfers at once, every attempt kept."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fluxlite.errors import StageError
from fluxlite.staging.base import (
    Cancelled,
    Policy,
    Request,
    TransferResult,
    transfer,
)

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class StageResult:
    """One staging phase: the results of its files, its duration, its error."""

    direction: str
    results: list[TransferResult] = field(default_factory=list)
    start: float = 0.0
    duration: float = 0.0
    error: str | None = None
    interrupted: bool = False

    @property
    def bytes(self) -> int:
        """Bytes moved by the files that arrived."""
        return sum(r.bytes for r in self.results if r.success)

    @property
    def files(self) -> int:
        """How many files arrived."""
        return sum(1 for r in self.results if r.success)


# A set of at least this many files stops early when most of it is failing.
SHORT_CIRCUIT_MIN = 10


class _Tally:
    """Which transfers are failing, so that a large set that mostly fails stops early.

    Every transfer reports each round: True when its file arrived, False when no source
    worked in that round (it is then counted as failing until a later round succeeds).
    In a set of at least SHORT_CIRCUIT_MIN files, once ``quorum`` transfers have reported
    and more than half of them are failing, the rest is cancelled instead of sleeping
    through every retry of every file: a dead server or a wrong base URL fails the phase
    after one round, not after all of them. The quorum is SHORT_CIRCUIT_MIN, or the number
    of workers when there are fewer (failing transfers hold their worker while they wait
    to retry, so no more than that many can report a first failure), and at least 2.
    """

    def __init__(self, direction: str, total: int, workers: int,
                 cancel: threading.Event) -> None:
        self.direction = direction
        self.total = total
        self.minimum = max(2, min(SHORT_CIRCUIT_MIN, workers))
        self.cancel = cancel
        self.state: dict[int, bool] = {}
        self.tripped: str | None = None
        self._lock = threading.Lock()

    def observer(self, index: int):  # noqa: ANN201 - a RoundObserver
        def note(ok: bool) -> None:
            with self._lock:
                self.state[index] = ok
                seen = len(self.state)
                failing = seen - sum(self.state.values())
                if (self.tripped is None and self.total >= SHORT_CIRCUIT_MIN
                        and seen >= self.minimum and 2 * failing > seen):
                    self.tripped = (f"{self.direction} stopped early: {failing} of the first "
                                    f"{seen} of {self.total} files failed")
                    self.cancel.set()
        return note


MAX_THREADS = 64


def default_threads() -> int:
    """The number of parallel transfers when none is asked for."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def run_transfers(direction: str, requests: list[Request], policy: Policy, threads: int = 0,
                  cancel: threading.Event | None = None, stop_on_error: bool = True,
                  on_progress: Callable[[StageResult], None] | None = None) -> StageResult:
    """Run the transfers, in parallel where there are several; raise the first hard failure.

    ``threads`` workers (0: ``default_threads()``, never more than MAX_THREADS nor than
    there are files) take the files in the order given, one at a time with one worker;
    the calling thread only waits for them, so that a signal's exception lands in that
    wait and never inside a transfer (nor inside its logging, which would swallow it).
    The StageResult is attached to any StageError raised (``err.stage``) so that the record
    still shows every attempt. When ``stop_on_error`` is false, every transfer is tried and
    the first failure is raised at the end; when it is true, the first failure sets
    ``cancel`` and no worker takes up another file. ``on_progress`` is called with the
    results so far every 0.2 s while the transfers run, and once they have ended.
    """
    cancel = cancel or threading.Event()
    out = StageResult(direction, start=time.time())
    t0 = time.perf_counter()
    workers = max(1, min(threads or default_threads(), MAX_THREADS, len(requests)))
    tally = _Tally(direction, len(requests), workers, cancel)
    phase = _Phase(out, requests, policy, cancel, stop_on_error, tally, workers)
    pool = [threading.Thread(target=phase.work, name=f"fluxlite-{direction}-{k}",
                             daemon=True) for k in range(workers)]
    try:
        for t in pool:
            t.start()
        # an Event, not Thread.join: a join that a signal's exception interrupts can take
        # a thread still running for ended (CPython 3.11)
        while not phase.finished.wait(0.2):
            if on_progress is not None:
                phase.progress(on_progress)
        if on_progress is not None:
            phase.progress(on_progress)  # the last figures
    except BaseException:
        cancel.set()  # fluxlite is leaving the phase (a signal): so do the transfers
        raise
    finally:
        for t in pool:
            if t.ident is not None:
                t.join()
    out.duration = time.perf_counter() - t0
    return phase.ending(tally.tripped)


class _Phase:
    """The files of a phase, taken in order by its workers, and their outcomes: each file's
    result kept, the first failure remembered (it cancels the rest when ``stop_on_error``)."""

    def __init__(self, out: StageResult, requests: list[Request], policy: Policy,
                 cancel: threading.Event, stop_on_error: bool, tally: _Tally,
                 workers: int) -> None:
        self.out = out
        self.todo = iter(enumerate(requests))
        self.policy = policy
        self.cancel = cancel
        self.stop_on_error = stop_on_error
        self.tally = tally
        self.first_err: BaseException | None = None
        self.lock = threading.Lock()
        self.working = workers
        self.finished = threading.Event()  # set when the last worker has ended

    def work(self) -> None:
        """A worker: the next file not taken yet, until there is none."""
        try:
            while True:
                with self.lock:
                    i, req = next(self.todo, (-1, None))
                if req is None:
                    return
                self.one(i, req)
        finally:
            with self.lock:
                self.working -= 1
                if self.working == 0:
                    self.finished.set()

    def one(self, i: int, req: Request) -> None:
        """One file and its outcome: its result, its failure, or its cancellation."""
        try:
            res = transfer(req, self.policy, self.cancel, self.tally.observer(i))
        except StageError as err:
            if self.stop_on_error:
                self.cancel.set()  # at once: no worker takes up another file
            with self.lock:
                _keep(self.out, req, err)
                self.first_err = self.first_err or err
        except Cancelled as stop:
            with self.lock:
                self.out.interrupted = True
                _keep_cancelled(self.out, stop)
        # not a transfer's failure (a bug): the phase stops, and it is raised when its
        # workers have ended
        except Exception as exc:  # noqa: BLE001 - kept and raised by ending()
            self.cancel.set()
            with self.lock:
                self.first_err = self.first_err or exc
        else:
            with self.lock:
                self.out.results.append(res)

    def progress(self, on_progress: Callable[[StageResult], None]) -> None:
        """Tell ``on_progress`` the results so far."""
        with self.lock:
            on_progress(self.out)

    def ending(self, tripped: str | None) -> StageResult:
        """The result of the phase, or the error that ended it (``tripped``: why it was
        stopped early because most of its files were failing)."""
        out, first_err = self.out, self.first_err
        if tripped is not None:
            example = first_err or next((r.error for r in out.results if r.error), None)
            short = StageError(tripped + (f" (first: {example})" if example else ""),
                               permanent=True, stage=out)
            out.error = str(short)
            out.interrupted = True
            if isinstance(first_err, StageError) or first_err is None:
                raise short
        if first_err is not None:
            out.error = str(first_err)
            raise first_err.ending(out) if isinstance(first_err, StageError) else first_err
        if self.cancel.is_set():
            out.interrupted = True
        return out


def _keep(out: StageResult, req: Request, err: StageError) -> None:
    res = err.result
    if res is None:
        res = TransferResult(lfn=req.lfn, dst=req.dst, expected=req.expected, error=str(err))
    out.results.append(res)


def _keep_cancelled(out: StageResult, stop: Cancelled) -> None:
    if stop.result is not None:
        out.results.append(stop.result)
