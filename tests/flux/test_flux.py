"""fluxlite inside a real Flux instance: context, memos, time limits, placement, submission."""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Fluxlite, parse_records
from tests.flux.conftest import FluxInstance

F58 = re.compile(r"^[ƒf][1-9A-HJ-NP-Za-km-z]+$")
PY_FLUXLITE = f"{sys.executable} -m fluxlite"


def _records(tmp: Path) -> dict[str, str]:
    return {"kickstart": str(tmp / "ks.yml"), "json": str(tmp / "rec.json")}


def _json(tmp: Path) -> dict[str, Any]:
    return json.loads((tmp / "rec.json").read_text())


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def _batch(fi: FluxInstance, fl: Fluxlite, script: str, *opts: str) -> str:
    """Submit a batch script with the test's environment; its job id."""
    p = fl.tmp / "batch.sh"
    p.write_text(script)
    env = fl.env(fi.env)
    return fi.flux("batch", "-n1", f"--output={fl.tmp}/batch.out", *opts, str(p), env=env,
                   cwd=fl.tmp).stdout.strip()


def _phase(fi: FluxInstance, jobid: str) -> str:
    out = fi.flux("jobs", "-n", "-o", "{id.f58} {user.fluxlite.phase}", jobid).stdout.split()
    return out[1] if len(out) > 1 else ""


def test_run_in_batch_job_knows_its_job(fi: FluxInstance, fl: Fluxlite, data: Path) -> None:
    task = _script(data / "task.sh", "sleep 4\necho hello > out.txt\n")
    job = fl.write_job({"executable": str(task), "records": _records(fl.tmp),
                        "outputs": [{"lfn": "out.txt", "urls": [f"file://{data}/out.txt"]}]})
    jobid = _batch(fi, fl, f"#!/bin/sh\nexec {PY_FLUXLITE} run {job}\n", "--time-limit=3m")
    seen = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ph = _phase(fi, jobid)
        seen.add(ph)
        if ph in ("done", "failed"):
            break
        time.sleep(0.3)
    info = fi.wait_job(jobid)
    assert info["returncode"] == 0, (fl.tmp / "batch.out").read_text()
    # progress was visible while it ran, and the last phase stays after the end
    assert "running" in seen, seen
    assert _phase(fi, jobid) == "done"
    rec = _json(fl.tmp)
    fx = rec["flux"]
    assert fx["jobid"] == jobid
    assert fx["jobid_source"] == "instance" and fx["instance_level"] == 1
    assert fx["resources"]["nnodes"] >= 1 and fx["resources"]["ncores"] >= 1
    assert fx["resources"]["nodelist"]
    assert 0 < fx["timeleft"] <= 180
    # the checkpoint schedule follows the batch job's time limit
    sched = rec["schedule"]
    assert sched["source"] == "flux" and sched["walltime"] <= 180
    assert sched["term_after"] == pytest.approx(sched["walltime"] - 10, abs=0.5)
    assert rec["jobids"]["flux"] == fx["jobid"]
    ks = (fl.tmp / "ks.yml").read_text()
    assert f'flux: "{fx["jobid"]}"' in ks
    assert parse_records(fl.tmp / "ks.yml")
    assert (data / "out.txt").read_text() == "hello\n"


@pytest.mark.parametrize("usr1", ["schedule", "forward"])
def test_batch_time_limit_reached(fi: FluxInstance, fl: Fluxlite, data: Path, usr1: str) -> None:
    # the task checkpoints on TERM, and on the warning (USR1) if it gets it; nothing else
    # stops it. By default the warning is fluxlite's own: the task never sees it.
    task = _script(data / "task.sh",
                   "trap 'echo warned >> state.ckpt' USR1\n"
                   "trap 'echo term >> state.ckpt; exit 143' TERM\n"
                   "i=0; while [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done\n")
    ckpt = data / "ckpt" / "state.ckpt"
    ckpt.parent.mkdir()
    # a task that checkpoints on the warning asks for it
    job = fl.write_job({"executable": str(task), "records": _records(fl.tmp),
                        "signals": {"usr1": usr1},
                        "checkpoints": [{"lfn": "state.ckpt", "url": f"file://{ckpt}"}]})
    script = fl.run("batch-script", str(job), "--time-limit=20s",
                    f"--output={fl.tmp}/batch.out", env=fi.env)
    assert script.returncode == 0, script.stderr
    (fl.tmp / "b.sh").write_bytes(script.stdout)
    t0 = time.time()
    jobid = fi.flux("batch", str(fl.tmp / "b.sh"), env=fl.env(fi.env), cwd=fl.tmp).stdout.strip()
    info = fi.wait_job(jobid, timeout=90)
    out = (fl.tmp / "batch.out").read_text()
    rec = _json(fl.tmp)
    # TERMed by fluxlite before Flux's own limit, its checkpoint staged out
    assert rec["task"]["timed_out"] == "term", out
    assert rec["task"]["status"]["exitcode"] == 143
    assert rec["exit_code"] == 143 and info["returncode"] == 143
    sent = [e for e in rec["signals"] if e["direction"] == "sent"]
    assert any(e["signal"] == "SIGUSR1" and e["direction"] == "received"
               for e in rec["signals"]), rec["signals"]
    if usr1 == "forward":
        assert ckpt.read_text().splitlines() == ["warned", "term"]
        assert [e["signal"] for e in sent][:2] == ["SIGUSR1", "SIGTERM"], rec["signals"]
    else:
        assert ckpt.read_text().splitlines() == ["term"]
        assert [e["signal"] for e in sent][:1] == ["SIGTERM"], rec["signals"]
        assert "time-limit warning" in sent[0]["reason"]
        assert "time limit: TERM at" in out
    term = next(e for e in sent if e["signal"] == "SIGTERM")
    assert term["time"] < t0 + 20
    assert info.get("exception_type") in (None, "")  # the job ended before its limit
    assert parse_records(fl.tmp / "ks.yml")


def test_placement_flux_one_task_per_broker(fi: FluxInstance, fl: Fluxlite,
                                            data: Path) -> None:
    task = _script(data / "task.sh", 'echo "task $FLUX_TASK_RANK broker $(flux getattr rank)"\n')
    job = fl.write_job({"executable": str(task), "placement": "flux",
                        "resources": {"tasks": 2, "nodes": 2},
                        "records": _records(fl.tmp), "stdout": "task.out",
                        "outputs": [{"lfn": "task.out", "urls": [f"file://{data}/task.out"]}]})
    p = fl.run("run", str(job), env=fi.env)
    assert p.returncode == 0, p.stderr.decode()
    lines = sorted((data / "task.out").read_text().splitlines())
    assert lines == ["task 0 broker 0", "task 1 broker 1"]
    rec = _json(fl.tmp)
    tid = rec["jobids"]["flux-task"]
    assert rec["flux"]["task"]["jobid"] == tid and rec["flux"]["task"]["tasks"] == 2
    info = fi.job_info(tid)
    assert info["nnodes"] == 2 and info["ntasks"] == 2 and info["returncode"] == 0
    assert f'flux-task: "{tid}"' in (fl.tmp / "ks.yml").read_text()
    assert parse_records(fl.tmp / "ks.yml")


def test_placement_flux_failing_task(fi: FluxInstance, fl: Fluxlite, data: Path) -> None:
    task = _script(data / "task.sh", "echo failing >&2\nexit 3\n")
    job = fl.write_job({"executable": str(task), "placement": "flux",
                        "records": _records(fl.tmp)})
    p = fl.run("run", str(job), env=fi.env)
    assert p.returncode == 3, p.stderr.decode()
    assert "PegasusLite: exitcode 3" in p.stderr.decode()
    rec = _json(fl.tmp)
    assert rec["exit_code"] == 3 and rec["failed_phase"] == "task"
    assert rec["task"]["status"]["exitcode"] == 3
    stderr = [s for s in rec["task"]["stdio"] if s["name"] == "stderr"][0]
    assert stderr["tail"] == "failing\n"
    assert fi.job_info(rec["jobids"]["flux-task"])["returncode"] == 3
    recs = parse_records(fl.tmp / "ks.yml")
    assert recs and recs[0]["exitcode"] == 3


def test_placement_flux_checkpoint_schedule(fi: FluxInstance, fl: Fluxlite,
                                            data: Path) -> None:
    # TERM through Flux at the checkpoint time: the task writes its checkpoint and ends
    task = _script(data / "task.sh",
                   "trap 'echo saved > state.ckpt; exit 143' TERM\n"
                   "i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n")
    ckpt = data / "state.ckpt"
    job = fl.write_job({"executable": str(task), "placement": "flux",
                        "limits": {"checkpoint_time": 1, "maxwalltime": 30},
                        "checkpoints": [{"lfn": "state.ckpt", "url": f"file://{ckpt}"}],
                        "records": _records(fl.tmp)})
    p = fl.run("run", str(job), env=fi.env)
    assert p.returncode == 143, p.stderr.decode()
    assert ckpt.read_text() == "saved\n"
    rec = _json(fl.tmp)
    assert rec["task"]["timed_out"] == "term"
    sent = [e for e in rec["signals"] if e["direction"] == "sent"]
    assert [e["signal"] for e in sent] == ["SIGTERM"]
    assert sent[0]["target"] == f"flux job {rec['jobids']['flux-task']}"


def test_placement_flux_kill_after_grace(fi: FluxInstance, fl: Fluxlite, data: Path) -> None:
    # a task that ignores TERM is killed through Flux when the schedule says so
    task = _script(data / "task.sh",
                   "trap '' TERM\n"
                   "i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n")
    job = fl.write_job({"executable": str(task), "placement": "flux",
                        "limits": {"checkpoint_time": 1, "maxwalltime": 11},
                        "records": _records(fl.tmp)})
    t0 = time.monotonic()
    p = fl.run("run", str(job), env=fi.env)
    assert time.monotonic() - t0 < 20
    assert p.returncode == 128 + 9, p.stderr.decode()
    rec = _json(fl.tmp)
    # the job shell reports a task killed by a signal as 128 + signal
    assert rec["task"]["timed_out"] == "kill" and rec["task"]["status"]["code"] == 137
    sent = [e["signal"] for e in rec["signals"] if e["direction"] == "sent"]
    assert sent == ["SIGTERM", "SIGKILL"]
    assert fi.job_info(rec["jobids"]["flux-task"])["state"] == "INACTIVE"
    assert parse_records(fl.tmp / "ks.yml")


def test_placement_flux_forwards_fluxlites_signals(fi: FluxInstance, fl: Fluxlite,
                                                   data: Path) -> None:
    task = _script(data / "task.sh",
                   "trap 'echo usr1 >> state.ckpt' USR1\n"
                   "trap 'echo term >> state.ckpt; exit 143' TERM\n"
                   "echo started > started\n"
                   "i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n")
    ckpt = data / "state.ckpt"
    job = fl.write_job({"executable": str(task), "placement": "flux",
                        "workdir": {"base": str(data)}, "signals": {"usr1": "forward"},
                        "checkpoints": [{"lfn": "state.ckpt", "url": f"file://{ckpt}"}],
                        "records": _records(fl.tmp)})
    proc = fl.popen("run", str(job), env=fi.env)
    deadline = time.monotonic() + 30
    while not list(data.glob("fluxlite.*/started")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGUSR1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err.decode()
    assert ckpt.read_text().splitlines() == ["usr1", "term"]
    rec = _json(fl.tmp)
    sent = [(e["signal"], e["reason"]) for e in rec["signals"] if e["direction"] == "sent"]
    assert sent == [("SIGUSR1", "checkpoint warning forwarded"), ("SIGTERM", "forwarded")]
    assert "state.ckpt" in rec["staged_after_signal"]


def test_nested_placement(fi: FluxInstance, fl: Fluxlite, data: Path) -> None:
    task = _script(data / "task.sh",
                   'echo "$FLUX_URI" > uri\n'
                   "flux getattr instance-level > level\n"
                   "flux submit --cc=1-8 --wait --quiet true || exit 9\n"
                   "flux jobs -a -n -o '{status}' > inner\n")
    job = fl.write_job({"executable": str(task), "placement": "nested",
                        "resources": {"tasks": 2, "nodes": 2},
                        "workdir": {"keep": "always"}, "records": _records(fl.tmp)})
    p = fl.run("run", str(job), env=fi.env)
    assert p.returncode == 0, p.stderr.decode()
    rec = _json(fl.tmp)
    wd = Path(rec["workdir"])
    assert (wd / "level").read_text().strip() == "1"
    assert (wd / "inner").read_text().split() == ["COMPLETED"] * 8
    tid = rec["jobids"]["flux-task"]
    info = fi.job_info(tid)
    assert info["state"] == "INACTIVE" and info["nnodes"] == 2
    # the sub-instance is gone: nothing answers at its URI any more
    gone = fi.flux("getattr", "size", env={"FLUX_URI": (wd / "uri").read_text().strip()},
                   check=False, timeout=20)
    assert gone.returncode != 0


def _staging_job(fl: Fluxlite, data: Path, code: int = 0) -> Path:
    task = _script(data / "task.sh", f"echo result > out.txt\nexit {code}\n")
    return fl.write_job({"executable": str(task), "name": "staged",
                         "resources": {"time_limit": 120}, "records": _records(fl.tmp),
                         "outputs": [{"lfn": "out.txt", "urls": [f"file://{data}/out.txt"]}]})


def test_submit_wait(fi: FluxInstance, fl: Fluxlite, data: Path) -> None:
    job = _staging_job(fl, data)
    p = fl.run("submit", str(job), "--wait", f"--output={fl.tmp}/batch.out", env=fi.env)
    assert p.returncode == 0, p.stderr.decode()
    jobid = p.stdout.decode().strip()
    assert F58.match(jobid), jobid
    assert (data / "out.txt").read_text() == "result\n"
    rec = _json(fl.tmp)
    assert rec["exit_code"] == 0 and rec["jobids"]["flux"] == jobid
    info = fi.job_info(jobid)
    assert info["returncode"] == 0 and info["name"] == "staged"
    assert parse_records(fl.tmp / "ks.yml")


def test_submit_wait_returns_fluxlite_exit_code(fi: FluxInstance, fl: Fluxlite,
                                                data: Path) -> None:
    job = _staging_job(fl, data, code=5)
    p = fl.run("submit", str(job), "--wait", f"--output={fl.tmp}/batch.out", env=fi.env)
    assert p.returncode == 5, p.stderr.decode()
    assert _json(fl.tmp)["exit_code"] == 5


def test_batch_script_with_flux_batch(fi: FluxInstance, fl: Fluxlite, data: Path) -> None:
    job = _staging_job(fl, data)
    p = fl.run("batch-script", str(job), f"--output={fl.tmp}/batch.out", env=fi.env)
    assert p.returncode == 0, p.stderr.decode()
    script = p.stdout.decode()
    assert "#FLUX: --time-limit=2m" in script and "#FLUX: --signal=SIGUSR1@" in script
    (fl.tmp / "b.sh").write_text(script)
    jobid = fi.flux("batch", str(fl.tmp / "b.sh"), env=fl.env(fi.env), cwd=fl.tmp).stdout.strip()
    info = fi.wait_job(jobid)
    assert info["returncode"] == 0, (fl.tmp / "batch.out").read_text()
    assert info["name"] == "staged"
    assert (data / "out.txt").read_text() == "result\n"
    rec = _json(fl.tmp)
    assert rec["exit_code"] == 0 and rec["flux"]["jobid_source"] == "instance"
    assert parse_records(fl.tmp / "ks.yml")


@pytest.fixture
def fi(flux_instance: FluxInstance) -> FluxInstance:
    return flux_instance


def test_instance_env_is_usable(fi: FluxInstance) -> None:
    assert fi.flux("getattr", "size").stdout.strip() == str(fi.size)


def test_cancel_of_kickstart_ends_its_task_in_a_session_of_its_own(
        fi: FluxInstance, fl: Fluxlite, data: Path) -> None:
    # flux cancel: TERM to kickstart (forwarded, ignored by the task), KILL after -K; and
    # what left the session with setsid goes too
    pids = data / "pids"
    task = _script(data / "task.sh", "trap '' TERM\nsetsid sleep 1234.9 &\necho $! > "
                   f"{pids}.tmp\necho $$ >> {pids}.tmp\nmv {pids}.tmp {pids}\nsleep 1234.8\n")
    jobid = fi.flux("submit", sys.executable, "-m", "fluxlite", "kickstart", "-K", "1",
                    str(task), env=fl.env(fi.env), cwd=fl.tmp).stdout.strip()
    deadline = time.monotonic() + 60
    while not pids.exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    fi.flux("cancel", jobid)
    fi.wait_job(jobid, timeout=60)
    import psutil

    time.sleep(0.5)
    left = [int(p) for p in pids.read_text().split() if psutil.pid_exists(int(p))
            and psutil.Process(int(p)).status() != psutil.STATUS_ZOMBIE]
    for pid in left:  # the test's own processes: never leave them running
        psutil.Process(pid).kill()
    assert left == []


def test_the_memo_of_a_failed_job_carries_its_cause(fi: FluxInstance, fl: Fluxlite,
                                                    data: Path) -> None:
    job = fl.write_job({"executable": "/bin/sh", "arguments": ["-c", "exit 3"],
                        "records": _records(fl.tmp)})
    jobid = _batch(fi, fl, f"#!/bin/sh\nexec {PY_FLUXLITE} run {job}\n", "--time-limit=3m")
    info = fi.wait_job(jobid)
    assert info["returncode"] == 3
    out = fi.flux("jobs", "-n", "-o", "{user.fluxlite.phase}|{user.fluxlite.cause}",
                  jobid).stdout.strip()
    assert out == "failed|exit 3", out
    assert "job failed (exit 3): exit 3" in (fl.tmp / "batch.out").read_text()
