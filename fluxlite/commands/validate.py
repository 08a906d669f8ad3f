"""fluxlite validate job.json"""

from __future__ import annotations

import argparse
import sys

from fluxlite.errors import SpecError
from fluxlite.spec import JobSpec, preflight, preflight_warnings


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command line of ``fluxlite validate``."""
    p.add_argument("job", nargs="+", help="job descriptions to check")


def main(args: argparse.Namespace) -> int:
    """Every problem of every file, one line each: the document's, then what can be known
    to fail before the job starts (meta files, destinations, the executable); then, for a
    valid file, warnings of what may still be put right before it runs (exit code 0)."""
    failed: SpecError | None = None
    for path in args.job:
        try:
            spec = JobSpec.from_file(path)
            problems = preflight(spec)
            if problems:
                raise SpecError(problems, source=path)
            warnings = preflight_warnings(spec)
        except SpecError as err:
            sys.stderr.write("".join(line + "\n" for line in err.lines()))
            failed = err
            continue
        sys.stderr.write("".join(f"{path}: warning: {w}\n" for w in warnings))
        if not args.quiet:
            sys.stdout.buffer.write(f"{path}: ok\n".encode("utf-8", "surrogateescape"))
    sys.stdout.flush()
    return failed.exit_code if failed else 0
