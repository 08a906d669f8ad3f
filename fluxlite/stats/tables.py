"""The figures of ``fluxlite stats``: a summary, one row per transformation, one per host.

Definitions (docs/stats.md):
- a task is a job, or a task of a cluster; its attempts are its tries; its outcome is that
  of its last attempt. ``retries`` = attempts − tasks.
- ``signalled``, ``timed_out``, ``infrastructure`` and ``exited`` split the failed tasks by
  why their last attempt ended.
- ``wall_s`` = last end − first start; ``cumulative_s`` = the sum of the attempts' times
  (staging included); ``badput_s`` = the same sum over the attempts that failed.
- per transformation and per host, ``count`` and ``failed`` count attempts; runtimes are the
  tasks' own times; ``p95`` is the nearest-rank 95th percentile.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable

from fluxlite.record.host import iso
from fluxlite.stats.model import INFRA, SIGNAL, TIMEOUT, Attempt

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any


def final_attempts(attempts: Iterable[Attempt]) -> dict[tuple[Any, ...], Attempt]:
    """The last attempt of each task (by try number, then start)."""
    last: dict[tuple[Any, ...], Attempt] = {}
    for a in attempts:
        cur = last.get(a.task)
        if cur is None or (a.try_no or 0, a.start) > (cur.try_no or 0, cur.start):
            last[a.task] = a
    return last


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def _dist(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    v = sorted(values)
    return {"min": v[0], "median": statistics.median(v), "mean": math.fsum(v) / len(v),
            "p95": percentile(v, 0.95), "max": v[-1]}


def compute(attempts: list[Attempt], clusters: dict[Any, dict[str, Any]] | None = None
            ) -> dict[str, Any]:
    """The stats document of the attempts: the summary of the cluster or workflow and its tables."""
    last = final_attempts(attempts)
    failed_final = [a for a in last.values() if not a.ok]
    n_in = sum(a.bytes_in or 0 for a in attempts)
    n_out = sum(a.bytes_out or 0 for a in attempts)
    s_in = math.fsum(a.secs_in or 0.0 for a in attempts)
    s_out = math.fsum(a.secs_out or 0.0 for a in attempts)
    first = min((a.start for a in attempts), default=None)
    end = max((a.end for a in attempts), default=None)
    summary: dict[str, Any] = {
        "tasks": len(last),
        "attempts": len(attempts),
        "succeeded": len(last) - len(failed_final),
        "failed": len(failed_final),
        "retries": len(attempts) - len(last),
        "signalled": sum(1 for a in failed_final if a.cause == SIGNAL),
        "timed_out": sum(1 for a in failed_final if a.cause == TIMEOUT),
        "infrastructure": sum(1 for a in failed_final if a.cause == INFRA),
        "exited": sum(1 for a in failed_final if a.cause not in (SIGNAL, TIMEOUT, INFRA)),
        "failed_attempts": sum(1 for a in attempts if not a.ok),
        "first_start": iso(first) if first is not None else None,
        "last_end": iso(end) if end is not None else None,
        "wall_s": (end - first) if first is not None and end is not None else 0.0,
        "cumulative_s": math.fsum(a.duration for a in attempts),
        "badput_s": math.fsum(a.duration for a in attempts if not a.ok),
        "bytes_in": n_in,
        "bytes_out": n_out,
        "stage_in_s": s_in,
        "stage_out_s": s_out,
        "throughput_in_mb_s": n_in / s_in / 1e6 if s_in > 0 else None,
        "throughput_out_mb_s": n_out / s_out / 1e6 if s_out > 0 else None,
        "integrity_s": math.fsum(a.integrity_s or 0.0 for a in attempts),
        "not_run": sum(int(c.get("not_run") or 0) for c in (clusters or {}).values()),
    }
    by_tx: dict[str, list[Attempt]] = defaultdict(list)
    by_host: dict[str, list[Attempt]] = defaultdict(list)
    for a in attempts:
        by_tx[a.name].append(a)
        if a.host:
            by_host[a.host].append(a)
    return {"summary": summary,
            "transformations": {k: _tx_row(v) for k, v in sorted(by_tx.items())},
            "hosts": {k: _host_row(v) for k, v in sorted(by_host.items())}}


def _tx_row(group: list[Attempt]) -> dict[str, Any]:
    cpu = wall = 0.0
    for a in group:
        if a.utime is not None and a.stime is not None and a.task_secs > 0:
            cpu += a.utime + a.stime
            wall += a.task_secs * (a.cores or 1)
    rss = sorted(a.maxrss_kb for a in group if a.maxrss_kb is not None)
    return {"count": len(group), "failed": sum(1 for a in group if not a.ok),
            "runtime_s": _dist([a.task_secs for a in group]),
            "cpu_utilization": cpu / wall if wall > 0 else None,
            "peak_rss_kb": {"max": rss[-1], "median": statistics.median(rss)} if rss else None}


def _host_row(group: list[Attempt]) -> dict[str, Any]:
    return {"count": len(group), "failed": sum(1 for a in group if not a.ok),
            "busy_s": math.fsum(a.duration for a in group)}


# -- output ----------------------------------------------------------------------------------
def _fmt(v: Any, nd: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                     for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    out.append("  ".join("-" * w for w in widths))
    for r in rows:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return out


TX_HEADER = ["transformation", "count", "failed", "min_s", "median_s", "mean_s", "p95_s",
             "max_s", "cpu_util", "rss_max_kb", "rss_median_kb"]
HOST_HEADER = ["host", "count", "failed", "busy_s"]


def _tx_cells(name: str, row: dict[str, Any]) -> list[str]:
    rt = row["runtime_s"] or {}
    rss = row["peak_rss_kb"] or {}
    return [name, str(row["count"]), str(row["failed"]),
            *(_fmt(rt.get(k)) for k in ("min", "median", "mean", "p95", "max")),
            _fmt(row["cpu_utilization"], 2), _fmt(rss.get("max"), 0),
            _fmt(rss.get("median"), 0)]


def text(doc: dict[str, Any]) -> str:
    """The stats document as plain-text tables."""
    s = doc["summary"]
    lines = ["summary"]
    pairs = [
        # tasks counts the tasks tried; the ones a cluster never started come after
        ("tasks", f"{s['tasks']} ({s['succeeded']} succeeded, {s['failed']} failed)"
                  if not s["not_run"] else f"{s['tasks']} tried ({s['succeeded']} succeeded, "
                  f"{s['failed']} failed), {s['not_run']} not run"),
        ("attempts", f"{s['attempts']} ({s['retries']} retries, {s['failed_attempts']} failed)"),
        ("failed tasks by cause", f"{s['exited']} exit code, {s['signalled']} signal, "
                                  f"{s['timed_out']} time limit, {s['infrastructure']} "
                                  "infrastructure (71)"),
        ("first start", s["first_start"] or "-"),
        ("last end", s["last_end"] or "-"),
        ("wall time", f"{s['wall_s']:.3f} s"),
        ("cumulative time", f"{s['cumulative_s']:.3f} s"),
        ("badput", f"{s['badput_s']:.3f} s"),
        ("staged in", f"{_size(s['bytes_in'])} in {s['stage_in_s']:.3f} s"
                      + (f" ({s['throughput_in_mb_s']:.2f} MB/s)"
                         if s["throughput_in_mb_s"] is not None else "")),
        ("staged out", f"{_size(s['bytes_out'])} in {s['stage_out_s']:.3f} s"
                       + (f" ({s['throughput_out_mb_s']:.2f} MB/s)"
                          if s["throughput_out_mb_s"] is not None else "")),
        ("integrity", f"{s['integrity_s']:.3f} s"),
    ]
    width = max(len(k) for k, _ in pairs)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in pairs]
    lines += ["", "per transformation"]
    lines += ["  " + ln for ln in _table(TX_HEADER, [_tx_cells(k, v) for k, v in
                                                      doc["transformations"].items()])]
    if doc["hosts"]:
        lines += ["", "per host"]
        lines += ["  " + ln for ln in _table(HOST_HEADER, [
            [k, str(v["count"]), str(v["failed"]), _fmt(v["busy_s"])]
            for k, v in doc["hosts"].items()])]
    return "\n".join(lines) + "\n"


def to_csv(doc: dict[str, Any]) -> str:
    """Three tables, each with its header row, separated by an empty line."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    s = doc["summary"]
    w.writerow(["summary", "value"])
    for k, v in s.items():
        w.writerow([k, "" if v is None else v])
    buf.write("\n")
    w.writerow(TX_HEADER)
    for k, v in doc["transformations"].items():
        w.writerow(["" if c == "-" else c for c in _tx_cells(k, v)])
    buf.write("\n")
    w.writerow(HOST_HEADER)
    for k, v in doc["hosts"].items():
        w.writerow([k, v["count"], v["failed"], f"{v['busy_s']:.3f}"])
    return buf.getvalue()
