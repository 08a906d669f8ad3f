"""The timeline as an image (PNG, SVG, PDF: matplotlib's choice by the file's suffix).

matplotlib is an optional extra (``pip install 'fluxlite-runtime[plot]'``). All the bars of one
colour are one collection, which keeps 100,000 attempts to a few seconds.
"""

from __future__ import annotations

import logging

from fluxlite.errors import EXIT_USAGE, FluxliteError
from fluxlite.stats.report import OTHER, OUTCOME
from fluxlite.stats.report import PALETTE as _PAGE_PALETTE

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)

PALETTE = _PAGE_PALETTE[:10]  # the page's first ten: an image has no legend to scroll


class PlotUnavailable(FluxliteError):
    """An image was asked for without matplotlib."""

    exit_code = EXIT_USAGE

    def __init__(self, reason: str) -> None:
        super().__init__("--png/--svg need matplotlib, which is not installed "
                         f"(pip install 'fluxlite-runtime[plot]'): {reason}")
        self.reason = reason


def require() -> None:
    """Raise PlotUnavailable unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise PlotUnavailable(str(err)) from None


def timeline(doc: dict[str, Any], path: str, by: str = "transformation") -> None:
    """Draw the attempts of a stats document as bars on their lanes, coloured by ``by``, into
    the image file ``path``."""
    require()
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    n_lanes = max(1, len(doc["lanes"]))
    fig, ax = plt.subplots(figsize=(11, min(8.0, 2.0 + 0.18 * n_lanes)), dpi=150)
    if by == "outcome":
        keys, names = doc["out"], doc["causes"]
        colours = [OUTCOME.get(c, OTHER) for c in names]
    else:
        keys, names = doc["tx"], doc["txNames"]
        colours = [PALETTE[i] if i < len(PALETTE) else OTHER for i in range(len(names))]
    groups: dict[int, list[list[tuple[float, float]]]] = {}
    for s, d, lane, k in zip(doc["s"], doc["d"], doc["lane"], keys, strict=True):
        x0, x1 = s / 1000, (s + max(d, 1)) / 1000
        y0, y1 = lane + 0.1, lane + 0.9
        groups.setdefault(k, []).append([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    for k, polys in groups.items():
        ax.add_collection(PolyCollection(polys, facecolors=colours[k], edgecolors="none",
                                         linewidths=0))
    span = max((s + d for s, d in zip(doc["s"], doc["d"], strict=True)), default=1) / 1000
    ax.set_xlim(0, max(span, 1e-3))
    ax.set_ylim(n_lanes, 0)
    ax.set_xlabel("seconds from the first start")
    ax.set_ylabel("lane (host, slot)")
    if n_lanes <= 40:
        ax.set_yticks([i + 0.5 for i in range(n_lanes)], doc["lanes"], fontsize=7)
    shown = [i for i in range(len(names)) if i in groups][:10]
    ax.legend(handles=[Patch(color=colours[i], label=names[i]) for i in shown],
              loc="upper right", fontsize=7, framealpha=0.85)
    ax.set_title(doc["title"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
