"""The pool under attack and under loss, in real `flux start --test-size=N` instances: a
worker stopped or its guard killed never makes a task run twice at once; a killed worker
leaves no descendant of its tasks; forged and malformed requests are logged and dropped.

Only processes these tests started are signalled: the workers and guards of the pool job
each test starts, found through that job (``_pool_procs``)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Fluxlite
from tests.flux.conftest import FluxInstance, instance
from tests.flux.test_pool import _attempts, _left_behind, _pool_jobs, _pool_procs, _record
from tests.integration.test_cluster_local import cluster_lines


@pytest.fixture(scope="module")
def fi4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FluxInstance]:
    """An instance of 4 brokers, for the loss cases."""
    yield from instance(tmp_path_factory, 4)


def _start(fi: FluxInstance, fl: Fluxlite, lines: list[str]) -> subprocess.Popen[bytes]:
    (fl.tmp / "k.dag").write_text("".join(lines))
    return fl.popen("cluster", "k.dag", "--executor", "pool", "-o", "c.out", "--json",
                    "c.json", "--no-rescue", env=fi.env)


def _until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def _log(path: Path) -> list[list[str]]:
    return [ln.split() for ln in path.read_text().splitlines() if ln.strip()] if (
        path.exists()) else []


def _spans(path: Path) -> dict[str, list[tuple[float, float | None]]]:
    """Each task's runs, in order, from its log lines ``s|e ID PID TIME`` (the shell's pid
    tells one try from another)."""
    runs: dict[tuple[str, str], list[float | None]] = {}
    for kind, tid, pid, t, *_ in _log(path):
        run = runs.setdefault((tid, pid), [None, None])
        run[0 if kind == "s" else 1] = float(t)
    out: dict[str, list[tuple[float, float | None]]] = {}
    for (tid, _), (s, e) in sorted(runs.items(), key=lambda kv: kv[1][0] or 0.0):
        assert s is not None, (tid, s, e)
        out.setdefault(tid, []).append((s, e))
    return out


_BODY = ('echo s $PMC_TASK $$ $(date +%s.%N) >> run.log; sleep {secs}; '
         'echo e $PMC_TASK $$ $(date +%s.%N) >> run.log')


def _never_twice_at_once(path: Path, n: int) -> None:
    runs = _spans(path)
    ended = Counter(tid for tid, rs in runs.items() for _, e in rs if e is not None)
    assert ended == {f"t{i}": 1 for i in range(n)}, runs  # each task's work ends once
    for tid, rs in runs.items():
        # a try ended before the next one started (one killed has no end line)
        for (_, e1), (s2, _) in itertools.pairwise(rs):
            assert e1 is None or e1 <= s2, (tid, rs)


# -- a lost worker: its tasks are known dead before they are retried ---------------------
def test_pool_stopped_worker_never_runs_a_task_twice(fi4: FluxInstance, fl: Fluxlite) -> None:
    n = 4  # one a worker: a retry finds a free slot at once
    proc = _start(fi4, fl, [f"TASK t{i} -t 2 /bin/sh -c '{_BODY.format(secs=14)}'\n"
                            for i in range(n)])
    stopped = 0
    try:
        _until(lambda: len(_log(fl.tmp / "run.log")) >= n, 30, "every task started")
        stopped = _pool_procs(fi4, 1)["worker"]
        os.kill(stopped, signal.SIGSTOP)  # it answers nothing, its tasks go on
        t0 = time.monotonic()
        _until(lambda: sum(x[0] == "s" for x in _log(fl.tmp / "run.log")) > n, 40,
               "a retry started")
        # were it still there, it would go on: its task ends by itself meanwhile (14 s),
        # and what it reports then would be dropped, its task having run beside the retry
        time.sleep(max(0.0, t0 + 15 - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.kill(stopped, signal.SIGCONT)
        _, err = proc.communicate(timeout=90)
    finally:
        if stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(stopped, signal.SIGCONT)
        proc.kill()
    assert proc.returncode == 0, err.decode()
    assert time.monotonic() - t0 > 9  # given up on after 10 s of silence
    _never_twice_at_once(fl.tmp / "run.log", n)
    attempts = _attempts(_record(fl))
    lost = [a for a in attempts if a["error"] and "was lost" in a["error"]]
    assert len(lost) == 1 and all(a["rank"] == 1 for a in lost), attempts
    for a in lost:
        # what is known: the pid its guard killed, and how long it ran until then
        assert "no answer for 10 s" in a["error"] and "its guard killed it" in a["error"]
        assert a["pid"] > 0 and f"(pid {a['pid']})" in a["error"], a
        assert a["raw"] == a["signal"] == signal.SIGKILL, a
        assert a["exit_code"] == 128 + signal.SIGKILL, a  # killed, not "never started"
        assert 10 <= a["duration"] < 14, a
    _, summary = cluster_lines((fl.tmp / "c.out").read_text())
    assert summary["succeeded"] == str(n) and summary["retries"] == "1", summary
    assert _left_behind("sleep 14") == []


def test_pool_worker_and_guard_stopped_task_not_retried(fi4: FluxInstance,
                                                        fl: Fluxlite) -> None:
    # nothing can say the stopped worker's task ended: it is stopped, not retried
    n = 4
    proc = _start(fi4, fl, [f"TASK t{i} -t 2 /bin/sh -c '{_BODY.format(secs=8)}'\n"
                            for i in range(n)])
    procs: dict[str, int] = {}
    try:
        _until(lambda: len(_log(fl.tmp / "run.log")) >= n, 30, "every task started")
        procs = _pool_procs(fi4, 1)
        for pid in (procs["guard"], procs["worker"]):
            os.kill(pid, signal.SIGSTOP)
        _, err = proc.communicate(timeout=150)
    finally:
        for pid in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        proc.kill()
    text = err.decode()
    assert "nothing says its 1 task(s) ended: not retried" in text, text
    attempts = _attempts(_record(fl))
    lost = [a for a in attempts if a["rank"] == 1]
    assert len(lost) == 1 and lost[0]["stopped"], attempts
    assert "nothing says the task ended: not retried" in lost[0]["error"]
    assert not [a for a in attempts if a["id"] == lost[0]["id"] and a["try"] == 2]
    # its first try ran to its end, alone
    _never_twice_at_once(fl.tmp / "run.log", n)
    _, summary = cluster_lines((fl.tmp / "c.out").read_text())
    assert summary["succeeded"] == str(n - 1) and summary["retries"] == "0", summary
    # the pool's job, cancelled at the end, took the stopped worker and guard with it
    _until(lambda: not any(os.path.exists(f"/proc/{p}") for p in procs.values()), 20,
           "the stopped worker and guard gone")


def test_pool_guard_killed_stops_its_worker(fi4: FluxInstance, fl: Fluxlite) -> None:
    n = 4
    proc = _start(fi4, fl, [f"TASK t{i} -t 2 /bin/sh -c '{_BODY.format(secs=4)}'\n"
                            for i in range(n)])
    try:
        _until(lambda: len(_log(fl.tmp / "run.log")) >= n, 30, "every task started")
        procs = _pool_procs(fi4, 2)
        os.kill(procs["guard"], signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()
    assert b"its guard is gone" in err
    _never_twice_at_once(fl.tmp / "run.log", n)
    attempts = _attempts(_record(fl))
    lost = [a for a in attempts if a["error"] and "was lost" in a["error"]]
    assert len(lost) == 1 and all(a["rank"] == 2 for a in lost), attempts
    assert all("the worker itself, without its guard, killed it" in a["error"] for a in lost)
    assert all(a["rank"] != 2 for a in attempts if a["try"] == 2)
    assert not any(os.path.exists(f"/proc/{p}") for p in procs.values())


def test_pool_killed_worker_leaves_no_descendant(fi4: FluxInstance, fl: Fluxlite) -> None:
    marker = f"{time.time() % 1000:.3f}"
    n = 8
    body = f"setsid sleep 60{marker} </dev/null & {_BODY.format(secs=3)}"
    proc = _start(fi4, fl, [f"TASK t{i} -t 2 /bin/sh -c '{body}'\n" for i in range(n)])
    try:
        _until(lambda: len(_left_behind(f"sleep 60{marker}")) >= n, 30, "every task started")
        os.kill(_pool_procs(fi4, 3)["worker"], signal.SIGKILL)
        # the guard kills what the worker's tasks left outside their groups at once
        _until(lambda: len(_left_behind(f"sleep 60{marker}")) <= n - 2, 10,
               "the lost worker's descendants killed")
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()
    assert time.monotonic() - t0 < 12
    assert _left_behind(f"sleep 60{marker}") == []
    assert b"did not end by itself" not in err
    _never_twice_at_once(fl.tmp / "run.log", n)
    job = _record(fl)["pool"]["job"]
    # it ended by itself (FAILED: one worker was killed), not cancelled after a wait
    assert fi4.job_info(job)["result"] == "FAILED", fi4.job_info(job)


# -- forged and malformed requests ------------------------------------------------------
_FORGE = r'''
import json, os, sys, time
import flux, flux.kvs

h = flux.Flux()

def service(pid):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    except OSError:
        return None
    if b"fluxlite.cluster.pool.worker" in cmd:
        return cmd[cmd.index(b"fluxlite.cluster.pool.worker") + 1].decode()
    return None

# this task's own worker first (its parent): the machine may run other pools
svc = service(os.getppid()) or next(
    (x for x in (service(d) for d in os.listdir("/proc") if d.isdigit()) if x), None)
log = open("forge.log", "a")

def say(line):
    log.write(line + "\n")
    log.flush()

def post(name, topic, payload, rank=0):
    try:
        say(f"{name}: accepted {h.rpc(topic, payload, nodeid=rank).get_str()}")
    except OSError as err:
        say(f"{name}: refused ({err.strerror})")

try:
    say(f"secret: {flux.kvs.get(h, 'fluxlite.pool.' + svc, namespace='primary')}")
except OSError as err:
    say(f"secret: refused ({err.strerror})")

def result(key):
    return {"key": key, "argv": ["/bin/echo"], "start": time.time(), "duration": 0.1,
            "pid": 4242, "status": [0, 0, None, False, None], "rusage": {},
            "stdout": "FORGED\n", "stderr": "", "stdout_info": [False, 7],
            "stderr_info": [False, 0], "stdout_path": "", "stderr_path": ""}

MODE = sys.argv[1]
if MODE == "forge":
    for w in (0, 1):
        post(f"done w{w}", f"{svc}.done",
             json.dumps({"worker": w, "results": [result(k) for k in range(1, 12)]}))
        post(f"want w{w}", f"{svc}.want", json.dumps({"worker": w}))
    post("hello new", f"{svc}.hello", json.dumps(
        {"worker": 1, "rank": 1, "host": "forged", "pid": 4242, "guard": 4243,
         "memory_mb": 0}))
    post("gone w1", f"{svc}.gone", json.dumps(
        {"worker": 1, "by": "guard", "why": "forged", "killed": [], "left": 0}))
    for w in (0, 1):
        post(f"kill g{w}", f"{svc}-g{w}.kill", json.dumps({"worker": w, "why": "x"}), w)
        post(f"stop w{w}", f"{svc}-w{w}.stop", "{}", w)
        post(f"signal w{w}", f"{svc}-w{w}.signal", json.dumps({"signum": 9}), w)
        post(f"hold w{w}", f"{svc}-w{w}.hold", json.dumps({"reason": "x"}), w)
        post(f"give w{w}", f"{svc}-w{w}.give", json.dumps({"count": 5}), w)
else:
    post("not json", f"{svc}.hello", "{not json")
    post("a list", f"{svc}.want", "[1, 2]")
    post("not utf-8", f"{svc}.done", b"\xff\xfe{}")
    post("no payload", f"{svc}.hello", None)
    post("huge", f"{svc}.done", "0" * 64 + json.dumps({"worker": 0, "x": "y" * 1000000}))
    post("hello again", f"{svc}.hello", json.dumps(
        {"worker": 0, "rank": 0, "host": "again", "pid": 1, "guard": 2, "memory_mb": 0}))
    post("bad MAC", f"{svc}.want", "f" * 64 + json.dumps({"worker": 0}))
    for w in (0, 1):
        post(f"signal 999 w{w}", f"{svc}-w{w}.signal", json.dumps({"signum": 999}), w)
        post(f"ping w{w}", f"{svc}-w{w}.ping", "{not json", w)
'''


def _forged(fi: FluxInstance, fl: Fluxlite, mode: str
            ) -> tuple[subprocess.Popen[bytes], bytes]:
    """A pool cluster of three victims (``REAL vN`` after 2.5 s) beside a task that
    forges requests (``mode``); its end and its stderr."""
    (fl.tmp / "forge.py").write_text(_FORGE)
    lines = [f"TASK v{i} /bin/sh -c 'sleep 2.5; echo REAL v{i}'\n" for i in range(3)]
    lines.append(f"TASK forger /bin/sh -c 'sleep 0.5; exec {sys.executable} forge.py "
                 f"{mode}'\n")
    proc = _start(fi, fl, lines)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc, err


def _refusals(fl: Fluxlite) -> dict[str, str]:
    return dict(ln.split(": ", 1) for ln in (fl.tmp / "forge.log").read_text().splitlines())


def test_pool_forged_requests_are_dropped(flux_instance: FluxInstance, fl: Fluxlite) -> None:
    proc, err = _forged(flux_instance, fl, "forge")
    assert proc.returncode == 0, err.decode()
    said = _refusals(fl)
    assert said["secret"].startswith("refused"), said  # gone before any task started
    assert {k for k, v in said.items() if not v.startswith("refused")} == set(), said
    out = (fl.tmp / "c.out").read_text()
    assert "FORGED" not in out and all(f"REAL v{i}" in out for i in range(3))
    rec = _record(fl)
    assert all(a["pid"] != 4242 and a["exit_code"] == 0 for a in _attempts(rec))
    assert [w["host"] for w in rec["pool"]["workers"]].count("forged") == 0
    assert len(rec["pool"]["workers"]) == 2 and rec["pool"]["dropped_requests"] >= 6
    text = err.decode()
    assert "pool: dropped a bad done request: not sealed with the pool's secret" in text
    assert "Traceback" not in text


def test_pool_malformed_requests_are_dropped(flux_instance: FluxInstance, fl: Fluxlite) -> None:
    proc, err = _forged(flux_instance, fl, "malformed")
    text = err.decode()
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    said = _refusals(fl)
    assert len(said) == 12 and all(v.startswith("refused") for v in said.values()), said
    # each one line, and the cluster's output whole: task lines, summary, JSON record
    dropped = [ln for ln in text.splitlines() if "dropped a bad" in ln]
    assert len(dropped) >= 7 and all(len(ln) < 300 for ln in dropped), dropped
    tasks, summary = cluster_lines((fl.tmp / "c.out").read_text())
    assert len(tasks) == 4 and summary["succeeded"] == "4"
    assert len(_record(fl)["pool"]["workers"]) == 2
    assert all("INACTIVE" in ln for ln in _pool_jobs(flux_instance) if ln)


# -- the checks themselves, on sealed requests a forger could not build -------------------
def test_pool_sealed_requests_are_checked_field_by_field() -> None:
    from fluxlite.cluster.pool import messages as m

    seal = m.Seal(os.urandom(32))
    other = m.Seal(os.urandom(32))
    doc = {"worker": 0, "rank": 0, "host": "h", "pid": 10, "guard": 9, "memory_mb": 5}
    assert m.check_hello(seal.open("s.hello", seal.seal("s.hello", doc)), 2) == doc
    for payload in (other.seal("s.hello", doc), seal.seal("s.want", doc), b"{not json",
                    b"", seal.seal("s.hello", doc)[:-1] + b" "):
        with pytest.raises(m.BadMessage):
            m.check_hello(seal.open("s.hello", payload), 2)
    bad_hellos = [{**doc, "worker": 2}, {**doc, "worker": -1}, {**doc, "worker": "0"},
                  {**doc, "worker": True}, {**doc, "pid": 0}, {**doc, "host": ["x"]},
                  {**doc, "memory_mb": 2**70}, {**doc, "extra": 1},
                  {k: v for k, v in doc.items() if k != "guard"}]
    for bad in bad_hellos:
        with pytest.raises(m.BadMessage):
            m.check_hello(bad, 2)
    for bad_sig in ({"signum": 999}, {"signum": 0}, {"signum": "9"}, {"signum": 9.0},
                    {"signum": 9, "reason": 5}, {"signum": 9, "x": 1}):
        with pytest.raises(m.BadMessage):
            m.check_signal(bad_sig)
    assert m.check_signal({"signum": 15, "reason": "r"}) == (15, "r")
    from fluxlite.cluster.formats import Task
    from fluxlite.cluster.records import Attempt

    good = m.encode_result(3, Attempt(task=Task(id="a"), number=1, pid=7, start=1.0))
    assert m.check_result(json.loads(json.dumps(good)))["key"] == 3
    for field, value in (("key", 0), ("start", float("nan")), ("duration", 1e300),
                         ("pid", "abc"), ("status", [0, 0, 999, False, None]),
                         ("status", [0]), ("rusage", {"x": "y"}), ("stdout", 5),
                         ("stdout_info", [False]), ("job_record", [1]), ("gpus", [1])):
        with pytest.raises(m.BadMessage):
            m.check_result({**good, field: value})
    with pytest.raises(m.BadMessage):
        m.check_reports({"worker": 0, "results": {}}, m.DONE_FIELDS, "done", 2)
    with pytest.raises(m.BadMessage):
        m.decode_task({"key": 1, "id": "a", "seq": 0, "try": 1, "cores": 0, "gpus": 0,
                       "memory_mb": 0, "argv": ["x"]})
    with pytest.raises(m.BadMessage):
        m.check_gone({"worker": 0, "by": "someone", "why": "", "killed": [], "left": 0}, 2)


def test_pool_sealed_but_malformed_requests_are_dropped(flux_instance: FluxInstance,
                                                        tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests that carry the pool's own seal (what a broken worker could send) are still
    checked: a second hello for a worker index, a result from a worker that was not given
    that attempt, a signal that does not exist, results that are not a list."""
    import flux  # type: ignore[import-not-found]

    from fluxlite.cluster.executors import TaskFiles
    from fluxlite.cluster.formats import Task
    from fluxlite.cluster.records import Attempt
    from fluxlite.cluster.pool import messages as m
    from fluxlite.cluster.pool.coordinator import PoolExecutor

    monkeypatch.chdir(tmp_path)
    pool = PoolExecutor(TaskFiles(str(tmp_path), 4096), uri=flux_instance.uri,
                        env=flux_instance.env)
    h = flux.Flux(flux_instance.uri)
    try:
        tries = [Attempt(task=Task(id=f"real{i}", argv=["/bin/sh", "-c", "sleep 1; echo REAL"]),
                         number=1) for i in range(2)]
        assert all(pool.start(x) is None for x in tries)
        # one a worker: the one on rank 1 is the target, w0 on rank 0 (where this test's
        # requests come from) the forger
        a = next(x for x in tries if x.rank == 1)
        given = int(a.worker[1:])
        other = next(i for i, w in pool.workers.items() if w.rank == 0)

        def ask(topic: str, doc: dict[str, Any], rank: int = 0) -> str:
            fut = h.rpc(topic, pool.seal.seal(topic, doc), nodeid=rank)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                pool.poll(0.05)  # the coordinator's reactor runs in its poll
                with contextlib.suppress(OSError, TimeoutError):
                    fut.wait_for(0.05)  # this handle's, in the future's wait
                    break
            try:
                return f"accepted {fut.get_str()}"
            except OSError as err:
                return f"refused {err.strerror}"

        svc = pool.service
        pid0 = pool.workers[0].pid
        key = next(k for k, x in pool.inflight.items() if x is a)  # as the messages name it
        fake = m.encode_result(key, Attempt(task=a.task, number=1, pid=4242, start=1.0))
        fake["stdout"] = "FORGED\n"
        said = {
            "hello again": ask(f"{svc}.hello", {"worker": 0, "rank": 0, "host": "again",
                                                "pid": 4242, "guard": 4243, "memory_mb": 0}),
            "not its attempt": ask(f"{svc}.done", {"worker": other, "results": [fake]}),
            "results not a list": ask(f"{svc}.done", {"worker": given, "results": {}}),
            "unknown field": ask(f"{svc}.want", {"worker": given, "more": 1}),
            "worker out of range": ask(f"{svc}.done", {"worker": 7, "results": []}),
            "from another rank": ask(f"{svc}.done", {"worker": given, "results": [fake]}),
        }
        said["gone, queued not keys"] = ask(f"{svc}.gone", {
            "worker": other, "by": "guard", "why": "x", "killed": [], "left": 0,
            "queued": ["1"]})
        for w in (0, 1):
            said[f"signal 999 w{w}"] = ask(f"{svc}-w{w}.signal", {"signum": 999}, w)
            said[f"signal '9' w{w}"] = ask(f"{svc}-w{w}.signal", {"signum": "9"}, w)
            said[f"hold, reason a number w{w}"] = ask(f"{svc}-w{w}.hold", {"reason": 5}, w)
            said[f"give, count 0 w{w}"] = ask(f"{svc}-w{w}.give", {"count": 0}, w)
        done: list[Attempt] = []
        deadline = time.monotonic() + 20
        while len(done) < 2 and time.monotonic() < deadline:
            done += pool.poll(0.2)
        assert sorted(x.task.id for x in done) == ["real0", "real1"], done
        assert all(x.ok and x.pid != 4242 and x.stdout == b"REAL\n" for x in done), done
        # "not its attempt" was taken in (answered) but its result dropped
        assert said.pop("not its attempt") == "accepted {}"
        assert all(v.startswith("refused") for v in said.values()), said
        assert pool.workers[0].pid == pid0 and len(pool.workers) == 2
        assert not any(w.lost for w in pool.workers.values()), [
            w.lost_why for w in pool.workers.values()]
        assert pool.dropped >= 5
    finally:
        pool.close()
    assert all("INACTIVE" in ln for ln in _pool_jobs(flux_instance) if ln)
