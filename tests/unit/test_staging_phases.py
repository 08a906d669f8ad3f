"""A staging phase (``run_transfers``) means the same with one worker as with several:
the order kept, a failure stopping what has not started, every file tried without
``stop_on_error``, and a stop of fluxlite's own (a signal's exception in the main thread)
ending the transfers with nothing partial left."""

from __future__ import annotations

import io
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from fluxlite.errors import StageError
from fluxlite.staging.base import Policy, Request
from fluxlite.staging.phases import run_transfers
from tests.httpserver import FaultServer

ONCE = Policy(attempts=1, backoff=0.0)


def _files(tmp_path: Path, n: int, missing: tuple[int, ...] = ()) -> list[Request]:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(exist_ok=True)
    dst.mkdir(exist_ok=True)
    reqs = []
    for i in range(n):
        if i not in missing:
            (src / f"f{i}").write_bytes(b"%d" % i * 100)
        reqs.append(Request(f"f{i}", ((f"file://{src}/f{i}", True),), str(dst / f"f{i}")))
    return reqs


@pytest.mark.parametrize("threads", [1, 4])
def test_every_file_arrives_in_the_order_given(tmp_path: Path, threads: int) -> None:
    reqs = _files(tmp_path, 30)
    st = run_transfers("stage-in", reqs, ONCE, threads)
    if threads == 1:
        assert [r.lfn for r in st.results] == [q.lfn for q in reqs]
    assert sorted(r.lfn for r in st.results) == sorted(q.lfn for q in reqs)
    assert st.files == 30 and not st.interrupted and st.error is None
    assert all(Path(q.dst).read_bytes() == b"%d" % i * 100 for i, q in enumerate(reqs))


@pytest.mark.parametrize("threads", [1, 4])
def test_a_failure_stops_what_has_not_started(tmp_path: Path, threads: int) -> None:
    reqs = _files(tmp_path, 41, missing=(0,))
    cancel = threading.Event()
    with pytest.raises(StageError) as ei:
        run_transfers("stage-in", reqs, ONCE, threads, cancel)
    st = ei.value.stage
    assert st is not None and st.error == str(ei.value) and "f0" in st.error
    assert [r.lfn for r in st.results if not r.success] == ["f0"]
    assert st.interrupted and cancel.is_set()  # the phase was stopped, not finished
    if threads == 1:  # one worker: nothing after the failure was tried
        assert len(st.results) == 1 and not any(Path(q.dst).exists() for q in reqs)
    else:
        assert len(st.results) < 41


@pytest.mark.parametrize("threads", [1, 4])
def test_without_stop_on_error_every_file_is_tried(tmp_path: Path, threads: int) -> None:
    reqs = _files(tmp_path, 12, missing=(2, 7))
    cancel = threading.Event()
    with pytest.raises(StageError) as ei:
        run_transfers("stage-in", reqs, ONCE, threads, cancel, stop_on_error=False)
    st = ei.value.stage
    assert len(st.results) == 12 and st.files == 10 and not cancel.is_set()
    assert {r.lfn for r in st.results if not r.success} == {"f2", "f7"}
    if threads == 1:
        assert "f2" in str(ei.value)  # the first failure, in the order given


class _Stop(BaseException):
    """What a command's signal policy raises in the main thread."""


@pytest.mark.parametrize("threads", [1, 4])
def test_a_stop_in_the_main_thread_ends_the_transfers_and_leaves_nothing(
        tmp_path: Path, threads: int) -> None:
    body = os.urandom(1 << 20)
    dst = tmp_path / "dst"
    dst.mkdir()

    def stop(_signum: int, _frame: object) -> None:
        raise _Stop

    old = signal.signal(signal.SIGALRM, stop)
    with FaultServer() as srv:
        # 64 KiB, then nothing for 30 s: the transfer is under way when the stop comes
        reqs = [Request(f"s{i}", ((srv.add(f"/s{i}", body, faults=["stall:65536:30"]),
                                   True),), str(dst / f"s{i}")) for i in range(threads)]
        cancel = threading.Event()

        def signal_once_under_way() -> None:
            deadline = time.monotonic() + 20
            while (sum(srv.hits(f"/s{i}") for i in range(threads)) < threads
                   and time.monotonic() < deadline):
                time.sleep(0.01)
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGALRM)

        sender = threading.Thread(target=signal_once_under_way)
        t0 = time.monotonic()
        sender.start()
        try:
            with pytest.raises(_Stop):
                run_transfers("stage-in", reqs, Policy(attempts=1, timeout=60.0), threads,
                              cancel)
        finally:
            sender.join()
            signal.signal(signal.SIGALRM, old)
        took = time.monotonic() - t0
        assert [srv.hits(f"/s{i}") for i in range(threads)] == [1] * threads
    assert took < 10, took  # not the 30 s stall, nor the 60 s timeout
    assert cancel.is_set()
    assert not any(t.name.startswith("fluxlite-stage-in") for t in threading.enumerate())
    assert os.listdir(dst) == []  # no partial file, no temporary


class _Boom(Exception):
    """A signal policy's exception that is an Exception, as the runner's Interrupted is."""


class _SignallingStream(io.StringIO):
    """A log stream that, while a retry is being logged, has a signal delivered (as a TERM
    arriving just then would be)."""

    armed = True  # off before the test puts the default handler (which ends the process) back

    def write(self, s: str) -> int:
        if "retrying" in s and self.armed:
            os.kill(os.getpid(), signal.SIGUSR2)
            time.sleep(0.2)  # the policy runs here if this is the thread signals run in
        return super().write(s)


@pytest.mark.parametrize("threads", [1, 4])
def test_a_signal_during_a_transfers_logging_is_not_lost(tmp_path: Path, threads: int) -> None:
    """logging's StreamHandler swallows an Exception raised in its emit: a signal policy's
    exception must land in the calling thread's wait, not in a transfer's log line."""
    cancel = threading.Event()

    def policy(_signum: int, _frame: object) -> None:
        cancel.set()
        raise _Boom

    log = logging.getLogger("fluxlite.staging.base")
    stream = _SignallingStream()
    handler = logging.StreamHandler(stream)
    old_level, old = log.level, signal.signal(signal.SIGUSR2, policy)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with FaultServer() as srv:
            reqs = [Request(f"u{i}", ((srv.add(f"/u{i}", b"x", status=503), True),),
                            str(tmp_path / f"u{i}")) for i in range(threads)]
            t0 = time.monotonic()
            with pytest.raises(_Boom):
                run_transfers("stage-in", reqs, Policy(attempts=3, backoff=30.0,
                                                       max_backoff=30.0), threads, cancel)
            assert time.monotonic() - t0 < 10  # not after the retries
    finally:
        stream.armed = False
        log.removeHandler(handler)
        log.setLevel(old_level)
        signal.signal(signal.SIGUSR2, old)
