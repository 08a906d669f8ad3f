"""fluxlite kickstart: pegasus-kickstart's command line and environment, fluxlite's runner.

A front end only: it parses kickstart's flags, has them read into a job
(:func:`fluxlite.pegasus.kickstart_job.build`) and runs it with kickstart's strategy
(:mod:`fluxlite.pegasus.kickstart`): monitoring, time limits, signal forwarding, Flux job
id, the kickstart 3.0 record.
"""

from __future__ import annotations

import os
import sys

from fluxlite import __version__
from fluxlite.errors import EXIT_CANNOT_EXEC
from fluxlite.kickstart_args import USAGE, KickstartUsage, parse
from fluxlite.pegasus.kickstart import run_kickstart
from fluxlite.pegasus.kickstart_job import build

PROG = "fluxlite kickstart"


def main_argv(argv: list[str]) -> int:
    """``fluxlite kickstart ARGS``: kickstart's command line, run with kickstart's strategy."""
    from fluxlite.cli import setup_logging

    # kickstart says nothing on stderr unless something is wrong: the task's stderr is there
    setup_logging(-1)
    try:
        args = parse(argv)
    except KickstartUsage as err:
        return _usage(str(err), err.show_help)
    if args.version:
        sys.stdout.write(f"{__version__}\n")
        return 0
    if args.help:
        sys.stderr.write(USAGE)
        return EXIT_CANNOT_EXEC
    try:
        spec, opts = build(args, dict(os.environ))
    except KickstartUsage as err:
        return _usage(str(err), err.show_help)
    return run_kickstart(spec, opts)


def console_main() -> None:
    """The ``fluxlite-kickstart`` console script: Pegasus's gridstart.path takes one
    executable, not a command and a subcommand."""
    from fluxlite.cli import main
    from fluxlite.signals import exit_now

    exit_now(main(["kickstart", *sys.argv[1:]], program=True))


def _usage(message: str, show_help: bool) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    if show_help:
        sys.stderr.write(USAGE)
    return EXIT_CANNOT_EXEC
