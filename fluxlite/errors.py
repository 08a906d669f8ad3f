"""The exception tree of fluxlite: every user-facing failure is one of these.

Each class carries the process exit code the command line uses for it; the message is a
single lower-case line that names the thing at fault.
"""

from __future__ import annotations

# Exit codes shared by every front end (documented in the README). A task's own exit code
# passes through unchanged, so 71, 126, 127 and 129-255 may also be the task's: the record
# (task status, failed phase) tells them apart; 128+N is a signal N (SIGNAL_BASE + N).
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INFRA = 71  # a failure outside the task, as PegasusLite >= 5.1.3 reports it
EXIT_CANNOT_EXEC = 127  # the task could not be started (or its stdio not opened)
SIGNAL_BASE = 128


class FluxliteError(Exception):
    """Root of all fluxlite errors."""

    exit_code = EXIT_INFRA

    def __init__(self, message: str = "", **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class UsageError(FluxliteError):
    exit_code = EXIT_USAGE


class SpecError(FluxliteError):
    """An invalid job description; holds every problem found, each with its JSON path."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__("; ".join(self.problems))

    def __str__(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:
            return prefix + self.problems[0]
        return prefix + f"{len(self.problems)} problems: " + "; ".join(self.problems)


class WorkdirError(FluxliteError):
    pass


class StageError(FluxliteError):
    """A transfer failed on every source and attempt."""

    def __init__(self, message: str, lfn: str = "", permanent: bool = False) -> None:
        super().__init__(message, lfn=lfn)
        self.lfn = lfn
        self.permanent = permanent


class IntegrityError(StageError):
    """Data arrived but its sha256 is not the one expected."""

    def __init__(self, lfn: str, expected: str, actual: str, where: str = "") -> None:
        msg = f"{lfn}: checksum mismatch: expected sha256 {expected}, got {actual}"
        if where:
            msg += f" ({where})"
        super().__init__(msg, lfn=lfn, permanent=True)
        self.expected = expected
        self.actual = actual


class ExecError(FluxliteError):
    """The task's executable could not be started."""

    exit_code = EXIT_CANNOT_EXEC


class Interrupted(FluxliteError):
    """fluxlite itself received a terminating signal outside the task."""

    def __init__(self, signum: int, phase: str) -> None:
        import signal as _signal

        name = _signal.Signals(signum).name
        super().__init__(f"interrupted by {name} during {phase}")
        self.signum = signum
        self.phase = phase
        self.exit_code = SIGNAL_BASE + signum


class FluxUnavailable(FluxliteError):
    """A Flux feature was asked for without a Flux instance or the Python bindings."""

    exit_code = EXIT_INFRA
