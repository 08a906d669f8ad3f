"""Stage-in and stage-out of a whole job: many transfers at once, every attempt kept."""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from fluxlite.errors import StageError
from fluxlite.staging.base import Cancelled, Policy, Request, TransferResult, transfer

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class StageResult:
    direction: str
    results: list[TransferResult] = field(default_factory=list)
    start: float = 0.0
    duration: float = 0.0
    error: str | None = None
    interrupted: bool = False

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.results if r.success)

    @property
    def files(self) -> int:
        return sum(1 for r in self.results if r.success)


def default_threads() -> int:
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def run_transfers(direction: str, requests: list[Request], policy: Policy, threads: int = 0,
                  cancel: threading.Event | None = None, stop_on_error: bool = True
                  ) -> StageResult:
    """Run the transfers, in parallel where there are several; raise the first hard failure.

    The StageResult is attached to any StageError raised (``err.stage``) so that the record
    still shows every attempt. When ``stop_on_error`` is false, every transfer is tried and
    the first failure is raised at the end.
    """
    cancel = cancel or threading.Event()
    out = StageResult(direction, start=time.time())
    t0 = time.perf_counter()
    first_err: BaseException | None = None
    try:
        if len(requests) <= 1 or threads == 1:
            for req in requests:
                try:
                    out.results.append(transfer(req, policy, cancel))
                except StageError as err:
                    _keep(out, req, err)
                    first_err = first_err or err
                    if stop_on_error:
                        break
        else:
            n = threads or default_threads()
            with ThreadPoolExecutor(max_workers=min(n, len(requests)),
                                    thread_name_prefix=f"fluxlite-{direction}") as pool:
                futs: dict[Future[TransferResult], Request] = {
                    pool.submit(transfer, r, policy, cancel): r for r in requests}
                pending = set(futs)
                while pending:
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                    for f in done:
                        exc = f.exception()
                        if exc is None:
                            out.results.append(f.result())
                        elif isinstance(exc, StageError):
                            _keep(out, futs[f], exc)
                            if first_err is None:
                                first_err = exc
                                if stop_on_error:
                                    cancel.set()
                        elif isinstance(exc, Cancelled):
                            out.interrupted = True
                        else:
                            first_err = first_err or exc
                            cancel.set()
    except Cancelled:
        out.interrupted = True
    out.duration = time.perf_counter() - t0
    if first_err is not None:
        out.error = str(first_err)
        first_err.stage = out  # type: ignore[attr-defined]
        raise first_err
    if cancel.is_set():
        out.interrupted = True
    return out


def _keep(out: StageResult, req: Request, err: StageError) -> None:
    res = getattr(err, "result", None)
    if res is None:
        res = TransferResult(lfn=req.lfn, dst=req.dst, expected=req.expected, error=str(err))
    out.results.append(res)
