"""fluxlite cluster with the flux executor, in a real `flux start --test-size=2` instance."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import Fluxlite, judge, sha256_of
from tests.flux.conftest import FluxInstance
from tests.integration.test_cluster_local import DIAMOND, cluster_lines

PY_FLUXLITE = f"{sys.executable} -m fluxlite"


@pytest.fixture
def fi(flux_instance: FluxInstance) -> FluxInstance:
    return flux_instance


def _run(fi: FluxInstance, fl: Fluxlite, *args: str, timeout: float = 120):  # noqa: ANN202
    p = fl.run("cluster", *args, "-o", "c.out", env=fi.env, timeout=timeout)
    out = (fl.tmp / "c.out").read_text() if (fl.tmp / "c.out").exists() else ""
    return p, out


def test_flux_executor_diamond(fi: FluxInstance, fl: Fluxlite) -> None:
    (fl.tmp / "d.dag").write_text(DIAMOND)
    p, out = _run(fi, fl, "d.dag", "--json", "c.json")
    assert p.returncode == 0, p.stderr.decode()
    order = (fl.tmp / "order.log").read_text().split()
    assert order[0] == "a" and order[-1] == "d"
    tasks, summary = cluster_lines(out)
    assert summary["stat"] == "ok" and summary["executor"] == "flux"
    assert all(t.get("flux_id") for t in tasks)
    rec = json.loads((fl.tmp / "c.json").read_text())
    ids = [t["attempts"][0]["flux_id"] for t in rec["tasks"]]
    # every task was a Flux job of this instance, with the cores it asked for
    b = fi.job_info(ids[1])
    assert b["ncores"] == 2 and b["returncode"] == 0
    assert 'flux: "' in out and "to-stdout" in out
    (fl.tmp / "c.out").rename(fl.tmp / "job.out")
    judge(fl.tmp / "job.out", message=None)


def test_flux_executor_retries_and_rescue(fi: FluxInstance, fl: Fluxlite) -> None:
    (fl.tmp / "f.dag").write_text(
        'TASK a /bin/sh -c "echo a >> ran.log"\n'
        'TASK b -t 2 /bin/sh -c "echo b >> ran.log; test -e fixed"\n'
        'TASK c /bin/sh -c "echo c >> ran.log"\n'
        "EDGE a b\nEDGE b c\n")
    p, out = _run(fi, fl, "f.dag")
    assert p.returncode == 5
    tasks, summary = cluster_lines(out)
    assert [t["try"] for t in tasks if t["id"] == "b"] == ["1", "2"]
    assert summary["failed"] == "1" and summary["not_run"] == "1"
    (fl.tmp / "fixed").touch()
    (fl.tmp / "ran.log").unlink()
    p, out = _run(fi, fl, "f.dag")
    assert p.returncode == 0, p.stderr.decode()
    assert (fl.tmp / "ran.log").read_text().split() == ["b", "c"]


def test_flux_executor_pegasus_cluster_list(fi: FluxInstance, fl: Fluxlite) -> None:
    (fl.tmp / "m.in").write_text("#@ 1 tr::a ID1\necho one | tr o O > one.txt\n"
                                 "#@ 2 tr::b ID2\n/bin/true\n")
    p, out = _run(fi, fl, "m.in", "--executor", "flux")
    assert p.returncode == 0, p.stderr.decode()
    assert (fl.tmp / "one.txt").read_text() == "One\n"
    tasks, _ = cluster_lines(out)
    assert {t["name"] for t in tasks} == {"tr::a", "tr::b"}


def test_flux_executor_json_job_list(fi: FluxInstance, fl: Fluxlite, data: Path) -> None:
    (data / "in.txt").write_text("payload\n")
    res = fl.tmp / "results"
    jobs = staged_pair(data, res)
    (fl.tmp / "jobs.json").write_text(json.dumps({"tasks": jobs}))
    p, _ = _run(fi, fl, "jobs.json", "--json", "c.json")
    assert p.returncode == 0, p.stderr.decode()
    assert (res / "out.txt").read_text() == "payload\npayload\n"
    rec = json.loads((fl.tmp / "c.json").read_text())
    for t in rec["tasks"]:
        a = t["attempts"][0]
        assert a["flux_id"] and a["job_record"]["success"]
        # the job knew the Flux job it ran in
        assert a["job_record"]["jobids"]["flux"] == a["flux_id"]


def test_nested_instance(fi: FluxInstance, fl: Fluxlite) -> None:
    (fl.tmp / "d.dag").write_text(DIAMOND)
    p, out = _run(fi, fl, "d.dag", "--nested", "--nodes", "2", "--cores", "4",
                  "--json", "c.json")
    assert p.returncode == 0, p.stderr.decode()
    _, summary = cluster_lines(out)
    assert summary["stat"] == "ok" and summary["executor"] == "flux"
    rec = json.loads((fl.tmp / "c.json").read_text())
    nested = rec["nested"]
    assert nested and nested["jobid"]
    info = fi.job_info(nested["jobid"])
    assert info["nnodes"] == 2 and info["name"] == "fluxlite-cluster"
    assert info["state"] == "INACTIVE"  # shut down at the end
    # the tasks ran in the sub-instance, not in this one
    task_id = rec["tasks"][0]["attempts"][0]["flux_id"]
    p2 = fi.flux("jobs", "--json", task_id, check=False)
    assert p2.returncode != 0


def test_nested_refuses_tasks_too_big(fi: FluxInstance, fl: Fluxlite) -> None:
    def nested_jobs() -> int:
        return fi.flux("jobs", "-a", "-n", "-o", "{name}").stdout.split().count(
            "fluxlite-cluster")

    before = nested_jobs()
    (fl.tmp / "big.dag").write_text("TASK a -c 8 /bin/true\n")
    p, _ = _run(fi, fl, "big.dag", "--nested", "--nodes", "1", "--cores", "2")
    assert p.returncode == 2
    assert b"big.dag:1: task 'a' asks for 8 cores" in p.stderr
    assert nested_jobs() == before  # refused before any instance was started


def test_batch_job_time_limit_and_memo(fi: FluxInstance, fl: Fluxlite) -> None:
    (fl.tmp / "t.dag").write_text('TASK quick /bin/true\nTASK slow /bin/sleep 60\n'
                                  "EDGE quick slow\n")
    script = fl.tmp / "batch.sh"
    script.write_text(f"#!/bin/sh\ncd {fl.tmp}\nexec {PY_FLUXLITE} cluster t.dag "
                      f"--executor local -o c.out --progress 0.5\n")
    env = fl.env(fi.env)
    jobid = fi.flux("batch", "-n1", "--time-limit=8s", f"--output={fl.tmp}/batch.out",
                    str(script), env=env, cwd=fl.tmp).stdout.strip()
    info = fi.wait_job(jobid, timeout=60)
    assert info["returncode"] == 14, (fl.tmp / "batch.out").read_text()
    _, summary = cluster_lines((fl.tmp / "c.out").read_text())
    assert summary["stopped"] == "time limit" and summary["succeeded"] == "1"
    assert (fl.tmp / "t.dag.rescue").read_text().count("DONE quick") == 1
    memo = fi.flux("jobs", "-n", "-o", "{user.fluxlite.phase} {user.fluxlite.done} "
                   "{user.fluxlite.exit_code}", jobid).stdout.split()
    assert memo == ["failed", "1", "14"]  # the last memo: how the cluster ended


def test_flux_executor_time_limit_cancels_jobs(fi: FluxInstance, fl: Fluxlite) -> None:
    (fl.tmp / "t.dag").write_text("TASK quick /bin/true\nTASK slow /bin/sleep 60\n"
                                  "TASK other /bin/sleep 60\nEDGE quick slow\n")
    p, out = _run(fi, fl, "t.dag", "--executor", "flux", "--max-wall-time", "0.05",
                  "--time-margin", "1", "--json", "c.json")
    assert p.returncode == 14, p.stderr.decode()
    tasks, summary = cluster_lines(out)
    assert summary["stopped"] == "time limit" and summary["failed"] == "0"
    stopped = [t for t in tasks if t.get("stopped")]
    assert {t["id"] for t in stopped} == {"slow", "other"}
    # SIGTERM from the cancel: Flux's job shell reports it as exit code 143, so the raw wait
    # status of the job is 143 << 8
    assert all(t["status"] == str(143 << 8) for t in stopped)
    rec = json.loads((fl.tmp / "c.json").read_text())
    for t in rec["tasks"]:
        if t["id"] != "quick":
            jid = t["attempts"][0]["flux_id"]
            assert fi.job_info(jid)["state"] == "INACTIVE"


def test_flux_executor_forwarding(fi: FluxInstance, fl: Fluxlite) -> None:
    # PMC -f VAR=FILE and -F SRC=DEST work the same with Flux jobs as with local tasks
    (fl.tmp / "e.dag").write_text(
        'TASK one -f OUTVAR=collected.txt /bin/sh -c "echo $PMC_TASK > $OUTVAR"\n'
        'TASK two -F part.txt=collected.txt /bin/sh -c "echo $PMC_CPUS > part.txt"\n'
        "EDGE one two\n")
    p, _ = _run(fi, fl, "e.dag")
    assert p.returncode == 0, p.stderr.decode()
    assert (fl.tmp / "collected.txt").read_text() == "one\n1\n"
    assert not (fl.tmp / "part.txt").exists()


def test_nested_instance_is_not_left_behind_by_a_term_during_startup(
        fi: FluxInstance, fl: Fluxlite) -> None:
    import signal
    import time

    (fl.tmp / "n.dag").write_text("TASK a /bin/true\n")
    proc = fl.popen("cluster", "n.dag", "--nested", "--nodes", "1", "--cores", "1",
                    "-o", "c.out", env=fi.env)
    assert proc.stderr is not None
    seen = b""
    while b"waiting for it to start" not in seen:
        line = proc.stderr.readline()
        assert line, seen.decode()
        seen += line
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, (seen + err).decode()
    assert b"Traceback" not in err
    # the sub-instance job ends with the cluster instead of holding its cores
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = fi.flux("jobs", "-n", "--filter=pending,running", "--name=fluxlite-cluster",
                       "-o", "{id}").stdout.split()
        if not left:
            break
        time.sleep(0.2)
    assert left == []


def test_flux_executor_forwarding_of_a_failed_task_is_dropped(fi: FluxInstance,
                                                              fl: Fluxlite) -> None:
    # no descriptor crosses into a Flux job: $OUTVAR names a file there; as with PMC, what
    # a failed attempt forwards is dropped, and -t 0 is one try
    (fl.tmp / "e.dag").write_text(
        'TASK bad -t 0 -f OUTVAR=collected.txt -F p.txt=collected.txt /bin/sh -c '
        '"echo bad > $OUTVAR; echo bad > p.txt; exit 1"\n'
        'TASK good -f OUTVAR=collected.txt /bin/sh -c "test -n \\"${OUTVAR##*[!0-9]*}\\" '
        '|| echo good > $OUTVAR"\n')
    p, out = _run(fi, fl, "e.dag", "--tries", "3")
    assert p.returncode == 5, p.stderr.decode()
    assert (fl.tmp / "collected.txt").read_text() == "good\n"
    assert not (fl.tmp / "p.txt").exists()
    tasks, _ = cluster_lines(out)
    assert [t["id"] for t in tasks].count("bad") == 1


def staged_pair(data: Path, res: Path) -> list[dict]:
    """Two JSON-list jobs with staging: first copies a verified input to an output, second
    (2 cores) reads that output back as its input."""
    return [
        {"id": "first", "executable": "/bin/cp", "arguments": ["in.txt", "mid.txt"],
         "inputs": [{"lfn": "in.txt", "urls": [f"file://{data}/in.txt"],
                     "sha256": sha256_of(data / "in.txt")}],
         "outputs": [{"lfn": "mid.txt", "urls": [f"file://{res}/mid.txt"]}]},
        {"id": "second", "after": ["first"], "executable": "/bin/sh",
         "arguments": ["-c", "cat mid.txt mid.txt > out.txt"],
         "resources": {"cores_per_task": 2},
         "inputs": [{"lfn": "mid.txt", "urls": [f"file://{res}/mid.txt"]}],
         "outputs": [{"lfn": "out.txt", "urls": [f"file://{res}/out.txt"]}]},
    ]
