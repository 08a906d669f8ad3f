"""fluxlite report PATH... -o report.html: one self-contained HTML report from records.

Exit codes: 0 when the report was written, 1 when no record was found, 2 for bad usage,
71 when the report could not be written.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from fluxlite.errors import NoRecords

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command line of ``fluxlite report``."""
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="record files, directories (searched recursively) or globs, as for "
                        "fluxlite stats")
    p.add_argument("-o", "--output", metavar="FILE", default="report.html",
                   help="the HTML file to write (default: report.html)")
    p.add_argument("--title", help="the report's title (default: the paths)")
    p.add_argument("--png", metavar="FILE", help="also write the timeline as a PNG image "
                   "(needs matplotlib: pip install 'fluxlite-runtime[plot]')")
    p.add_argument("--svg", metavar="FILE", help="also write the timeline as an SVG image")
    p.add_argument("--colour", "--color", choices=("transformation", "outcome"),
                   default="transformation", help="the images' colours (default: by "
                   "transformation)")


def main(args: argparse.Namespace) -> int:
    """Write the HTML report of the records found; NoRecords when there are none."""
    from fluxlite.errors import FluxliteError, UsageError
    from fluxlite.fsutil import write_atomic
    from fluxlite.stats import read, report, tables

    images = [p for p in (args.png, args.svg) if p]
    for path in [args.output, *images]:
        d = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(d):
            raise UsageError(f"cannot write {path}: no directory {d}")
    plot = None
    if images:
        from fluxlite.stats import plot as plot_module

        plot = plot_module
        plot.require()  # before the reading, which may take a while
    col = read.load(args.paths, sys.stderr, quiet=args.quiet)
    if not col.attempts and not col.clusters:
        raise NoRecords(args.paths)
    attempts = list(col.attempts.values())
    stats = tables.compute(attempts, col.clusters)
    doc = report.build(attempts, stats, args.title or "fluxlite report: " + " ".join(args.paths))
    try:
        write_atomic(args.output, report.render(doc), parents=False)
    except OSError as err:
        raise FluxliteError(f"cannot write the report {args.output}: {err.strerror}") from err
    logger.info("report %s: %d attempts of %d tasks in %d lanes", args.output, doc["n"],
                stats["summary"]["tasks"], len(doc["lanes"]))
    if plot is not None:
        for path in images:
            try:
                plot.timeline(doc, path, by=args.colour)
            except OSError as err:
                raise FluxliteError(f"cannot write the image {path}: {err.strerror}") from err
            logger.info("timeline image %s", path)
    return 0
