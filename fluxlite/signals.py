"""fluxlite's own signal handlers: installed and restored in one place, with a policy.

Every command that must not die half-way (run, kickstart, cluster, transfer) installs its
handlers through :class:`Handlers`: a policy callback gets the signal number and decides
(forward it to the task, stop a phase, note it for later). A policy that must end what the
main thread is doing raises :class:`Stop`; it is a ``BaseException`` so that no ``except
Exception`` on the way (logging's own ``emit`` among them) swallows it, and the command turns
it into its one-line error where it handles errors.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable

from fluxlite.errors import SIGNAL_BASE
from fluxlite.lazylog import get_logger

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = get_logger(__name__)

#: The signals that stop a command, its one set (run, kickstart, cluster, transfer, a nested
#: instance being started, a pool worker and its guard): TERM, INT and HUP (a cancel, ^C, a
#: lost terminal), QUIT, ALRM (Flux's job shell at the time limit) and XCPU (a CPU-time
#: limit).
STOP_SIGNALS: tuple[signal.Signals, ...] = (
    signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGALRM,
    signal.SIGXCPU)
#: Flux's warning that the time limit is near (``--signal``): each command's own, not a stop
WARNING_SIGNAL = signal.SIGUSR1
#: every signal a command that must not die half-way handles
HANDLED_SIGNALS = (*STOP_SIGNALS, WARNING_SIGNAL)

Policy = Callable[[int], None]


class Stop(BaseException):  # noqa: N818 - a request to stop, not an error
    """Raised by a policy to end what the main thread is doing because of ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.exit_code = SIGNAL_BASE + signum


class Handlers:
    """``policy(signum)`` as the handler of ``signals`` until :meth:`restore`.

    Installing is a no-op outside the main thread (Python delivers signals there only);
    a signal that cannot be handled here (not valid on this system) is skipped. Also a
    context manager: installed on entry, restored on exit. A command whose parts take turns
    (a cluster's startup, its scheduler, its shutdown) keeps one and hands the policy from
    one part to the next (:meth:`hand_over`)."""

    def __init__(self, signals: Iterable[int], policy: Policy) -> None:
        self.signals = tuple(signals)
        self.policy = policy
        self.old: dict[int, Any] = {}

    def install(self) -> Handlers:
        """Put the policy in place; the previous handlers are kept for :meth:`restore`."""
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in self.signals:
            try:
                self.old[sig] = signal.signal(sig, self._handle)
            except (OSError, ValueError):
                pass
        return self

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        for sig, old in self.old.items():
            try:
                signal.signal(sig, old)
            except (OSError, ValueError):
                pass
        self.old.clear()

    def hand_over(self, policy: Policy) -> None:
        """Make ``policy`` decide from now on. The handlers stay installed: a signal that
        comes in the change is the old policy's or the new one's, never lost, never
        handled by Python's default."""
        self.policy = policy

    def _handle(self, signum: int, _frame: object) -> None:
        self.policy(signum)

    def __enter__(self) -> Handlers:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()


def exit_now(code: int) -> None:
    """End this process with ``code`` as a normal exit would, but without the interpreter's
    teardown, which frees every object the process made one by one (10-15 ms of a cluster
    of a few thousand tasks) where the kernel frees them at once: the end of a command
    (``fluxlite.cli.program``) and of a pool worker's guard. The exit functions run first
    (logging's shutdown among them) and stdout and stderr are flushed. While another thread
    runs, it is a normal exit, which waits for it; and under a profiler, a tracer or a
    debugger (``python -m cProfile -m fluxlite``...), which reports at the normal end."""
    import atexit

    threading = sys.modules.get("threading")
    run_exit = getattr(atexit, "_run_exitfuncs", None)
    if (run_exit is None or (threading is not None and threading.active_count() > 1)
            or sys.getprofile() is not None or sys.gettrace() is not None):
        raise SystemExit(code)
    run_exit()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with the descriptor closed
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            pass  # what was lost was said (_stdout_ending), or the stream is closed
    os._exit(code)
