"""fluxlite report PATH... -o report.html: one self-contained HTML report from records.

Exit codes: 0 when the report was written, 1 when no record was found, 2 for bad usage,
71 when the report could not be written.
"""

from __future__ import annotations

import argparse


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
    from fluxlite.stats.write import write

    write(args.paths, args.output, title=args.title, png=args.png, svg=args.svg,
          colour=args.colour, quiet=args.quiet)
    return 0
