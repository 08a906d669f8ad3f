"""Stage-in and stage-out of a whole job: many transfers at once, every attempt kept."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from fluxlite.errors import StageError
from fluxlite.staging.base import (
    Cancelled,
    Policy,
    Request,
    RoundObserver,
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

    ``threads`` transfers at once (0: ``default_threads()``), never more than MAX_THREADS
    nor than there are files; one at a time is the same pool with one worker. The
    StageResult is attached to any StageError raised (``err.stage``) so that the record
    still shows every attempt. When ``stop_on_error`` is false, every transfer is tried and
    the first failure is raised at the end; when it is true, the first failure sets
    ``cancel`` and what has not started is not tried. ``on_progress`` is called with the
    results so far as transfers end (and every 0.2 s while they run).
    """
    cancel = cancel or threading.Event()
    out = StageResult(direction, start=time.time())
    t0 = time.perf_counter()
    workers = max(1, min(threads or default_threads(), MAX_THREADS, len(requests)))
    tally = _Tally(direction, len(requests), workers, cancel)
    phase = _Phase(out, cancel, stop_on_error)
    with ThreadPoolExecutor(max_workers=workers,
                            thread_name_prefix=f"fluxlite-{direction}") as pool:
        running = {pool.submit(phase.transfer, r, policy, tally.observer(i)): (i, r)
                   for i, r in enumerate(requests)}
        try:
            phase.collect(running, on_progress)
        except BaseException:
            cancel.set()  # fluxlite is leaving the phase (a signal): so do the transfers
            raise
    out.duration = time.perf_counter() - t0
    return phase.ending(tally.tripped)


class _Phase:
    """The outcome of a phase's transfers as they end: each file's result kept, the first
    failure remembered (it cancels the rest when ``stop_on_error``)."""

    def __init__(self, out: StageResult, cancel: threading.Event, stop_on_error: bool) -> None:
        self.out = out
        self.cancel = cancel
        self.stop_on_error = stop_on_error
        self.first_err: BaseException | None = None

    def transfer(self, req: Request, policy: Policy, observer: RoundObserver) -> TransferResult:
        """One file, in a worker; a failure that stops the phase cancels the others there and
        then, so that a worker takes up no other file once it is known."""
        try:
            return transfer(req, policy, self.cancel, observer)
        except StageError:
            if self.stop_on_error:
                self.cancel.set()
            raise

    def collect(self, running: dict[Future[TransferResult], tuple[int, Request]],
                on_progress: Callable[[StageResult], None] | None) -> None:
        """Wait for every transfer, keeping each outcome in the order the files were given."""
        pending = set(running)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
            for f in sorted(done, key=lambda f: running[f][0]):
                self.keep(f, running[f][1])
            if on_progress is not None:
                on_progress(self.out)

    def keep(self, f: Future[TransferResult], req: Request) -> None:
        """One transfer's outcome: its result, its failure, or its cancellation."""
        exc = f.exception()
        if exc is None:
            self.out.results.append(f.result())
        elif isinstance(exc, StageError):
            _keep(self.out, req, exc)  # its worker cancelled the rest when it stops the phase
            self.first_err = self.first_err or exc
        elif isinstance(exc, Cancelled):
            self.out.interrupted = True
            _keep_cancelled(self.out, exc)
        else:  # not a transfer's failure (a bug): the phase stops and it is raised
            self.first_err = self.first_err or exc
            self.cancel.set()

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
