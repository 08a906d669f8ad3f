"""`batch-script` and `submit` against a real Flux: hostile values in every directive, job
dependencies, and a `flux cancel` of a job whose task ignores TERM."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Fluxlite
from tests.flux.conftest import FluxInstance
from tests.integration.hostile.test_flux_submit import HOSTILE


@pytest.fixture
def fi(flux_instance: FluxInstance) -> FluxInstance:
    return flux_instance


def _task(data: Path, body: str = "true\n") -> Path:
    task = data / "task.sh"
    task.write_text("#!/bin/sh\n" + body)
    task.chmod(0o755)
    return task


@pytest.mark.parametrize("value", HOSTILE)
def test_flux_directive_parser_reads_every_value_back(value: str) -> None:
    from flux.job.directives import DirectiveParser  # type: ignore[import-not-found]

    from fluxlite.flux.submit import directive_word

    script = f"#!/bin/bash\n#FLUX: --job-name={directive_word(value)}\ntrue\n"
    (d,) = DirectiveParser(io.StringIO(script)).directives
    assert d.action == "SETARGS" and d.args == [f"--job-name={value}"]


def test_flux_batch_takes_every_directive_with_hostile_values(fi: FluxInstance, fl: Fluxlite,
                                                              data: Path) -> None:
    name, queue, bank = "my \"job\" it's #1 '''", "q'\"'; $(x) #", "b\\ank\"\"\" x"
    job = fl.write_job({"executable": str(_task(data)), "name": name,
                        "resources": {"nodes": 1, "tasks": 1, "cores_per_task": 1,
                                      "gpus_per_task": 1, "time_limit": 600,
                                      "queue": queue, "bank": bank}})
    out, err = "o u't\"#{{id}}.out", "e;r`r`'''.err"
    p = fl.run("batch-script", str(job), "--output", out, "--error", err,
               "--dependency", "afterany:ƒ2kWN7xZ", env=fi.env)
    assert p.returncode == 0, p.stderr.decode()
    (fl.tmp / "b.sh").write_bytes(p.stdout)
    # the queue and bank do not exist here: --dry-run shows what flux batch makes of them
    spec = json.loads(fi.flux("batch", "--dry-run", str(fl.tmp / "b.sh"), cwd=fl.tmp).stdout)
    system = spec["attributes"]["system"]
    assert system["job"]["name"] == name
    assert system["queue"] == queue and system["bank"] == bank
    assert system["dependencies"] == [{"scheme": "afterany", "value": "ƒ2kWN7xZ"}]
    assert system["duration"] == 600
    (slot,) = [r for r in spec["resources"][0]["with"] if r["type"] == "slot"]
    assert {r["type"]: r["count"] for r in slot["with"]} == {"core": 1, "gpu": 1}
    assert spec["resources"][0]["exclusive"] is True
    shell = system["shell"]["options"]
    assert shell["output"]["stdout"]["path"] == out
    assert shell["output"]["stderr"]["path"] == err
    assert shell["signal"]["timeleft"] > 0
    # and run for real, with the name and the output files (no queue, bank, GPU or
    # dependency: this instance has none of them)
    p = fl.run("batch-script", str(job.parent / job.name), "--output", out, "--error", err,
               env=fi.env)
    script = "\n".join(ln for ln in p.stdout.decode().splitlines()
                       if not ln.startswith(("#FLUX: --queue", "#FLUX: --bank",
                                             "#FLUX: --gpus")))
    (fl.tmp / "b2.sh").write_text(script + "\n")
    jobid = fi.flux("batch", str(fl.tmp / "b2.sh"), env=fl.env(fi.env), cwd=fl.tmp).stdout.strip()
    info = fi.wait_job(jobid)
    assert info["name"] == name and info["returncode"] == 0, info
    assert (fl.tmp / out.replace("{{id}}", jobid)).exists()
    assert (fl.tmp / err).exists()


def test_submit_dependency_waits_for_the_other_job(fi: FluxInstance, fl: Fluxlite,
                                                   data: Path) -> None:
    first = fi.flux("submit", "sleep", "2").stdout.strip()
    job = fl.write_job({"executable": str(_task(data))})
    p = fl.run("submit", str(job), "--dependency", f"afterok:{first}", "--wait",
               f"--output={fl.tmp}/batch.out", env=fi.env)
    assert p.returncode == 0, p.stderr.decode()
    second = p.stdout.decode().strip()
    a, b = fi.job_info(first), fi.job_info(second)
    assert b["t_run"] >= a["t_inactive"], (a, b)
    # afternotok of a job that succeeded can never be met: Flux says so, in one line
    p = fl.run("submit", str(job), "--dependency", f"afternotok:{first}",
               f"--output={fl.tmp}/batch2.out", env=fi.env)
    err = p.stderr.decode().strip().splitlines()
    assert p.returncode == 71 and len(err) == 1 and "afternotok" in err[0], err


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for this purpose
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_cancel_of_a_submitted_job_ends_everything_within_the_kill_timeout(
        fi: FluxInstance, fl: Fluxlite, data: Path) -> None:
    # a task that ignores TERM and writes a checkpoint; its pid and fluxlite's (its parent)
    pids = fl.tmp / "pids"
    task = _task(data, f"trap '' TERM\necho \"$$ $PPID\" > {pids}.tmp && mv {pids}.tmp {pids}\n"
                       "echo saved > state.ckpt\n"
                       "i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n")
    ckpt = data / "ckpt" / "state.ckpt"
    ckpt.parent.mkdir()
    job = fl.write_job({"executable": str(task),
                        "records": {"json": str(fl.tmp / "rec.json")},
                        "checkpoints": [{"lfn": "state.ckpt", "url": f"file://{ckpt}"}]})
    p = fl.run("submit", str(job), f"--output={fl.tmp}/batch.out", env=fi.env)
    assert p.returncode == 0, p.stderr.decode()
    jobid = p.stdout.decode().strip()
    deadline = time.monotonic() + 60
    while not pids.exists():
        assert time.monotonic() < deadline, (fl.tmp / "batch.out").read_text()
        time.sleep(0.05)
    task_pid, fluxlite_pid = (int(x) for x in pids.read_text().split())
    fi.flux("cancel", jobid)
    t0 = time.monotonic()  # the cancel is in: Flux's kill timeout runs from here
    fi.wait_job(jobid, timeout=30)
    # Flux's kill timeout is 5 s: the task and fluxlite end within it, not after
    while (_alive(task_pid) or _alive(fluxlite_pid)) and time.monotonic() < t0 + 15:
        time.sleep(0.05)
    took = time.monotonic() - t0
    left = [p for p in (task_pid, fluxlite_pid) if _alive(p)]
    for pid in left:  # never leave them behind, even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left and took < 5.5, (took, (fl.tmp / "batch.out").read_text())
    rec = json.loads((fl.tmp / "rec.json").read_text())
    assert rec["exit_code"] in (128 + signal.SIGKILL, 128 + signal.SIGTERM), rec["exit_code"]
    assert ckpt.read_text() == "saved\n"
    assert fl.leftover_workdirs() == []
