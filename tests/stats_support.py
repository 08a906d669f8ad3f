"""Records made with fluxlite's own cluster writers, and a headless browser, for the tests
and the benchmark of ``fluxlite stats`` and ``fluxlite report``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fluxlite.cluster.formats import Task
from fluxlite.cluster.records import Attempt, RecordWriter, attempt_dict, summary_line
from fluxlite.execute.base import ExitStatus
from fluxlite.record.host import iso

T0 = 1796000000.0  # a fixed start, so that figures do not depend on when the test runs


def synthetic_cluster(n: int, hosts: int = 4, slots: int = 16, fail_every: int = 50,
                      t0: float = T0, pid0: int = 100000, names: int = 6, tag: str = "c"
                      ) -> tuple[dict[str, Any], list[Attempt]]:
    """The JSON record of a cluster of ``n`` tasks run back to back in ``hosts × slots``
    slots (so, as many lanes), written by the cluster's own record functions. Every
    ``fail_every``-th task fails once and succeeds on its second try."""
    lanes = hosts * slots
    free_at = [t0] * lanes
    tasks: list[dict[str, Any]] = []
    attempts: list[Attempt] = []
    pid = pid0
    for i in range(n):
        t = Task(id=f"{tag}{i}", line=i + 1, name=f"wf::step{i % names}:1.0", cores=1,
                 argv=["/bin/true"])
        tries = 2 if fail_every and i % fail_every == fail_every - 1 else 1
        tdoc: dict[str, Any] = {"id": t.id, "name": t.name, "line": t.line, "app": t.app,
                                "cores": 1, "gpus": 0, "memory_mb": 0, "priority": 0,
                                "parents": [], "state": "done", "attempts": []}
        for k in range(1, tries + 1):
            lane = min(range(lanes), key=free_at.__getitem__)
            dur = 0.5 + (i * 7919 % 1000) / 400.0
            start = free_at[lane]
            pid += 1
            ok = k == tries
            a = Attempt(task=t, number=k, argv=["/bin/true"], start=start, duration=dur,
                        pid=pid, status=ExitStatus(0 if ok else 256, 0 if ok else 1),
                        rusage={"utime": dur * 0.6, "stime": dur * 0.1,
                                "maxrss": 10000 + (i % 97) * 100},
                        host=f"node{lane // slots:03d}")
            free_at[lane] = start + dur + 0.001
            tdoc["attempts"].append(attempt_dict(a))
            attempts.append(a)
        tasks.append(tdoc)
    end = max(free_at)
    summary = {"stat": "ok", "lines": n, "tasks": n, "succeeded": n, "failed": 0, "extra": 0,
               "rescued": 0, "not_run": 0, "retries": sum(len(t["attempts"]) - 1 for t in tasks),
               "duration": end - t0, "start": iso(t0), "pid": pid0, "app": "fluxlite cluster",
               "executor": "local"}
    doc = {"fluxlite_cluster": 1, "input": f"/work/{tag}.dag", "format": "pmc",
           "executor": "local", "start": iso(t0), "start_epoch": t0, "time_limit_source": None,
           "summary": summary, "tasks": tasks, "flux_uri": None, "nested": None}
    return doc, attempts


def cluster_output(doc: dict[str, Any], attempts: list[Attempt]) -> str:
    """What ``fluxlite cluster -o`` writes for the same attempts: a kickstart record and a
    task line each, then the summary line."""
    w = RecordWriter(site="local")
    parts: list[str] = []
    for a in attempts:
        parts.append(w.kickstart(a))
        parts.append(w.task_line(a))
    parts.append(summary_line(doc["summary"]))
    return "".join(parts)


def browser_missing() -> str | None:
    """Why the headless browser cannot run, or None when it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "chromium is not installed (apt-get install chromium chromium-driver)"
    if not shutil.which("chromedriver"):
        return "chromedriver is not installed (apt-get install chromium-driver)"
    return None


@contextmanager
def headless_chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver",
                                              env={**os.environ}), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
