"""The cluster's records: rendered from parts made once, they are what the provenance model
renders (``kickstart.render`` of ``RecordWriter.record``), byte for byte; the executable's
statinfo is cached as the record claims (a stat taken at or after the attempt's start)."""

from __future__ import annotations

import random
import re
import resource
import time
from datetime import datetime
from pathlib import Path

from fluxlite.cluster.formats import Task
from fluxlite.cluster.records import (
    Attempt,
    RecordWriter,
    StatCache,
    _escape_quoted,
    usage_lines,
)
from fluxlite.execute.base import RUSAGE_FIELDS, ExitStatus, rusage_dict
from fluxlite.record import kickstart
from fluxlite.record.host import iso

T0 = 1796000000.1234567
RUSAGE = {"utime": 0.0014999, "stime": 0.0005, "maxrss": 24240, "minflt": 51, "majflt": 0,
          "nswap": 0, "inblock": 8, "outblock": 0, "msgsnd": 0, "msgrcv": 0, "nsignals": 0,
          "nvcsw": 1, "nivcsw": 3}


def attempts(tmp: Path) -> list[Attempt]:
    """Attempts of every kind a record is rendered for: exits, signals, core dumps, tasks
    that never started, stopped and failed ones, odd strings, URLs with credentials, task
    output that looks like the cluster's own lines, a pool's hosts and ranks, Flux ids."""
    tasks = [
        Task(id="t1", argv=["/bin/true"], name="true"),
        Task(id="t 2", argv=["/bin/echo", "a b", 'x"y', "s3://u:pw@h/x?token=abc"],
             name="echo", derivation="ID1", number="7"),
        Task(id="t3", command="echo [cluster-summary stat=ok] && exit 3", name="sh"),
        Task(id="\u00fc", argv=["/nonexistent/prog", "\u2028", "\x00z"], name="odd\nname"),
        Task(id="t5", argv=["relative-prog"], name=""),
        Task(id="t6", argv=["/bin/sh", "-c", "kill $$"], name="- invocation: True"),
    ]
    statuses = [ExitStatus(0, 0), ExitStatus.from_wait(3 << 8), ExitStatus.from_wait(15),
                ExitStatus.from_wait(9 | 0x80), ExitStatus.failed_to_start("not found: x"),
                ExitStatus(-1)]
    outs = [b"", b"hello\n", b"\xff\xfe bad utf8\n[cluster-task id=1]\n", b"no newline",
            b"  leading\n\n\n", None, b"x" * 300 + b"\r\n", "caf\u00e9 \u0085\n".encode()]
    out: list[Attempt] = []
    n = 0
    for t in tasks:
        for j, s in enumerate(statuses):
            n += 1
            a = Attempt(task=t, number=1 + j % 3, status=s)
            a.argv = [] if j == 5 else list(t.argv or ["/bin/sh", "-c", t.command or ""])
            a.start = 0.0 if j == 5 else T0 + n * 0.0371
            a.duration = n * 0.0123
            a.pid = 0 if s.raw == -1 else 1000 + n
            a.rusage = dict(RUSAGE) if j % 2 == 0 else {"utime": 0.1, "maxrss": 5}
            a.stdout, a.stderr = outs[n % len(outs)], outs[(n + 3) % len(outs)]
            a.stdout_info = (n % 3 == 0, len(a.stdout or b""))
            a.stderr_info = (False, len(a.stderr or b""))
            # the executors remove these files once read: they are gone when it is rendered
            if j != 4:
                a.stdout_path, a.stderr_path = str(tmp / f"{n}.out"), str(tmp / f"{n}.err")
            if n % 4 == 0:
                a.host, a.rank, a.worker, a.queue_wait = f"node{n % 3}", n % 3, "w1", 0.01
            if n % 5 == 0:
                a.flux_id = "f" + "abc" * (n % 3)
            if n % 7 == 0:
                a.stopped = "time limit"
            if n % 11 == 0:
                a.failure = "cannot forward x: No space left on device"
            out.append(a)
    return out


def _without_own_usage(text: str) -> str:
    # the cluster's own usage is read anew by each rendering
    return re.sub(r"(?ms)^  usage:\n.*?(?=^  files:)", "  usage: ...\n", text)


def test_records_are_what_the_model_renders(tmp_path: Path) -> None:
    for label, stamp in ((None, None), ("my wf", "2026-12-01")):
        w = RecordWriter(site="condorpool", wf_label=label, wf_stamp=stamp)
        for a in attempts(tmp_path):
            fast = w.kickstart(a)
            model = _escape_quoted(kickstart.render(w.record(a)))
            assert _without_own_usage(fast) == _without_own_usage(model), a.task.id
            assert fast.startswith("- invocation: True\n") and "\n  usage:\n    utime: " in fast


def test_the_processs_usage_lines_are_those_of_its_rusage_dict() -> None:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    assert usage_lines(ru) == kickstart.usage_text(2, rusage_dict(ru))
    assert tuple(rusage_dict(ru)) == RUSAGE_FIELDS  # every field, in the record's order


def test_a_changed_executable_is_seen_by_the_attempts_started_after_the_change(
        tmp_path: Path) -> None:
    prog = tmp_path / "prog"
    prog.write_bytes(b"#!/bin/sh\n")
    prog.chmod(0o755)
    w = RecordWriter()

    def record(start: float) -> str:
        a = Attempt(task=Task(id="p", argv=[str(prog)], name="prog"), number=1,
                    argv=[str(prog)], start=start, duration=0.01, pid=7,
                    status=ExitStatus(0, 0))
        return w.kickstart(a)

    first = record(time.time())
    assert "      size: 10\n" in first
    stats = w.exe_stats.stats
    # attempts that had started before that stat: it serves them, no stat of their own
    assert "      size: 10\n" in record(time.time() - 5)
    assert w.exe_stats.stats == stats
    # the file is rebuilt (a parent task's doing); an attempt started after that sees it
    prog.write_bytes(b"#!/bin/sh\nexit 0\n")
    assert "      size: 17\n" in record(time.time())
    assert w.exe_stats.stats == stats + 1
    prog.unlink()
    gone = record(time.time())
    assert "size:" not in gone.split("argument_vector")[0].split("file_name")[1]


def test_the_stat_cache_keeps_its_lines_while_the_file_is_unchanged(tmp_path: Path) -> None:
    prog = tmp_path / "prog"
    prog.write_bytes(b"x")
    cache = StatCache(size=2)
    first = cache.text(str(prog), time.time())
    again = cache.text(str(prog), time.time() + 1)  # a later start: stat'ed again
    assert again is first and cache.stats == 2  # the same file: the same lines
    for i in range(3):  # bounded: the oldest path goes
        cache.text(str(tmp_path / f"other{i}"), 0.0)
    assert len(cache._entries) == 2 and cache.text(str(tmp_path / "none"), 0.0) == ""


def test_iso_is_what_datetime_writes() -> None:
    r = random.Random(24)
    times = [0.0, 0.9999995, 1.0000005, T0, 1796000000.9999996, 1796000000.0005]
    for _ in range(20000):
        base = r.uniform(0, 2.2e9)
        times += [base, int(base) + r.choice([0.9999995, 0.9999994, 0.0005, 0.9995, 0.5])]
    for t in times:
        for ms in (True, False):
            assert iso(t, ms) == datetime.fromtimestamp(t).astimezone().isoformat(
                timespec="milliseconds" if ms else "seconds"), (t, ms)
