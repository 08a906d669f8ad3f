"""fluxlite validate job.json"""

from __future__ import annotations

import argparse

from fluxlite.spec import JobSpec


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("job", nargs="+", help="job descriptions to check")


def main(args: argparse.Namespace) -> int:
    from fluxlite.errors import SpecError

    failed: SpecError | None = None
    for path in args.job:
        try:
            JobSpec.from_file(path)
        except SpecError as err:
            import sys

            for problem in err.problems:
                sys.stderr.write(f"{path}: {problem}\n")
            failed = err
            continue
        if not args.quiet:
            print(f"{path}: ok")
    return failed.exit_code if failed else 0
