"""The exception tree of fluxlite and the one table of exit codes every command uses.

Each class carries the process exit code the command line uses for it and declares its
details as constructor fields; the message is a single lower-case line that names the thing
at fault. Nothing outside a class sets attributes on its instances, and no decision reads
an error's message text.
"""

from __future__ import annotations

import signal as _signal

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

# The exit codes of every front end (documented in the README and docs/architecture.md).
# A task's own exit code passes through unchanged, so 71, 126, 127 and 129-255 may also be
# the task's: the record (task status, failed phase) tells them apart.
EXIT_OK = 0
EXIT_FAILED = 1  # the Pegasus tools' "something failed" (transfer, integrity, stats, report)
EXIT_USAGE = 2  # a bad command line or job description
EXIT_TASK_FAILED = 5  # a cluster: at least one task failed, as pegasus-cluster reports it
# stopped by a time limit: SIGALRM's number, as pegasus-kickstart reports its -k timeout
EXIT_TIME_LIMIT = int(_signal.SIGALRM)
EXIT_INFRA = 71  # a failure outside the task, as PegasusLite >= 5.1.3 reports it
EXIT_CANNOT_EXEC = 127  # the task could not be started; kickstart's code for any failure
SIGNAL_BASE = 128  # 128+N: ended by signal N


def one_line(text: str) -> str:
    """A message that stays one line whatever names it quotes: characters that are not
    printable (line and paragraph separators, controls, lone surrogates) are escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                   for c in text)


class FluxliteError(Exception):
    """Root of all fluxlite errors: a one-line message and the exit code it ends with."""

    exit_code = EXIT_INFRA

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def lines(self) -> list[str]:
        """What the command line prints for this error, one line each."""
        return [str(self)]

    def __str__(self) -> str:
        return self.message


class UsageError(FluxliteError):
    """A command line that cannot be acted on."""

    exit_code = EXIT_USAGE


class SpecError(FluxliteError):
    """An invalid job description; holds every problem found, each with its JSON path."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        super().__init__("; ".join(self.problems))

    def lines(self) -> list[str]:
        """One line per problem, each prefixed with the file it is about."""
        prefix = f"{self.source}: " if self.source else ""
        return [prefix + p for p in self.problems]

    def __str__(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:
            return prefix + self.problems[0]
        return prefix + f"{len(self.problems)} problems: " + "; ".join(self.problems)


class WorkdirError(FluxliteError):
    """The worker directory cannot be made, entered or cleaned up."""


class StageError(FluxliteError):
    """A transfer failed on every source and attempt.

    ``permanent``: retrying cannot help; ``missing``: the source says it has no such file;
    ``destination``: the destination, not the source, is at fault (no other source helps);
    ``result``: the file's transfer result (its attempts), when there is one; ``stage``: the
    whole staging phase's result, when the error ended a phase.
    """

    def __init__(self, message: str, lfn: str = "", permanent: bool = False,
                 missing: bool = False, destination: bool = False, result: Any = None,
                 stage: Any = None) -> None:
        super().__init__(message)
        self.lfn = lfn
        self.permanent = permanent
        self.missing = missing
        self.destination = destination
        self.result = result
        self.stage = stage

    def ending(self, stage: Any) -> StageError:
        """This error as the one that ended a staging phase whose result is ``stage``."""
        self.stage = stage
        return self


class IntegrityError(StageError):
    """Data arrived but its sha256 is not the one expected."""

    def __init__(self, lfn: str, expected: str, actual: str, where: str = "",
                 result: Any = None) -> None:
        msg = f"{lfn}: checksum mismatch: expected sha256 {expected}, got {actual}"
        if where:
            msg += f" ({where})"
        super().__init__(msg, lfn=lfn, permanent=True, result=result)
        self.expected = expected
        self.actual = actual


class ExecError(FluxliteError):
    """The task's executable could not be started."""

    exit_code = EXIT_CANNOT_EXEC


class Interrupted(FluxliteError):
    """fluxlite itself received a terminating signal outside the task."""

    def __init__(self, signum: int, phase: object) -> None:
        super().__init__(f"interrupted by {_signal.Signals(signum).name} during {phase}")
        self.signum = signum
        self.phase = phase
        self.exit_code = SIGNAL_BASE + signum


class ContainerError(FluxliteError):
    """The container could not be prepared or started: an infrastructure failure."""

    exit_code = EXIT_INFRA

    def __init__(self, message: str, runtime: str = "") -> None:
        super().__init__(message)
        self.runtime = runtime


class FluxUnavailable(FluxliteError):
    """A Flux feature was asked for without a Flux instance or the Python bindings."""


class NoRecords(FluxliteError):
    """Nothing to report: no record was found in the paths given."""

    exit_code = EXIT_FAILED

    def __init__(self, paths: list[str]) -> None:
        super().__init__("no record found in " + " ".join(paths))
        self.paths = list(paths)
