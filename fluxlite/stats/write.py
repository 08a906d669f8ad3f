"""``fluxlite report``'s work: the records read, the page built and written, and the
timeline drawn when images are asked for (above both the page and the plot, which share
the page's colours)."""

from __future__ import annotations

import logging
import os
import sys

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger("fluxlite.stats.report")


def write(paths: list[str], output: str, *, title: str | None = None, png: str | None = None,
          svg: str | None = None, colour: str = "transformation", stderr: Any = None,
          quiet: bool = False) -> None:
    """``fluxlite report``: the HTML report of the records under ``paths`` written to
    ``output`` (and its timeline as a PNG and an SVG image when asked, coloured by
    ``colour``); what held no record is said on ``stderr`` as :func:`read.load` says it.
    Refused before anything is read: an output whose directory is not there (UsageError),
    images without matplotlib. NoRecords when there is no record; a FluxliteError naming
    the file when one cannot be written."""
    from fluxlite.errors import FluxliteError, UsageError
    from fluxlite.fsutil import write_atomic
    from fluxlite.stats import read, report, tables

    images = [p for p in (png, svg) if p]
    for path in [output, *images]:
        d = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(d):
            raise UsageError(f"cannot write {path}: no directory {d}")
    plot = None
    if images:
        from fluxlite.stats import plot as plot_module

        plot = plot_module
        plot.require()  # before the reading, which may take a while
    col = read.load(paths, sys.stderr if stderr is None else stderr, quiet=quiet)
    attempts = list(col.attempts.values())
    stats = tables.compute(attempts, col.clusters)
    doc = report.build(attempts, stats, title or "fluxlite report: " + " ".join(paths))
    try:
        write_atomic(output, report.render(doc), parents=False)
    except OSError as err:
        raise FluxliteError(f"cannot write the report {output}: {err.strerror}") from err
    logger.info("report %s: %d attempts of %d tasks in %d lanes", output, doc["n"],
                stats["summary"]["tasks"], len(doc["lanes"]))
    if plot is not None:
        for path in images:
            try:
                plot.timeline(doc, path, by=colour)
            except OSError as err:
                raise FluxliteError(f"cannot write the image {path}: {err.strerror}") from err
            logger.info("timeline image %s", path)
