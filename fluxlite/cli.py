"""The command line: parse, delegate, turn every failure into one line and an exit code.

Each subcommand lives in ``fluxlite.commands.<name>`` with ``add_arguments(parser)`` and
``main(args) -> int``; only the module of the command being run is imported, so that
``fluxlite run`` starts fast.

Standard output is watched here, for every command at once: a reader that went away
(``fluxlite --help | head -3``) ends the command quietly with 141, 128+SIGPIPE, what a shell
reports for any program its pipe's reader left; a write that fails otherwise (a full
filesystem, ``>/dev/full``) is one line and 71. What is still buffered is flushed before
the exit code is decided, never by the interpreter on its way out.
"""

from __future__ import annotations

import argparse
import errno
import gc
import importlib
import io
import logging
import os
import signal
import sys

from fluxlite.version import __version__
from fluxlite.errors import EXIT_INFRA, EXIT_USAGE, SIGNAL_BASE, FluxliteError
from fluxlite.signals import exit_now

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

COMMANDS: dict[str, str] = {
    "run": "run a job described by a job.json",
    "validate": "check a job.json and report every problem",
    "kickstart": "pegasus-kickstart compatible front end: run a command, write its record",
    "transfer": "pegasus-transfer compatible: run a JSON transfer list",
    "integrity": "pegasus-integrity compatible: verify or generate sha256 checksums",
    "pegasus-home": "make a Pegasus worker package (PEGASUS_HOME) of fluxlite's tools",
    "cluster": "run a cluster of tasks (PMC DAG, pegasus-cluster list, JSON job list)",
    "submit": "submit `fluxlite run job.json` to Flux as a batch job",
    "batch-script": "print a batch script for a job, in the shape HTCondor's BLAHP writes",
    "stats": "totals, per-transformation and per-host tables from job and cluster records",
    "report": "one self-contained HTML report (timeline, concurrency, failures) from records",
}
ALIASES = {"batch_script": "batch-script", "pegasus_home": "pegasus-home"}


class RedactingFormatter(logging.Formatter):
    """Log lines with every URL's credentials and secret parameters hidden."""

    def format(self, record: logging.LogRecord) -> str:
        """The log line with secrets hidden."""
        from fluxlite.redact import text

        return text(super().format(record))


def setup_logging(verbosity: int) -> None:
    """Configure fluxlite's log handler on stderr: -1 warnings only, 0 info, 1 debug."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger("fluxlite")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _top_help() -> str:
    lines = ["usage: fluxlite [--version] COMMAND [options]", "",
             "fluxlite runs workflow jobs: stage-in with checksums, a monitored task, "
             "stage-out, and Pegasus-compatible records.", "", "commands:"]
    lines += [f"  {name:<13} {text}" for name, text in COMMANDS.items()]
    lines += ["", "`fluxlite COMMAND --help` describes a command."]
    return "\n".join(lines)


def terminal_width() -> int:
    """The columns of the terminal on standard output, as shutil.get_terminal_size() gives
    them: $COLUMNS when it is a positive number, else the terminal's, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class HelpFormatter(argparse.HelpFormatter):
    """argparse's own formatter, given its width: argparse would import shutil for it (and
    shutil imports zlib, bz2 and lzma) at every add_argument, a cost to every run."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None, **kw: Any) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         terminal_width() - 2 if width is None else width, **kw)


def common_arguments(p: argparse.ArgumentParser) -> None:
    """The -v/-q options every subcommand takes."""
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log detail")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")


EXIT_PIPE_CLOSED = SIGNAL_BASE + signal.SIGPIPE  # 141, as a shell reports `yes | head`


class StdoutLost(OSError):
    """Standard output could not be written (its errno and text are the write's)."""


class StdoutClosed(BrokenPipeError, StdoutLost):
    """Standard output's reader went away."""


class _WatchedStdout(io.FileIO):
    """Descriptor 1, whose failed writes are told apart from every other OSError."""

    lost: StdoutLost | None = None

    def write(self, b):  # noqa: ANN001, ANN201 - io.FileIO's own signature
        try:
            return super().write(b)
        except OSError as err:
            cls = StdoutClosed if err.errno == errno.EPIPE else StdoutLost
            lost = cls(err.errno, err.strerror)
            self.lost = lost
            raise lost from err


def _watch_stdout() -> _WatchedStdout | None:
    """Put a watched stream in place of sys.stdout (when it is descriptor 1 itself)."""
    out = sys.stdout
    try:
        if out is None or out is not sys.__stdout__ or out.fileno() != 1:
            return None  # closed, or not ours (a caller's capture): left as it is
    except (OSError, ValueError):
        return None
    out.flush()
    raw = _WatchedStdout(1, "w", closefd=False)
    # buffered as before (python -u and PYTHONUNBUFFERED leave the bytes unbuffered)
    binary = io.BufferedWriter(raw) if isinstance(out.buffer, io.BufferedWriter) else raw
    sys.stdout = io.TextIOWrapper(binary, encoding=out.encoding, errors=out.errors,
                                  line_buffering=out.line_buffering,
                                  write_through=out.write_through)
    return raw


def _discard_stdout() -> None:
    """Send what is still buffered for descriptor 1 nowhere, so that the interpreter's own
    flush at exit finds nothing to fail on (Python's documented way with a closed pipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
    finally:
        os.close(devnull)


def _stdout_ending(rc: int, raw: _WatchedStdout | None, escaped: StdoutLost | None) -> int:
    """The exit code once standard output is flushed. A write failure that escaped the
    command, or that a command ending 0 met, lost output: 141 for a closed pipe (quietly),
    else one line and 71. A command that failed has said why: its own code stays."""
    lost = escaped
    if lost is None and raw is not None:
        try:
            sys.stdout.flush()
        except StdoutLost:
            pass
        lost = raw.lost
    if lost is None:
        return rc
    _discard_stdout()
    if escaped is None and rc != 0:
        return rc
    if isinstance(lost, BrokenPipeError):
        return EXIT_PIPE_CLOSED
    sys.stderr.write(f"fluxlite: error: cannot write to standard output: "
                     f"{lost.strerror or lost}\n")
    return EXIT_INFRA


def main(argv: list[str] | None = None, *, program: bool | None = None) -> int:
    """The ``fluxlite`` entry point: run one subcommand, return its exit code.

    ``program``: this is the process's own command line (by default, when ``argv`` is
    None), so the objects its start makes may be frozen out of the cyclic collector
    (:func:`_import_command`); a caller of main() in its own process keeps its collector
    as it was."""
    saved = sys.stdout
    raw = _watch_stdout()
    rc, escaped = EXIT_INFRA, None
    try:
        rc = _main(argv, argv is None if program is None else program)
    except SystemExit as stop:  # argparse's --help and usage errors
        rc = stop.code if isinstance(stop.code, int) else EXIT_USAGE if stop.code else 0
    except StdoutLost as err:
        escaped = err
    finally:
        rc = _stdout_ending(rc, raw, escaped)
        if raw is not None:
            sys.stdout = saved
    return rc


def program() -> None:
    """The ``fluxlite`` command (console script and ``python -m fluxlite``): :func:`main`
    on this process's command line, then :func:`exit_now`."""
    exit_now(main())


def _main(argv: list[str] | None, program: bool) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_top_help())
        return 0 if argv else EXIT_USAGE
    if argv[0] in ("-V", "--version"):
        print(f"fluxlite {__version__}")
        return 0
    name = ALIASES.get(argv[0], argv[0])
    if name not in COMMANDS:
        sys.stderr.write(f"fluxlite: error: unknown command '{argv[0]}' "
                         f"(commands: {', '.join(COMMANDS)})\n")
        return EXIT_USAGE
    module = _import_command(name) if program else _module(name)
    if hasattr(module, "main_argv"):  # commands with a command line of their own
        return _guard(lambda: module.main_argv(argv[1:]))
    args = command_parser(name).parse_args(argv[1:])
    setup_logging(-1 if args.quiet else args.verbose)
    return _guard(lambda: module.main(args))


def _import_command(name: str):  # noqa: ANN202 - a command's module
    """The command's module, imported with the cyclic collector paused, then what the
    start made frozen and the collector started: a start makes tens of thousands of
    objects (modules, classes, functions) that live as long as the process, and collecting
    while they are made (some twenty times, 4-5 ms of a short job) finds nothing; frozen,
    they are never scanned again by the collections that follow. ``python -m fluxlite``
    pauses it from the first import on (fluxlite/__main__.py)."""
    gc.disable()
    try:
        return _module(name)
    finally:
        gc.freeze()
        gc.enable()


def _module(name: str):  # noqa: ANN202 - a command's module
    return importlib.import_module(f"fluxlite.commands.{name.replace('-', '_')}")


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``fluxlite NAME``'s options (not kickstart's: its command line is
    pegasus-kickstart's own, read by fluxlite.kickstart_args). Options are never
    abbreviated: a drop-in or a script that mistypes one hears of it."""
    module = _module(name)
    if hasattr(module, "parser"):  # a command line of its own, in argparse
        return module.parser()
    parser = argparse.ArgumentParser(prog=f"fluxlite {name}", description=COMMANDS[name],
                                     allow_abbrev=False, formatter_class=HelpFormatter)
    common_arguments(parser)
    module.add_arguments(parser)
    return parser


def _guard(fn) -> int:  # noqa: ANN001
    """Run a command; every fluxlite error becomes its line(s) on stderr and its exit code."""
    from fluxlite.redact import text as redact_text

    try:
        return int(fn())
    except FluxliteError as err:
        for line in err.lines():
            sys.stderr.write(redact_text(f"fluxlite: error: {line}") + "\n")
        return err.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("fluxlite: interrupted\n")
        return SIGNAL_BASE + signal.SIGINT
    except BrokenPipeError as err:
        if isinstance(err, StdoutLost):
            raise  # standard output's: main() ends it
        sys.stderr.write(f"fluxlite: error: {err.strerror or err}\n")
        return EXIT_INFRA


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
