"""fluxlite cluster --executor pool, in real `flux start --test-size=N` instances."""

from __future__ import annotations

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

from tests.conftest import Fluxlite, judge, parse_records
from tests.flux.conftest import FluxInstance, instance
from tests.flux.test_cluster_flux import staged_pair
from tests.integration.test_cluster_local import DIAMOND, cluster_lines


@pytest.fixture
def fi(flux_instance: FluxInstance) -> FluxInstance:
    return flux_instance


@pytest.fixture(scope="module")
def fi4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FluxInstance]:
    yield from instance(tmp_path_factory, 4)


def _run(fi: FluxInstance, fl: Fluxlite, *args: str, timeout: float = 120):  # noqa: ANN202
    p = fl.run("cluster", *args, "--executor", "pool", "-o", "c.out", env=fi.env,
               timeout=timeout)
    out = (fl.tmp / "c.out").read_text() if (fl.tmp / "c.out").exists() else ""
    return p, out


def _record(fl: Fluxlite) -> dict[str, Any]:
    return json.loads((fl.tmp / "c.json").read_text())


def _attempts(rec: dict[str, Any]) -> list[dict[str, Any]]:
    return [a | {"id": t["id"]} for t in rec["tasks"] for a in t["attempts"]]


def _pool_jobs(fi: FluxInstance) -> list[str]:
    return fi.flux("jobs", "-a", "-n", "--name=fluxlite-pool", "-o", "{id.dec} {state}"
                   ).stdout.split("\n")


def _left_behind(marker: str) -> list[int]:
    """Pids of processes (of this user) whose command line holds ``marker``."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(int(d))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("size", [2, 4])
def test_pool_spreads_over_every_rank(size: int, fi: FluxInstance, fi4: FluxInstance,
                                      fl: Fluxlite) -> None:
    inst = fi if size == 2 else fi4
    n = 8 * size
    (fl.tmp / "s.dag").write_text("".join(f"TASK t{i} /bin/sleep 0.2\n" for i in range(n)))
    p, out = _run(inst, fl, "s.dag", "--json", "c.json", "--no-rescue")
    assert p.returncode == 0, p.stderr.decode()
    tasks, summary = cluster_lines(out)
    assert summary["executor"] == "pool" and summary["succeeded"] == str(n)
    assert {t["rank"] for t in tasks} == {str(r) for r in range(size)}
    # the kickstart records name the host and the rank too
    recs = [r for r in parse_records(str(fl.tmp / "c.out")) if r.get("invocation")]
    assert len(recs) == n and all(r["hostname"] for r in recs)
    assert "flux_rank:" in out
    rec = _record(fl)
    attempts = _attempts(rec)
    assert all(a["worker"].startswith("w") and a["queue_wait"] >= 0 and a["run_time"] >= 0.2
               for a in attempts)
    assert len(rec["pool"]["workers"]) == size
    assert sum(w["tasks"] for w in rec["pool"]["workers"]) == n
    # the worker job is over: nothing of the pool is left on any rank
    jobs = [ln for ln in _pool_jobs(inst) if ln]
    assert jobs and all("INACTIVE" in ln for ln in jobs)
    assert _left_behind(rec["pool"]["service"]) == []


def test_pool_dag_order_resources_and_priorities(fi: FluxInstance, fl: Fluxlite) -> None:
    (fl.tmp / "d.dag").write_text(DIAMOND)
    p, out = _run(fi, fl, "d.dag", "--json", "c.json")
    assert p.returncode == 0, p.stderr.decode()
    order = (fl.tmp / "order.log").read_text().split()
    assert order[0] == "a" and order[-1] == "d"
    assert 'flux_rank: "' in out and "to-stdout" in out and "to-stderr" in out
    (fl.tmp / "c.out").rename(fl.tmp / "job.out")
    judge(fl.tmp / "job.out", message=None)
    # whole-node tasks (2 cores of 2): one at a time per rank, the highest priority first;
    # memory: a task of more than half the node's memory never beside another one
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    lines = [f"TASK big{i} -c 2 -p {i} /bin/sleep 0.3\n" for i in range(6)]
    lines += [f"TASK fat{i} -m {mem * 6 // 10} -p -1 /bin/sleep 0.3\n" for i in range(4)]
    (fl.tmp / "r.dag").write_text("".join(lines))
    p, out = _run(fi, fl, "r.dag", "--json", "c.json", "--no-rescue")
    assert p.returncode == 0, p.stderr.decode()
    attempts = sorted(_attempts(_record(fl)), key=lambda a: a["start_epoch"])
    by_rank: dict[int, list[dict[str, Any]]] = {}
    for a in attempts:
        by_rank.setdefault(a["rank"], []).append(a)
    assert set(by_rank) == {0, 1}
    for runs in by_rank.values():
        for x, y in itertools.pairwise(runs):
            assert y["start_epoch"] >= x["start_epoch"] + x["duration"] - 0.05, (x, y)
    assert {a["id"] for a in attempts[:2]} == {"big5", "big4"}
    assert all(a["id"].startswith("fat") for a in attempts[-4:])


def _wait_for(path: Path, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().split("\n")) > count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path}: fewer than {count} lines after {timeout} s")


def _pool_procs(fi: FluxInstance, rank: int) -> dict[str, int]:
    """The worker and the guard of the pool job this test started (the only pool job
    running) on broker ``rank`` of the test's own instance: the processes below that
    broker whose command line is the pool worker's (their memory and environment are not
    readable). The worker is the one whose children are tasks; the guard the other."""
    running = [ln.split()[0] for ln in _pool_jobs(fi) if ln.endswith(" RUN")]
    assert len(running) == 1, running
    broker = int(fi.flux("exec", "-r", str(rank), "flux", "getattr", "broker.pid").stdout)
    parent = {p: _parent(p) for p in _all_pids()}
    below, todo = set(), [broker]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in below]
        below.update(kids)
        todo.extend(kids)
    found = [p for p in below if _cmdline_has(p, b"fluxlite.cluster.pool.worker")]
    assert found, f"no pool worker below the broker of rank {rank}"
    worker = next((p for p in found
                   if any(pp == p and c not in found for c, pp in parent.items())), None)
    assert worker is not None, f"no worker with tasks among {sorted(found)}"
    return {"worker": worker, "guard": next((p for p in found if p != worker), 0)}


def _cmdline_has(pid: int, text: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return text in fh.read()
    except OSError:
        return False


def _all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _parent(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def _worker_pid(fi: FluxInstance, rank: int) -> int:
    """The pid of the worker on broker ``rank`` of the pool job this test started (see
    :func:`_pool_procs`)."""
    return _pool_procs(fi, rank)["worker"]


def _pool_of(fi: FluxInstance, fl: Fluxlite, n: int, body: str) -> subprocess.Popen[bytes]:
    """A pool cluster of ``n`` tasks that run ``body`` (two tries each), started."""
    (fl.tmp / "k.dag").write_text("".join(f"TASK t{i} -t 2 /bin/sh -c '{body}'\n"
                                          for i in range(n)))
    return fl.popen("cluster", "k.dag", "--executor", "pool", "-o", "c.out", "--json",
                    "c.json", "--no-rescue", env=fi.env)


def _kill_worker_1(fi: FluxInstance, fl: Fluxlite, proc: subprocess.Popen[bytes]) -> bytes:
    """KILL the worker of rank 1 once 4 tasks have started (run.log); the cluster's
    stderr once it ended."""
    try:
        _wait_for(fl.tmp / "run.log", 4)
        os.kill(_worker_pid(fi, 1), signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return err


def test_pool_worker_killed_mid_run(fi: FluxInstance, fl: Fluxlite) -> None:
    proc = _pool_of(fi, fl, 8, 'echo s $PMC_TASK >> run.log; sleep 1.5; '
                    'echo e $PMC_TASK >> run.log')
    err = _kill_worker_1(fi, fl, proc)
    assert proc.returncode == 0, err.decode()
    assert b"lost" in err
    tasks, summary = cluster_lines((fl.tmp / "c.out").read_text())
    attempts = _attempts(_record(fl))
    lost = [a for a in attempts if a["error"] and "was lost" in a["error"]]
    assert len(lost) == 2 and all(a["rank"] == 1 for a in lost), attempts  # its 2 slots
    assert summary["succeeded"] == "8" and summary["retries"] == "2", summary
    assert len(tasks) == 10
    ok = Counter(a["id"] for a in attempts if a["exit_code"] == 0)
    assert ok == {f"t{i}": 1 for i in range(8)}  # each once, never twice
    # the lost worker's tasks were killed with it: each task ended its work once
    log = (fl.tmp / "run.log").read_text().split("\n")
    ends = Counter(ln.split()[1] for ln in log if ln.startswith("e "))
    assert ends == {f"t{i}": 1 for i in range(8)}, log
    # the retries ran on the worker left
    assert all(a["rank"] == 0 for a in attempts if a["try"] == 2)


def test_pool_round_trips_and_queues(fi: FluxInstance, fl: Fluxlite) -> None:
    # small tasks: each worker keeps work queued beyond its slots, results come back in
    # batches with the next tasks, far fewer than one round trip a task
    n = 600
    (fl.tmp / "q.dag").write_text("".join(f"TASK t{i} /bin/true\n" for i in range(n)))
    p, out = _run(fi, fl, "q.dag", "--json", "c.json", "--no-rescue")
    assert p.returncode == 0, p.stderr.decode()
    _, summary = cluster_lines(out)
    assert summary["succeeded"] == str(n)
    pool = _record(fl)["pool"]
    msgs = pool["messages"]
    assert msgs["results"] == n and msgs["want"] + msgs["done"] < n / 4, msgs
    assert msgs["round_trips_per_task"] < 0.25, msgs
    assert all(w["queue"] > w["slots"] for w in pool["workers"]), pool["workers"]
    assert sum(w["tasks"] for w in pool["workers"]) == n and pool["queued_again"] == 0


def test_pool_worker_killed_with_tasks_queued(fi: FluxInstance, fl: Fluxlite) -> None:
    # quick tasks first (the queues grow), then slow ones: they queue on one worker (the
    # one the first of them starts on; the other takes some only when that queue has not
    # moved for a while), which is killed with 2 running and more waiting; those that
    # waited never ran: they run elsewhere, no try spent
    lines = [f"TASK q{i} -p 1 /bin/true\n" for i in range(60)]
    lines += [f"TASK s{i} -t 2 /bin/sh -c 'echo s $PMC_TASK $FLUX_TASK_RANK >> run.log; "
              f"sleep 1; echo e $PMC_TASK >> run.log'\n" for i in range(12)]
    (fl.tmp / "k.dag").write_text("".join(lines))
    proc = fl.popen("cluster", "k.dag", "--executor", "pool", "-o", "c.out", "--json",
                    "c.json", "--no-rescue", env=fi.env)
    try:
        _wait_for(fl.tmp / "run.log", 1)
        rank = int((fl.tmp / "run.log").read_text().split("\n")[0].split()[2])
        _wait_for(fl.tmp / "run.log", 4)
        os.kill(_worker_pid(fi, rank), signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    text = err.decode()
    assert proc.returncode == 0, text
    assert "task(s) that waited there and never started go to the other workers" in text
    rec = _record(fl)
    attempts = [a for a in _attempts(rec) if a["id"].startswith("s")]
    lost = [a for a in attempts if a["error"] and "was lost" in a["error"]]
    assert len(lost) == 2 and all(a["rank"] == rank for a in lost), attempts  # its 2 slots
    assert all("task killed" in a["error"] for a in lost), lost
    assert rec["pool"]["queued_again"] >= 1, rec["pool"]
    _, summary = cluster_lines((fl.tmp / "c.out").read_text())
    assert summary["succeeded"] == "72" and summary["retries"] == "2", summary
    assert len(attempts) == 14  # 12 tasks, 2 of them twice: the queued ones once
    assert Counter(a["try"] for a in attempts) == {1: 12, 2: 2}
    log = (fl.tmp / "run.log").read_text().split("\n")
    ends = Counter(ln.split()[1] for ln in log if ln.startswith("e "))
    assert ends == {f"s{i}": 1 for i in range(12)}, log
    starts = Counter(ln.split()[1] for ln in log if ln.startswith("s "))
    assert sum(starts.values()) == 14, log  # the queued ones started once, where they ran


def test_pool_queued_tasks_go_to_a_free_slot(flux_instance: FluxInstance, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Tasks queued behind long ones on a worker whose results stop coming are given back
    to a worker with free slots and nothing to start, and run there, once."""
    from fluxlite.cluster.executors import TaskFiles
    from fluxlite.cluster.formats import Task
    from fluxlite.cluster.records import Attempt
    from fluxlite.cluster.pool.coordinator import PoolExecutor

    monkeypatch.chdir(tmp_path)
    pool = PoolExecutor(TaskFiles(str(tmp_path), 4096), uri=flux_instance.uri,
                        env=flux_instance.env)
    try:
        busy, idle = list(pool.workers.values())  # the first said hello first: ties go to it
        pool.mean_run = 0.001  # as after many small tasks: deep queues
        for w in (busy, idle):
            pool._size_queue(w)
        idle.prefetch = 0  # what is not running goes to the busy one's queue
        # a queue takes no task wider than the worker's slots: it could never start there
        assert busy.room > busy.slots
        assert not pool.fits(Task(id="wide", argv=["/bin/true"], cores=busy.slots + 1))

        def attempt(tid: str, secs: float) -> Attempt:
            return Attempt(task=Task(id=tid, argv=["/bin/sleep", str(secs)]), number=1)

        t0 = time.time()
        tries = [attempt("long0", 4), attempt("short0", 0.2), attempt("long1", 4),
                 attempt("short1", 0.2), attempt("queued0", 0.5), attempt("queued1", 0.5)]
        assert all(pool.start(a) is None for a in tries)
        where = {a.task.id: a.worker for a in tries}
        assert where["long0"] == where["long1"] == where["queued0"] == where["queued1"]
        assert where["short0"] == where["short1"] == idle.name, where
        done: list[Attempt] = []
        deadline = time.monotonic() + 30
        while len(done) < 6 and time.monotonic() < deadline:
            done += pool.poll(0.2)
        got = {a.task.id: a for a in done}
        assert sorted(got) == sorted(where), got
        assert all(a.ok for a in done)
        # the queued ones ran on the idle worker, long before the long ones ended
        assert got["queued0"].worker == got["queued1"].worker == idle.name, got
        assert all(got[q].start < t0 + 2.5 for q in ("queued0", "queued1")), got
        assert pool.given_back == 2 and pool.requeued == 0
        assert pool.info()["given_back"] == 2
    finally:
        pool.close()


def test_pool_fail_fast_starts_nothing_queued(fi: FluxInstance, fl: Fluxlite) -> None:
    # after the failure, what waits in the workers' queues comes back not started
    lines = [f"TASK t{i} /bin/sh -c 'echo $PMC_TASK >> ran.log'\n" for i in range(400)]
    lines[150] = "TASK t150 /bin/false\n"
    (fl.tmp / "f.dag").write_text("".join(lines))
    p, out = _run(fi, fl, "f.dag", "--fail-fast", "--json", "c.json", "--no-rescue")
    assert p.returncode == 5, p.stderr.decode()
    attempts = _attempts(_record(fl))
    held = [a for a in attempts if a["stopped"] == "fail-fast"]
    assert held and all(a["error"] == "not started (fail-fast)" for a in held), held
    ran = set((fl.tmp / "ran.log").read_text().split())
    assert not ran & {a["id"] for a in held}
    _, summary = cluster_lines(out)
    assert int(summary["succeeded"]) == len(ran) < 399, summary


def test_pool_term_to_the_coordinator(fi: FluxInstance, fl: Fluxlite) -> None:
    marker = f"{time.time() % 1000:.3f}"
    body = f"test -e fast || sleep 30{marker}; echo $PMC_TASK >> ran.log"
    lines = [f"TASK q{i} /bin/sh -c 'echo $PMC_TASK >> ran.log'\n" for i in range(3)]
    lines += [f"TASK s{i} /bin/sh -c '{body}'\n" for i in range(6)]
    lines += [f"EDGE q{i} s{i}\n" for i in range(3)]
    (fl.tmp / "t.dag").write_text("".join(lines))
    proc = fl.popen("cluster", "t.dag", "--executor", "pool", "-o", "c.out", env=fi.env)
    try:
        deadline = time.monotonic() + 30
        while len(_left_behind(f"sleep 30{marker}")) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_left_behind(f"sleep 30{marker}")) == 4  # 4 slots, all busy
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert _left_behind(f"sleep 30{marker}") == []  # nothing left on any rank
    assert all("INACTIVE" in ln for ln in _pool_jobs(fi) if ln)
    _, summary = cluster_lines((fl.tmp / "c.out").read_text())
    assert summary["stopped"] == "interrupted" and summary["succeeded"] == "3"
    assert (fl.tmp / "t.dag.rescue").read_text().count("DONE q") == 3
    (fl.tmp / "fast").touch()
    (fl.tmp / "ran.log").unlink()
    p, _ = _run(fi, fl, "t.dag")
    assert p.returncode == 0, p.stderr.decode()
    assert sorted((fl.tmp / "ran.log").read_text().split()) == [f"s{i}" for i in range(6)]


def test_pool_time_limit(fi: FluxInstance, fl: Fluxlite) -> None:
    (fl.tmp / "t.dag").write_text("TASK quick /bin/true\nTASK slow /bin/sleep 60\n"
                                  "TASK other /bin/sleep 60\nEDGE quick slow\n")
    t0 = time.monotonic()
    p, out = _run(fi, fl, "t.dag", "--max-wall-time", "0.05", "--time-margin", "1")
    assert p.returncode == 14, p.stderr.decode()
    assert time.monotonic() - t0 < 20
    tasks, summary = cluster_lines(out)
    assert summary["stopped"] == "time limit" and summary["failed"] == "0"
    assert {t["id"] for t in tasks if t.get("stopped")} == {"slow", "other"}


def test_pool_pegasus_cluster_list(fi: FluxInstance, fl: Fluxlite) -> None:
    (fl.tmp / "m.in").write_text("#@ 1 tr::a ID1\necho one | tr o O > one.txt\n"
                                 "#@ 2 tr::b ID2\n/bin/true\n")
    p, out = _run(fi, fl, "m.in")
    assert p.returncode == 0, p.stderr.decode()
    assert (fl.tmp / "one.txt").read_text() == "One\n"
    tasks, _ = cluster_lines(out)
    assert {t["name"] for t in tasks} == {"tr::a", "tr::b"}
    assert all("rank" in t for t in tasks)


def test_pool_json_job_list_with_staging_and_flux_placement(fi: FluxInstance, fl: Fluxlite,
                                                            data: Path) -> None:
    (data / "in.txt").write_text("payload\n")
    res = fl.tmp / "results"
    jobs = [
        *staged_pair(data, res),
        {"id": "apart", "after": ["first"], "placement": "flux", "executable": "/bin/true"},
    ]
    (fl.tmp / "jobs.json").write_text(json.dumps({"tasks": jobs}))
    p, _ = _run(fi, fl, "jobs.json", "--json", "c.json", timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    assert (res / "out.txt").read_text() == "payload\npayload\n"
    rec = _record(fl)
    got = {t["id"]: t["attempts"][0] for t in rec["tasks"]}
    assert all(a["job_record"]["success"] for a in got.values())
    assert got["first"]["rank"] is not None and got["second"]["rank"] is not None
    # the Flux-job tier: a job of its own, not the pool's
    assert "rank" not in got["apart"] and got["apart"]["flux_id"] != rec["pool"]["job"]
    assert fi.job_info(got["apart"]["flux_id"])["returncode"] == 0


def test_pool_mixed_with_flux_jobs_in_one_dag(fi: FluxInstance, fl: Fluxlite) -> None:
    (fl.tmp / "x.dag").write_text(
        "TASK a /bin/sh -c 'echo a >> order.log'\n"
        "TASK wide -N 2 -c 2 /bin/sh -c 'echo $FLUX_TASK_RANK >> wide.log'\n"
        "TASK z /bin/sh -c 'echo z >> order.log'\n"
        "EDGE a wide\nEDGE wide z\n")
    p, out = _run(fi, fl, "x.dag", "--json", "c.json")
    assert p.returncode == 0, p.stderr.decode()
    assert (fl.tmp / "order.log").read_text().split() == ["a", "z"]
    assert sorted((fl.tmp / "wide.log").read_text().split()) == ["0", "1"]
    rec = _record(fl)
    got = {t["id"]: t["attempts"][0] for t in rec["tasks"]}
    pool_job = rec["pool"]["job"]
    assert got["a"]["flux_id"] == pool_job and got["z"]["flux_id"] == pool_job
    assert got["wide"]["flux_id"] != pool_job and "rank" not in got["wide"]
    assert fi.job_info(got["wide"]["flux_id"])["nnodes"] == 2
    # a task no node can hold beside the workers: one line, nothing run
    (fl.tmp / "h.dag").write_text("TASK a /bin/true\nTASK huge -c 3 /bin/true\n")
    p, _ = _run(fi, fl, "h.dag", "--no-rescue")
    assert p.returncode == 2
    err = p.stderr.decode().strip().splitlines()[-1]
    assert "h.dag:2: task 'huge' asks for 3 core(s)" in err and "Traceback" not in err
    assert all("INACTIVE" in ln for ln in _pool_jobs(fi) if ln)


def test_pool_oracle_accepts_success_and_rejects_failure(fi: FluxInstance,
                                                         fl: Fluxlite) -> None:
    from Pegasus.exitcode import JobFailed

    dag = "TASK a /bin/echo a\nTASK b /bin/true\nEDGE a b\n"
    (fl.tmp / "o.dag").write_text(dag)
    p, _ = _run(fi, fl, "o.dag", "--no-rescue")
    assert p.returncode == 0, p.stderr.decode()
    judge(fl.tmp / "c.out", message=None)
    (fl.tmp / "o.dag").write_text(dag.replace("/bin/true", "/bin/false"))
    p, _ = _run(fi, fl, "o.dag", "--no-rescue")
    assert p.returncode == 5
    with pytest.raises(JobFailed, match="cluster-summary"):
        judge(fl.tmp / "c.out", message=None)


def test_pool_worker_that_cannot_start(fi: FluxInstance, fl: Fluxlite) -> None:
    # the Python of the node of rank 1 is broken: one line naming it, nothing run
    bad = fl.tmp / "python"
    bad.write_text(f"#!/bin/sh\nif [ \"$FLUX_TASK_RANK\" = 1 ]; then\n"
                   f"  echo 'python: cannot start here' >&2; exit 3\nfi\n"
                   f'exec {os.path.realpath(os.sys.executable)} "$@"\n')
    bad.chmod(0o755)
    (fl.tmp / "a.dag").write_text("TASK a /bin/sh -c 'echo a >> ran.log'\n")
    t0 = time.monotonic()
    p = fl.run("cluster", "a.dag", "--executor", "pool", "-o", "c.out",
               env={**fi.env, "FLUXLITE_POOL_PYTHON": str(bad)}, timeout=60)
    assert time.monotonic() - t0 < 30
    assert p.returncode != 0
    err = p.stderr.decode().strip().splitlines()
    assert "Traceback" not in p.stderr.decode()
    assert err[-1] == ("fluxlite: error: pool worker 1 on rank 1 did not start: it exited with code 3: "
                       "python: cannot start here"), err
    assert not (fl.tmp / "ran.log").exists()
    assert all("INACTIVE" in ln for ln in _pool_jobs(fi) if ln)


def _cores_per_node(fi: FluxInstance) -> int:
    return max(int(n) for n in fi.flux("resource", "list", "-n", "-o", "{ncores}",
                                        "--states=up").stdout.split())


def test_pool_job_flux_refuses_fails_at_once(fi: FluxInstance, fl: Fluxlite) -> None:
    # more workers a node than a node has cores: Flux refuses the pool's job at once, and
    # so does the cluster, with Flux's reason in one line (not after its startup timeout)
    (fl.tmp / "a.dag").write_text("TASK a /bin/sh -c 'echo a >> ran.log'\n")
    t0 = time.monotonic()
    p = fl.run("cluster", "a.dag", "--executor", "pool", "-o", "c.out", "--workers-per-node",
               str(_cores_per_node(fi) + 1), env=fi.env, timeout=100)
    assert time.monotonic() - t0 < 10
    text = p.stderr.decode()
    assert p.returncode == 71, text
    assert "Traceback" not in text
    last = text.strip().splitlines()[-1]
    assert last.startswith("fluxlite: error: pool job "), last
    assert "did not start: unsatisfiable request" in last, last
    assert last.endswith("(Flux exception 'alloc')"), last
    assert not (fl.tmp / "ran.log").exists()
    assert all("INACTIVE" in ln for ln in _pool_jobs(fi) if ln)


def test_pool_job_cancelled_before_it_starts_fails_at_once(fi: FluxInstance,
                                                          fl: Fluxlite) -> None:
    # the instance is full: the pool's job waits; cancelled there, the cluster ends at once
    hold = fi.flux("submit", f"-N{fi.size}", "--exclusive", "sleep", "300").stdout.strip()
    try:
        (fl.tmp / "a.dag").write_text("TASK a /bin/sh -c 'echo a >> ran.log'\n")
        proc = fl.popen("cluster", "a.dag", "--executor", "pool", "-o", "c.out", env=fi.env)
        try:
            deadline = time.monotonic() + 30
            while not (pending := [ln.split()[0] for ln in _pool_jobs(fi)
                                   if ln.endswith(" SCHED")]):
                assert time.monotonic() < deadline and proc.poll() is None, "no pool job"
                time.sleep(0.05)
            t0 = time.monotonic()
            fi.flux("cancel", "-m", "enough waiting", pending[0])
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    finally:
        fi.flux("cancel", hold)
    assert time.monotonic() - t0 < 5
    text = err.decode()
    assert proc.returncode == 71, text
    assert "Traceback" not in text
    last = text.strip().splitlines()[-1]
    assert "did not start: enough waiting (Flux exception 'cancel')" in last, last
    assert not (fl.tmp / "ran.log").exists()


def test_pool_progress_memo_on_the_batch_job(fi: FluxInstance, fl: Fluxlite) -> None:
    (fl.tmp / "p.dag").write_text("".join(f"TASK t{i} /bin/sleep 0.1\n" for i in range(12)))
    script = fl.tmp / "batch.sh"
    script.write_text(f"#!/bin/sh\ncd {fl.tmp}\nexec {os.sys.executable} -m fluxlite "
                      f"cluster p.dag --executor pool -o c.out --progress 0.5\n")
    jobid = fi.flux("batch", "-N2", f"--output={fl.tmp}/batch.out", str(script),
                    env=fl.env(fi.env), cwd=fl.tmp).stdout.strip()
    info = fi.wait_job(jobid, timeout=90)
    assert info["returncode"] == 0, (fl.tmp / "batch.out").read_text()
    memo = fi.flux("jobs", "-n", "-o", "{user.fluxlite.phase} {user.fluxlite.done} "
                   "{user.fluxlite.pool.done} {user.fluxlite.pool.workers}", jobid
                   ).stdout.split()
    assert memo == ["done", "12", "12", "2"], memo
    _, summary = cluster_lines((fl.tmp / "c.out").read_text())
    assert summary["executor"] == "pool" and summary["succeeded"] == "12"


def test_pool_in_a_nested_instance(fi: FluxInstance, fl: Fluxlite) -> None:
    (fl.tmp / "n.dag").write_text("".join(f"TASK t{i} /bin/sleep 0.1\n" for i in range(8)))
    p, out = _run(fi, fl, "n.dag", "--nested", "--nodes", "2", "--cores", "4", "--json",
                  "c.json", "--no-rescue")
    assert p.returncode == 0, p.stderr.decode()
    rec = _record(fl)
    assert rec["nested"]["nodes"] == 2 and rec["pool"]["job"]
    assert {a["rank"] for a in _attempts(rec)} == {0, 1}
    # the pool was a job of the nested instance, which is gone: none in this one
    assert fi.job_info(rec["nested"]["jobid"])["state"] == "INACTIVE"
    assert rec["pool"]["job"] not in fi.flux("jobs", "-a", "-n", "-o", "{id.f58}").stdout


@pytest.fixture
def fi3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FluxInstance]:
    """An instance of its own: the test kills one of its brokers."""
    yield from instance(tmp_path_factory, 3)


def test_pool_rank_lost_mid_run(fi3: FluxInstance, fl: Fluxlite) -> None:
    proc = _pool_of(fi3, fl, 12, "sleep 1.5; echo $PMC_TASK >> done.log")
    try:
        deadline = time.monotonic() + 30
        while not _pool_busy(fi3) and time.monotonic() < deadline:
            time.sleep(0.1)
        broker = int(fi3.flux("exec", "-r", "2", "flux", "getattr", "broker.pid").stdout)
        os.kill(broker, signal.SIGKILL)  # the broker of rank 2 of this test's own instance
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()
    assert b"on rank 2" in err and b"lost" in err
    attempts = _attempts(_record(fl))
    lost = [a for a in attempts if a["error"] and "was lost" in a["error"]]
    assert lost and all(a["rank"] == 2 for a in lost)
    assert all(a["rank"] != 2 for a in attempts if a["try"] == 2)
    done = (fl.tmp / "done.log").read_text().split()
    assert sorted(done) == sorted(f"t{i}" for i in range(12))  # each once


def _pool_busy(fi: FluxInstance) -> bool:
    """The pool's workers are up and busy: its job runs and tasks have started."""
    return any(ln.endswith(" RUN") for ln in _pool_jobs(fi)) and bool(
        _left_behind("sleep 1.5; echo"))


def test_pool_workers_per_node(fi: FluxInstance, fl: Fluxlite) -> None:
    (fl.tmp / "w.dag").write_text("".join(f"TASK t{i} /bin/sleep 0.2\n" for i in range(8)))
    p, _ = _run(fi, fl, "w.dag", "--workers-per-node", "2", "--json", "c.json",
                "--no-rescue")
    assert p.returncode == 0, p.stderr.decode()
    rec = _record(fl)
    workers = rec["pool"]["workers"]
    assert len(workers) == 4 and all(w["slots"] == 1 for w in workers)
    assert sorted(w["rank"] for w in workers) == [0, 0, 1, 1]
    assert {a["worker"] for a in _attempts(rec)} == {"w0", "w1", "w2", "w3"}, (p.stderr.decode()[-3000:], rec["pool"], _attempts(rec))


def test_pool_coordinator_run_as_a_job(fi: FluxInstance, fl: Fluxlite) -> None:
    # a job's KVS is its own namespace: the workers find the pool's secret there
    (fl.tmp / "j.dag").write_text("TASK a /bin/true\nTASK b /bin/true\n")
    p = fi.flux("run", "-n1", sys.executable, "-m", "fluxlite", "cluster", "j.dag",
                "--executor", "pool", "-o", "c.out", env=fl.env(fi.env), cwd=fl.tmp,
                check=False, timeout=90)
    assert p.returncode == 0, p.stderr
    _, summary = cluster_lines((fl.tmp / "c.out").read_text())
    assert summary["executor"] == "pool" and summary["succeeded"] == "2"
