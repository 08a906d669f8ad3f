"""The progress line: in place on a real terminal (a pty), bounded plain lines elsewhere."""

from __future__ import annotations

import io
import logging
import os
import pty
import time

from fluxlite.progress import Progress, TransferProgress
from fluxlite.staging.base import TransferResult
from fluxlite.staging.phases import StageResult


def _drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            return out
        if not chunk:
            return out
        out += chunk


def test_on_a_terminal_the_line_is_redrawn_in_place() -> None:
    master, slave = pty.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            assert tty.isatty()
            p = Progress("fluxlite cluster", tty, tty_interval=0.05)
            assert p.terminal
            for i in range(1, 6):
                p.update(i, 5, running=5 - i, failed=0, force=True)
            p.close()
            got = _drain(master).decode()
    finally:
        os.close(master)
        os.close(slave)
    # each update goes back to the start of the line and erases it; one newline, at the end
    assert got.count("\r\x1b[K") == 5
    assert got.replace("\r\n", "\n").count("\n") == 1 and got.endswith("\n")
    last = got.rsplit("\r\x1b[K", 1)[1]
    assert last.startswith("fluxlite cluster: 5/5 done, 0 running, 0 failed")


def test_a_log_record_erases_the_line_first() -> None:
    master, slave = pty.openpty()
    root = logging.getLogger("fluxlite")
    old = root.handlers[:], root.level, root.propagate
    try:
        with open(slave, "w", closefd=False) as tty:
            handler = logging.StreamHandler(tty)
            root.handlers[:] = [handler]
            root.setLevel(logging.INFO)
            root.propagate = False
            p = Progress("fluxlite transfer", tty)
            p.update(1, 3, running=2, force=True)
            logging.getLogger("fluxlite.test").warning("a warning")
            p.update(2, 3, running=1, force=True)
            p.close()
            got = _drain(master).decode()
            assert not handler.filters  # close() takes the eraser off
    finally:
        root.handlers[:], root.level, root.propagate = old
        os.close(master)
        os.close(slave)
    before, _, after = got.partition("a warning")
    assert before.endswith("\r\x1b[K"), repr(got)  # the line was erased, then the record
    assert "2/3 done" in after


def test_elsewhere_plain_lines_at_a_bounded_rate_and_never_twice_the_same() -> None:
    buf = io.StringIO()
    p = Progress("fluxlite cluster", buf, interval=0.2)
    assert not p.terminal
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 1.0:
        p.update(i, 10_000, running=4)
        i += 1
        time.sleep(0.002)
    p.close()
    lines = buf.getvalue().splitlines()
    assert i > 100
    assert 3 <= len(lines) <= 6, lines  # about one per 0.2 s, however many updates
    assert all("\r" not in ln and "\x1b" not in ln for ln in lines)
    q = Progress("x", io.StringIO(), interval=0.0)
    q.update(1, 2, force=True)
    q.update(1, 2, force=True)  # same figures: said already
    assert q.stream.getvalue().count("\n") == 1  # type: ignore[attr-defined]


def test_transfer_figures_rate_and_eta() -> None:
    buf = io.StringIO()
    logging.getLogger("fluxlite").setLevel(logging.INFO)
    p = TransferProgress("fluxlite transfer", total=4, threads=2, stream=buf, interval=0.0)
    st = StageResult("transfer")
    st.results = [TransferResult("a", "/x/a", success=True, bytes=3_000_000),
                  TransferResult("b", "/x/b", success=False, error="boom")]
    p.t0 -= 2.0  # two seconds in
    p(st)
    line = buf.getvalue()
    assert line.startswith("fluxlite transfer: 1/4 done, 2 running, 1 failed, 3.0 MB at ")
    assert "1.5 MB/s, ETA 2s" in line  # 2 of 4 ended in 2 s
