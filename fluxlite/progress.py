"""A progress line: one line updated in place on a terminal, plain lines otherwise.

On a terminal the line is redrawn (carriage return, erase to the end of the line) at most
``tty_interval`` apart; a log record written meanwhile first erases it, so that the record
starts on a clean line, and the next update draws the line again below it. Elsewhere (a
file, a pipe, a batch system's log) a plain line is written at most ``interval`` apart, and
only when the figures changed. ``close`` leaves the last figures on the terminal.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import TextIO

logger = logging.getLogger(__name__)


def _secs(s: float) -> str:
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s // 60:.0f}m{s % 60:02.0f}s"
    return f"{s // 3600:.0f}h{s % 3600 // 60:02.0f}m"


def _bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class _Eraser(logging.Filter):
    """On the handlers that write to the line's stream: erase the line before a record."""

    def __init__(self, line: Progress) -> None:
        super().__init__()
        self.line = line

    def filter(self, record: logging.LogRecord) -> bool:
        self.line.erase()
        return True


class Progress:
    """A progress line on stderr: redrawn in place on a terminal, a line every ``interval``
    seconds elsewhere."""

    def __init__(self, label: str, stream: TextIO | None = None, *,
                 terminal: bool | None = None, interval: float = 10.0,
                 tty_interval: float = 0.2, plain: bool = True) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        if terminal is None:
            try:
                terminal = self.stream.isatty()
            except (AttributeError, ValueError):
                terminal = False
        self.terminal = terminal
        self.interval = tty_interval if terminal else interval
        self.plain = plain
        self.t0 = time.monotonic()
        # a terminal shows the line at once; plain lines start after the first interval,
        # so that what ends quickly says nothing more than it did
        self._last = -1e9 if terminal else self.t0
        self._said: tuple[object, ...] = ()
        self._shown = False  # the line is on the terminal now
        self._lock = threading.Lock()
        self._handlers: list[logging.Handler] = []
        if terminal:
            root = logging.getLogger("fluxlite")
            self._eraser = _Eraser(self)
            for h in root.handlers:
                if getattr(h, "stream", None) is self.stream:
                    h.addFilter(self._eraser)
                    self._handlers.append(h)

    @classmethod
    def for_terminal(cls, label: str, stream: TextIO | None = None) -> Progress | None:
        """A live line when ``stream`` (stderr) is a terminal and info is shown, else None."""
        p = cls(label, stream, plain=False)
        if not p.terminal or not logging.getLogger("fluxlite").isEnabledFor(logging.INFO):
            p.close()
            return None
        return p

    # -- what the line says --------------------------------------------------------------
    def text(self, done: int, total: int | None, running: int = 0, failed: int = 0,
             nbytes: int | None = None, nbytes_total: int | None = None) -> str:
        """The progress line for these counts: done, running, failed, rates and bytes."""
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        ended = done + failed
        parts = [f"{done}/{total} done" if total is not None else f"{done} done",
                 f"{running} running", f"{failed} failed"]
        rate = ended / elapsed
        if nbytes is not None:
            brate = nbytes / elapsed
            parts.append(_bytes(nbytes) + (f" of {_bytes(nbytes_total)}" if nbytes_total
                                           else "") + f" at {_bytes(brate)}/s")
        else:
            parts.append(f"{rate:.1f}/s")
        eta: float | None = None
        if nbytes_total and nbytes and nbytes < nbytes_total:
            eta = (nbytes_total - nbytes) / (nbytes / elapsed)
        elif total is not None and ended and ended < total:
            eta = (total - ended) / rate
        if eta is not None:
            parts.append(f"ETA {_secs(eta)}")
        return f"{self.label}: " + ", ".join(parts) + f" ({_secs(elapsed)})"

    def update(self, done: int, total: int | None, running: int = 0, failed: int = 0,
               nbytes: int | None = None, nbytes_total: int | None = None,
               force: bool = False) -> None:
        """Show the counts, at most once an interval (``force``: now)."""
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        line = self.text(done, total, running, failed, nbytes, nbytes_total)
        with self._lock:
            if self.terminal:
                width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
                self._write("\r\x1b[K" + line[:width])
                self._shown = True
            elif self.plain:
                key = (done, total, running, failed, nbytes)  # the figures, not the rates
                if key == self._said:
                    return
                self._said = key
                self._write(line + "\n")
            self._last = now

    def erase(self) -> None:
        """Clear the terminal line, so that a log line can be written cleanly."""
        with self._lock:
            if self._shown:
                self._write("\r\x1b[K")
                self._shown = False

    def close(self) -> None:
        """Keep the last figures: end the terminal line."""
        with self._lock:
            if self._shown:
                self._write("\n")
                self._shown = False
        for h in self._handlers:
            h.removeFilter(self._eraser)
        self._handlers = []

    def _write(self, s: str) -> None:
        try:
            self.stream.write(s)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stderr must not end the work being reported


class TransferProgress(Progress):
    """The progress of a set of transfers, fed with the results so far (``run_transfers``'s
    ``on_progress``): files done and failed, bytes of the files done."""

    def __init__(self, label: str, total: int, threads: int = 0,
                 stream: TextIO | None = None, interval: float = 10.0) -> None:
        shown = logging.getLogger("fluxlite").isEnabledFor(logging.INFO)
        super().__init__(label, stream, interval=interval, plain=shown)
        if not shown and self.terminal:  # -q: no line at all
            self.close()
            self.terminal = False
        self.total = total
        from fluxlite.staging.phases import default_threads

        self.workers = min(total, threads or default_threads()) if total else 0

        self._stage: object = None

    def close(self) -> None:
        """Show the last figures, then end the line."""
        if self._shown and self._stage is not None:
            self._show(self._stage, force=True)  # the last figures, whatever the rate
        super().close()

    def __call__(self, stage: object) -> None:
        self._stage = stage
        self._show(stage)

    def _show(self, stage: object, force: bool = False) -> None:
        results = getattr(stage, "results", ())
        done = sum(1 for r in results if r.success)
        failed = len(results) - done
        nbytes = sum(r.bytes for r in results if r.success)
        running = min(self.workers, self.total - len(results))
        self.update(done, self.total, running, failed, nbytes=nbytes, force=force)
