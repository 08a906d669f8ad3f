"""What the scheduler keeps of the attempts it ran: nothing without --json (the summary and
the rescue file need none of it), and with --json each attempt as its JSON bytes. Measured
with tracemalloc over 20,000 tasks of the instant executor, through the real scheduler and
record writer."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import orjson

from fluxlite.cluster.records import RecordWriter
from fluxlite.cluster.run import write_json
from fluxlite.cluster.scheduler import Options, Scheduler
from tests.cluster_support import InstantExecutor, NullOut, instant_graph

N = 20_000


def grown_per_task(keep_attempts: bool, rescue: str | None = None) -> tuple[float, Scheduler,
                                                                            dict]:
    """Bytes still held per task after a cluster of N instant tasks ran (the scheduler kept
    alive), counted from after the graph and the scheduler were made."""
    sched = Scheduler(instant_graph(N), InstantExecutor(cores=4, pool=True), RecordWriter(),
                      NullOut(), Options(progress_interval=1e9, keep_attempts=keep_attempts,
                                         rescue=rescue))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        summary = sched.run()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert summary["succeeded"] == N
    return (after - before) / N, sched, summary


def test_no_attempt_is_kept_without_json(tmp_path: Path) -> None:
    rescue = tmp_path / "r.rescue"
    per_task, sched, summary = grown_per_task(False, str(rescue))
    # what is left is the summary's counters and a few cached record parts, not attempts
    # (a kept attempt's dictionary is about 1 KB)
    assert per_task <= 32, f"{per_task:.0f} bytes kept per task"
    assert all(st.attempts is None for st in sched.states.values())
    assert rescue.read_text().count("\nDONE t") == N  # the rescue file has every task


def test_with_json_each_attempt_is_kept_as_its_json(tmp_path: Path) -> None:
    per_task, sched, summary = grown_per_task(True)
    assert per_task <= 600, f"{per_task:.0f} bytes kept per task"
    kept = sched.states["t7"].attempts
    assert kept is not None and len(kept) == 1 and isinstance(kept[0], bytes)
    path = tmp_path / "c.json"
    write_json(str(path), sched.report(summary))
    doc = orjson.loads(path.read_bytes())
    assert len(doc["tasks"]) == N and doc["summary"]["succeeded"] == N
    a = doc["tasks"][7]["attempts"][0]
    assert (doc["tasks"][7]["id"], a["try"], a["exit_code"], a["rank"], a["worker"]) == (
        "t7", 1, 0, 0, "w0")
    assert a["rusage"]["maxrss"] == 24240 and a["start"].startswith("20")
