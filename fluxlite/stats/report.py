"""The HTML report: one self-contained file, its data embedded as columns.

The page (report.html beside this module) draws everything itself on <canvas>: no network,
no library. Attempts are packed into lanes here (one lane per slot of a host: an attempt
takes the lowest lane of its host that is free when it starts), sorted by lane and start,
and written as columns of integers (milliseconds from the first start), which keeps 100,000
attempts to a few megabytes and lets the page find the attempt under the pointer by a
binary search in its lane.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import defaultdict
from importlib import resources

import orjson

from fluxlite.stats.model import CAUSES, Attempt
from fluxlite.stats.tables import percentile

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)

MAX_FAILURES = 5000  # listed in full; beyond, counted
MAX_DIST = 40  # transformations with a runtime and memory row (the most frequent)
PHASES = ("stage-in", "task", "stage-out")

# The page's colours. The staging phases are drawn over their attempt's bar, so they must
# stand apart from every transformation's and outcome's colour for readers with any common
# colour-vision deficiency: near-black and a deep violet do (tests/integration/
# test_stats_report.py measures it); the transformations take Tableau's 20.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#aec7e8", "#ffbb78", "#98df8a",
           "#c5b0d5", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
OUTCOME = {"ok": "#59a14f", "exit": "#e15759", "signal": "#f28e2b", "timeout": "#b07aa1",
           "infrastructure": "#6b4c3b"}
PHASE_COLOURS = {"stage-in": "#1a1a1a", "stage-out": "#5511bb"}
OTHER = "#9e9e9e"  # transformations past the palette's


def lanes(attempts: list[Attempt]) -> tuple[list[int], list[str]]:
    """Each attempt's lane and the lanes' labels (host and slot)."""
    by_host: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(attempts):
        by_host[a.host or "local"].append(i)
    lane = [0] * len(attempts)
    labels: list[str] = []
    for host in sorted(by_host):
        idx = sorted(by_host[host], key=lambda i: (attempts[i].start, attempts[i].end))
        busy: list[tuple[float, int]] = []  # (end, slot)
        free: list[int] = []
        slots = 0
        for i in idx:
            a = attempts[i]
            while busy and busy[0][0] <= a.start:
                heapq.heappush(free, heapq.heappop(busy)[1])
            if free:
                slot = heapq.heappop(free)
            else:
                slot, slots = slots, slots + 1
            heapq.heappush(busy, (a.end, slot))
            lane[i] = len(labels) + slot
        labels += [f"{host} #{k + 1}" for k in range(slots)]
    return lane, labels


def _quantiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    v = sorted(values)
    return {"n": len(v), "min": v[0], "p25": percentile(v, 0.25), "median": percentile(v, 0.5),
            "p75": percentile(v, 0.75), "p95": percentile(v, 0.95), "max": v[-1],
            "mean": math.fsum(v) / len(v)}


def build(attempts: list[Attempt], stats: dict[str, Any], title: str) -> dict[str, Any]:
    """The document the page draws."""
    lane_of, labels = lanes(attempts)
    order = sorted(range(len(attempts)), key=lambda i: (lane_of[i], attempts[i].start))
    atts = [attempts[i] for i in order]
    lane = [lane_of[i] for i in order]
    t0 = min((a.start for a in atts), default=0.0)
    names: dict[str, int] = {}
    counts: dict[str, int] = defaultdict(int)
    for a in atts:
        counts[a.name] += 1
    for name in sorted(counts, key=lambda k: (-counts[k], k)):
        names[name] = len(names)
    cause = {c: i for i, c in enumerate(CAUSES)}

    def ms(t: float) -> int:
        return round((t - t0) * 1000)

    starts = [ms(a.start) for a in atts]
    durs = [max(0, round(a.duration * 1000)) for a in atts]
    ph_idx: list[int] = []
    ph: list[int] = []
    for i, a in enumerate(atts):
        if not a.phases:
            continue
        got = {n: (s, d) for n, s, d in a.phases}
        ph_idx.append(i)
        for n in PHASES:
            s, d = got.get(n, (None, None))
            ph += [-1, 0] if s is None else [ms(s), max(0, round(d * 1000))]
    lane_lo = [0] * (len(labels) + 1)
    for ln in lane:
        lane_lo[ln + 1] += 1
    for k in range(len(labels)):
        lane_lo[k + 1] += lane_lo[k]
    fails = [i for i, a in enumerate(atts) if not a.ok]
    fails.sort(key=lambda i: atts[i].start)
    failures = [{"i": i, "task": atts[i].task_id, "name": atts[i].name, "try": atts[i].try_no,
                 "host": atts[i].host, "start": starts[i], "code": atts[i].exit_code,
                 "cause": atts[i].cause, "reason": atts[i].reason, "record": atts[i].source}
                for i in fails[:MAX_FAILURES]]
    by_name: dict[str, list[Attempt]] = defaultdict(list)
    for a in atts:
        by_name[a.name].append(a)
    dist = []
    for name in list(names)[:MAX_DIST]:
        group = by_name[name]
        dist.append({"name": name, "runtime": _quantiles([a.task_secs for a in group]),
                     "rss_kb": _quantiles([float(a.maxrss_kb) for a in group
                                           if a.maxrss_kb is not None])})
    return {"version": 1, "title": title, "t0": t0, "n": len(atts), "lanes": labels,
            "lane": lane, "laneLo": lane_lo, "s": starts, "d": durs,
            "tx": [names[a.name] for a in atts], "txNames": list(names),
            "out": [cause[a.cause] for a in atts], "causes": list(CAUSES),
            "id": [a.task_id for a in atts], "try": [a.try_no or 1 for a in atts],
            "phIdx": ph_idx, "ph": ph, "phases": list(PHASES),
            "failures": failures, "failuresTotal": len(fails), "dist": dist,
            "summary": stats["summary"], "figures": figures(stats["summary"]),
            "colours": {"palette": PALETTE, "outcome": OUTCOME, "phase": PHASE_COLOURS,
                        "other": OTHER}}


def figures(s: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """The header's figures: (label, value, kind), kind "n" (a count), "s" (seconds),
    "B" (bytes) or "t" (a time as text). The tasks' outcomes add up to the tasks: those
    tried (succeeded and failed) and those never started."""
    return [("tasks", s["tasks"] + s["not_run"], "n"), ("succeeded", s["succeeded"], "n"),
            ("failed", s["failed"], "n"), ("not run", s["not_run"], "n"),
            ("attempts", s["attempts"], "n"), ("retries", s["retries"], "n"),
            ("wall", s["wall_s"], "s"), ("cumulative", s["cumulative_s"], "s"),
            ("badput", s["badput_s"], "s"), ("staged in", s["bytes_in"], "B"),
            ("staged out", s["bytes_out"], "B"), ("first start", s["first_start"] or "-", "t")]


# Inside a script element, "</script" ends it and "<!--" followed by "<script" makes the
# tokenizer skip to a second "</script>" (the page is then blank): no "<" may stand there.
# ">" and "&" are escaped too, and U+2028/U+2029, which old JavaScript readers took for line
# ends. Each can only occur inside a JSON string, where its \u escape means the same.
_SCRIPT_ESCAPES = {b"<": b"\\u003c", b">": b"\\u003e", b"&": b"\\u0026",
                   "\u2028".encode(): b"\\u2028", "\u2029".encode(): b"\\u2029"}


def script_json(doc: Any) -> bytes:
    """JSON that can stand inside an HTML script element whatever its strings hold."""
    data = orjson.dumps(doc)
    for raw, escaped in _SCRIPT_ESCAPES.items():
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def render(doc: dict[str, Any]) -> bytes:
    """The HTML report of a stats document: the template with the data embedded."""
    template = resources.files("fluxlite.stats").joinpath("report.html").read_text("utf-8")
    data = script_json(doc)
    head, tail = template.split("/*DATA*/", 1)
    title = (doc["title"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
    return head.replace("{{TITLE}}", title).encode() + data + tail.encode()
