"""fluxlite stats PATH...: totals, per-transformation and per-host tables from records.

Exit codes: 0 when at least one record was read, 1 when none was, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command line of ``fluxlite stats``."""
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="record files (fluxlite JSON, kickstart YAML, job and cluster "
                        "outputs), directories (searched recursively) or globs")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object")
    fmt.add_argument("--csv", action="store_true",
                     help="CSV: the summary, transformation and host tables, each with its "
                          "header, separated by an empty line")


def main(args: argparse.Namespace) -> int:
    """Print the tables of the records found; NoRecords when there are none."""
    from fluxlite.stats import read, tables

    col = read.load(args.paths, sys.stderr, quiet=args.quiet)
    doc = tables.compute(list(col.attempts.values()), col.clusters)
    if args.json:
        import orjson

        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2
                                             | orjson.OPT_APPEND_NEWLINE))
    elif args.csv:
        sys.stdout.write(tables.to_csv(doc))
    else:
        sys.stdout.write(tables.text(doc))
    sys.stdout.flush()
    return 0
