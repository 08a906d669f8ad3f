"""Unmodified PegasusLite jobs (Pegasus 5.0 and 5.1 shapes) on fluxlite's worker package:
the real pegasus-lite-common.sh finds the tools through PEGASUS_HOME, and Pegasus's own
parsers judge what the job printed."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import judge, oracle_available, parse_records, sha256_of
from tests.pegasuslite.conftest import LiteJob, make_home


def _says_exitcode(err: str, rc: int) -> bool:
    """PegasusLite's last line names the job's code, as 5.1.2 writes it or as the 5.1
    branch does after a failure before the task (", tool originally exited with …")."""
    last = err.rstrip().splitlines()[-1]
    return re.fullmatch(rf"PegasusLite: exitcode {rc}(, tool originally exited with "
                        r"exitcode \d+)?", last) is not None

needs_oracle = pytest.mark.skipif(not oracle_available(),
                                  reason="Pegasus's parsers are not installed")


@needs_oracle
@pytest.mark.parametrize("version", ["5.0.9", "5.1.3"])
def test_job_succeeds_with_records_pegasus_reads(tmp_path: Path, version: str) -> None:
    job = LiteJob(tmp_path, version=version, lfns=("f.a", "f.b"))
    home = make_home(tmp_path, version)
    rc, out, err = job.run(home)
    assert rc == 0, err + out
    assert f"Using existing Pegasus binaries in {home}/bin" in err
    assert "PegasusLite: exitcode 0" in err
    assert (job.outdir / "f.out").read_bytes() == (job.data / "f.a").read_bytes()
    judge(job.out)  # pegasus-exitcode's verdict
    records = parse_records(job.out)
    inv = [r for r in records if r.get("invocation")]
    assert len(inv) == 1 and inv[0]["exitcode"] == 0, records
    assert inv[0]["transformation"] == "mytool" and inv[0]["derivation"] == "ID0000001"
    outputs = inv[0]["outputs"]
    assert outputs["f.out"].get_attribute_value("checksum.value") == sha256_of(
        job.data / "f.a")
    multipart = [r for r in records if r.get("multipart")]
    attempts = next(r["integrity_verification_attempts"] for r in multipart
                    if "integrity_verification_attempts" in r)
    assert sorted(a["lfn"] for a in attempts) == ["f.a", "f.b", "mytool"]
    assert all(a["success"] for a in attempts)
    summary = next(r["integrity_summary"] for r in multipart if "integrity_summary" in r)
    assert summary["succeeded"] == 3 and summary["failed"] == 0
    transfers = [r for r in multipart if "transfer_attempts" in r]
    assert len(transfers) == 2, multipart  # stage-in and stage-out
    lfns = sorted(a["lfn"] for r in transfers for a in r["transfer_attempts"])
    assert lfns == ["f.a", "f.b", "f.out", "mytool"]
    assert not any(job.wn_tmp.glob("pegasus.*")), "the work directory is removed"


@needs_oracle
def test_corrupted_input_fails_the_job_before_the_task(tmp_path: Path) -> None:
    job = LiteJob(tmp_path)
    with open(job.data / "f.a", "r+b") as fh:  # one byte changed after the .meta was made
        fh.write(b"X")
    rc, out, err = job.run(make_home(tmp_path, job.version))
    # the code is PegasusLite's to choose (5.1.2 passes on the failed command's, 1; the 5.1
    # branch maps a failure before the task to 71): any failure, said on its last line
    assert rc != 0, err
    assert _says_exitcode(err, rc), err
    assert "does not match the calculated checksum" in err
    assert not (tmp_path / "task.pid").exists(), "the task never ran"
    with pytest.raises(Exception) as exc:  # noqa: PT011 - pegasus-exitcode's JobFailed
        judge(job.out)
    assert type(exc.value).__name__ == "JobFailed"
    attempts = [r for r in parse_records(job.out) if "integrity_verification_attempts" in r]
    bad = [a for r in attempts for a in r["integrity_verification_attempts"]
           if not a["success"]]
    assert [a["lfn"] for a in bad] == ["f.a"] and bad[0]["sha256_expected"]


def test_term_mid_task_ends_everything(tmp_path: Path) -> None:
    job = LiteJob(tmp_path)
    home = make_home(tmp_path, job.version)
    p = job.popen(home, {"PEGASUS_TEST_SLEEP": "60"})
    pidfile = tmp_path / "task.pid"
    deadline = time.monotonic() + 60
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert p.poll() is None, job.err.read_text()
        assert time.monotonic() < deadline, job.err.read_text()
        time.sleep(0.05)
    task_pid = int(pidfile.read_text())
    # as a batch system stops a job: TERM to the job's process group (which we started)
    os.killpg(p.pid, signal.SIGTERM)
    rc = p.wait(timeout=30)
    err = job.err.read_text()
    assert rc != 0, err
    assert "PegasusLite: exitcode 0" not in err
    with pytest.raises(ProcessLookupError):
        os.kill(task_pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(p.pid, 0)  # nothing of the job is left
    assert not any(job.wn_tmp.glob("pegasus.*"))
    assert "- invocation: True" in job.out.read_text(), "kickstart still wrote its record"


def test_package_of_another_version_is_not_used(tmp_path: Path) -> None:
    job = LiteJob(tmp_path, version="5.1.3")
    home = make_home(tmp_path, "5.1.2")
    rc, out, err = job.run(home)
    assert rc != 0, err
    assert _says_exitcode(err, rc), err
    assert (f"Warning: Pegasus binaries in {home}/bin do not match Pegasus version used "
            "for current workflow") in err
    assert "- invocation" not in out
    assert not (tmp_path / "task.pid").exists()


@needs_oracle
def test_checkpoint_time_terms_the_task_and_its_checkpoint_is_saved(tmp_path: Path) -> None:
    """The planner's checkpointing shape: kickstart -k/-K, then the checkpoint stage-out
    whose failures are ignored, then the outputs."""
    job = LiteJob(tmp_path, kickstart_args="-k 1 -K 2", checkpoint=True)
    rc, out, err = job.run(make_home(tmp_path, job.version),
                           {"PEGASUS_TEST_SLEEP": "30", "PEGASUS_TEST_CHECKPOINT": "1"},
                           timeout=60)
    assert rc != 0, err
    assert "Job timed out, sending SIGTERM" in err
    assert "sending SIGKILL" not in err  # the application stopped on the TERM
    assert (job.outdir / "checkpoint.dat").read_text() == "saved\n"
    inv = [r for r in parse_records(job.out) if r.get("invocation")]
    assert len(inv) == 1 and inv[0]["exitcode"] != 0  # the task's work is not done
    with pytest.raises(Exception) as exc:  # noqa: PT011 - pegasus-exitcode's JobFailed
        judge(job.out)
    assert type(exc.value).__name__ == "JobFailed"
    assert not any(job.wn_tmp.glob("pegasus.*"))
