"""Hostile job descriptions and command lines: refused at the front door.

Each case runs the real command line in a subprocess and asserts the documented exit code,
one line on stderr per problem naming it, no traceback, and nothing created: no worker
directory, no record, no marker of the task having run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Fluxlite, sha256_of


def _job(fl: Fluxlite, tmp: Path, extra: dict[str, Any] | str) -> Path:
    """A job whose task leaves a marker, with hostile fields merged in (or raw text)."""
    p = tmp / "job.json"
    if isinstance(extra, str):
        p.write_text(extra, encoding="utf-8", errors="surrogatepass")
        return p
    doc = {"fluxlite": 1, "executable": "/bin/sh",
           "arguments": ["-c", f"touch {tmp}/task-ran"],
           "records": {"kickstart": "-", "json": str(tmp / "rec.json")}, **extra}
    p.write_text(json.dumps(doc, allow_nan=True))
    return p


def _refused(fl: Fluxlite, tmp: Path, job: Path, *needles: str, code: int = 2,
             command: str = "run") -> list[str]:
    t0 = time.monotonic()
    p = fl.run(command, str(job), timeout=30)
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == code, err
    assert time.monotonic() - t0 < 10  # no spin, no wait
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    for needle in needles:
        assert any(needle in ln for ln in lines), (needle, err)
    assert not (tmp / "task-ran").exists()
    assert fl.leftover_workdirs() == []
    assert not (tmp / "rec.json").exists()
    if command == "run":
        assert p.stdout == b""  # not even the kickstart record: nothing started
    return lines


INF = float("inf")


@pytest.mark.parametrize(("extra", "where"), [
    ({"limits": {"maxwalltime": float("nan")}}, "limits.maxwalltime: must be a finite number"),
    ({"limits": {"kill_grace": float("nan")}}, "limits.kill_grace: must be a finite number"),
    ({"monitor": {"interval": float("nan")}}, "monitor.interval: must be a finite number"),
    ({"limits": {"maxwalltime": INF}}, "limits.maxwalltime: must be a finite number"),
    ({"monitor": {"interval": 1e300}}, "monitor.interval: must be at most 3600"),
    ({"limits": {"checkpoint_time": 1e300}}, "limits.checkpoint_time: must be at most"),
    ({"staging": {"attempts": 10**400}}, "staging.attempts: must be at most 100"),
    ({"records": {"stdio_bytes": 10**400}}, "records.stdio_bytes: must be at most"),
    ({"resources": {"cores_per_task": -(10**400)}}, "resources.cores_per_task: must be >= 1"),
    ({"staging": {"timeout": "1e9s"}}, "staging.timeout: '1e9s' is not a duration"),
])
def test_numbers_that_would_disable_a_limit_or_crash(fl: Fluxlite, tmp_path: Path,
                                                    extra: dict[str, Any], where: str) -> None:
    lines = _refused(fl, tmp_path, _job(fl, tmp_path, extra), where)
    assert len(lines) == 1


def test_a_key_given_twice(fl: Fluxlite, tmp_path: Path) -> None:
    text = ('{"fluxlite": 1, "executable": "/bin/true", "executable": "/bin/rm", '
            '"environment": {"A": "1", "A": "2"}}')
    _refused(fl, tmp_path, _job(fl, tmp_path, text), "executable: is given more than once",
             "environment.A: is given more than once")


@pytest.mark.parametrize(("extra", "where"), [
    ({"records": {"kickstart": "-", "json": "/tmp/r\x00.json"}}, "records.json"),
    ({"meta": ["in\x00.meta"]}, "meta[0]"),
    ({"workdir": {"base": "/tmp/w\x00"}}, "workdir.base"),
    ({"write_meta": "o\x00.meta"}, "write_meta"),
    ({"arguments": ["-c", "touch task-ran\x00"]}, "arguments[1]"),
    ({"environment": {"A\x00B": "x"}}, "environment."),
    ({"environment": {"A": "x\x00y"}}, "environment.A"),
    ({"inputs": [{"lfn": "f", "urls": ["file:///etc/hostname%00.txt"]}]}, "inputs[0].urls[0]"),
    ({"outputs": [{"lfn": "f", "urls": ["file:///tmp/out%00"]}]}, "outputs[0].urls[0]"),
])
def test_nul_characters_are_spec_errors_before_anything_is_created(
        fl: Fluxlite, tmp_path: Path, extra: dict[str, Any], where: str) -> None:
    for command in ("validate", "run"):
        _refused(fl, tmp_path, _job(fl, tmp_path, extra), where, command=command)


@pytest.mark.parametrize(("extra", "needle"), [
    ({"inputs": [{"lfn": "dir/", "urls": ["file:///etc/hostname"]}]},
     "inputs[0].lfn: 'dir/' ends with '/'"),
    ({"inputs": [{"lfn": ".fluxlite/stdout", "urls": ["file:///etc/hostname"]}]},
     "inputs[0].lfn: '.fluxlite/stdout' is inside .fluxlite/"),
    ({"outputs": [{"lfn": "./.fluxlite/x", "urls": ["file:///tmp/x"]}]},
     "outputs[0].lfn: './.fluxlite/x' is inside .fluxlite/"),
    ({"outputs": [{"lfn": "a", "urls": ["file:///tmp/same"], "optional": True},
                  {"lfn": "b", "urls": ["/tmp//same"], "optional": True}]},
     "outputs[1].urls[0]: '/tmp//same' is also the destination of outputs[0]"),
])
def test_names_that_cannot_work(fl: Fluxlite, tmp_path: Path, extra: dict[str, Any],
                                needle: str) -> None:
    for command in ("validate", "run"):
        _refused(fl, tmp_path, _job(fl, tmp_path, extra), needle, command=command)


def test_validate_reports_every_problem_at_once(fl: Fluxlite, tmp_path: Path) -> None:
    job = _job(fl, tmp_path, '{"bogus":1,"id":5,"placement":"foo"}')
    lines = _refused(fl, tmp_path, job, "bogus: unknown field", "id: must be a string",
                     "placement: must be one of local, flux, nested, not 'foo'",
                     "executable: is required", "fluxlite: is required", command="validate")
    assert all(ln.startswith(f"{job}: ") for ln in lines)


def test_a_missing_meta_file_stops_run_before_anything_exists(fl: Fluxlite,
                                                               tmp_path: Path) -> None:
    job = _job(fl, tmp_path, {"meta": [str(tmp_path / "missing.meta")]})
    _refused(fl, tmp_path, job, "meta[0]: cannot read", command="validate")
    _refused(fl, tmp_path, job, "meta[0]: cannot read")
    (tmp_path / "bad.meta").write_text('{"not": "a list"}')
    job = _job(fl, tmp_path, {"meta": ["bad.meta"]})  # relative to the job file
    _refused(fl, tmp_path, job, "meta[0]:", "must hold a JSON list")
    job = _job(fl, tmp_path, {"meta": ["/dev/zero"]})
    _refused(fl, tmp_path, job, "meta[0]: cannot read /dev/zero: not a regular file")


def test_destinations_that_cannot_be_written_are_known_before(fl: Fluxlite,
                                                              tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a directory should be")
    job = _job(fl, tmp_path, {
        "outputs": [{"lfn": "o", "urls": [f"file://{tmp_path}/blocker/sub/o"]}],
        "checkpoints": [{"lfn": "c", "url": f"file://{tmp_path}/blocker/c"}],
        "write_meta": str(tmp_path / "blocker" / "x.meta")})
    for command in ("validate", "run"):
        _refused(fl, tmp_path, job, "outputs[0].urls: no destination of 'o' can be written",
                 "checkpoints[0].url: no destination of 'c' can be written",
                 "write_meta: cannot write", command=command)


def test_the_executable_is_checked_by_validate(fl: Fluxlite, tmp_path: Path) -> None:
    job = _job(fl, tmp_path, {"executable": str(tmp_path / "no-such-tool")})
    _refused(fl, tmp_path, job, "executable: '", "does not exist", command="validate")
    # run reports it as kickstart does (127), still before anything is created
    p = fl.run("run", str(job))
    assert p.returncode == 127 and fl.leftover_workdirs() == []


def test_a_job_file_that_is_not_a_regular_file(fl: Fluxlite, tmp_path: Path) -> None:
    fifo = tmp_path / "job.fifo"
    os.mkfifo(fifo)
    for target in (str(fifo), "/dev/zero"):
        p = fl.run("validate", target, timeout=10)
        assert p.returncode == 2
        assert p.stderr.decode().strip() == f"{target}: cannot read job file: not a regular file"


def test_stdio_in_a_subdirectory_of_the_worker_directory(fl: Fluxlite, tmp_path: Path) -> None:
    job = _job(fl, tmp_path, {
        "arguments": ["-c", "echo out; echo err >&2"],
        "stdout": "logs/out.txt", "stderr": "logs/deeper/err.txt",
        "outputs": [{"lfn": "logs/deeper/err.txt", "urls": [f"file://{tmp_path}/res/err.txt"]}]})
    p = fl.run("run", str(job))
    assert p.returncode == 0, p.stderr.decode()
    assert (tmp_path / "res" / "err.txt").read_text() == "err\n"


def test_stdin_that_cannot_be_opened_is_not_exit_127(fl: Fluxlite, tmp_path: Path) -> None:
    job = _job(fl, tmp_path, {"stdin": "never-staged.txt"})
    p = fl.run("run", str(job))
    err = p.stderr.decode()
    assert p.returncode == 71, err
    assert "cannot open stdin" in err and "Traceback" not in err
    assert json.loads((tmp_path / "rec.json").read_text())["exit_code"] == 71


def _meta(path: Path, **sums: str) -> Path:
    path.write_text(json.dumps([{"_type": "file", "_id": lfn, "_attributes": {
        "checksum.type": "sha256", "checksum.value": v}} for lfn, v in sums.items()]))
    return path


def test_integrity_required(fl: Fluxlite, tmp_path: Path) -> None:
    data = tmp_path / "f.dat"
    data.write_text("payload\n")
    inputs = [{"lfn": "f.dat", "urls": [str(data)]}]
    # no checksum anywhere: decidable from the document alone
    job = _job(fl, tmp_path, {"integrity": "required", "inputs": inputs})
    for command in ("validate", "run"):
        _refused(fl, tmp_path, job, "inputs[0].sha256: is required for 'f.dat'",
                 command=command)
    # a meta file that lacks the lfn: found before anything is created
    _meta(tmp_path / "other.meta", other=sha256_of(data))
    job = _job(fl, tmp_path, {"integrity": "required", "inputs": inputs,
                              "meta": ["other.meta"]})
    _refused(fl, tmp_path, job, "inputs[0].sha256: is required for 'f.dat'")
    # and one that has it
    _meta(tmp_path / "in.meta", **{"f.dat": sha256_of(data)})
    job = _job(fl, tmp_path, {"integrity": "required", "inputs": inputs, "meta": ["in.meta"]})
    p = fl.run("run", str(job))
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads((tmp_path / "rec.json").read_text())["unverified"] == []


def test_an_input_no_meta_file_covers_is_logged_and_recorded(fl: Fluxlite,
                                                              tmp_path: Path) -> None:
    data = tmp_path / "f.dat"
    data.write_text("payload\n")
    _meta(tmp_path / "other.meta", other=sha256_of(data))
    job = _job(fl, tmp_path, {"inputs": [{"lfn": "f.dat", "urls": [str(data)]}],
                              "meta": ["other.meta"]})
    p = fl.run("run", str(job))
    assert p.returncode == 0, p.stderr.decode()
    assert "not verified (no sha256 in the job or its meta files): f.dat" in p.stderr.decode()
    assert json.loads((tmp_path / "rec.json").read_text())["unverified"] == ["f.dat"]


def test_relative_paths_are_relative_to_the_job_file(fl: Fluxlite, tmp_path: Path) -> None:
    jobs = tmp_path / "jobs"
    (jobs / "data").mkdir(parents=True)
    (jobs / "data" / "f.dat").write_text("payload\n")
    _meta(jobs / "in.meta", **{"f.dat": sha256_of(jobs / "data" / "f.dat")})
    (jobs / "job.json").write_text(json.dumps({
        "fluxlite": 1, "executable": "/bin/cat", "arguments": ["f.dat"], "stdout": "copy",
        "inputs": [{"lfn": "f.dat", "urls": ["data/f.dat"]}], "meta": ["in.meta"],
        "outputs": [{"lfn": "copy", "urls": ["results/copy"]}],
        "records": {"kickstart": None, "json": "rec.json"}, "write_meta": "out.meta"}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    p = fl.run("run", str(jobs / "job.json"), cwd=elsewhere)
    assert p.returncode == 0, p.stderr.decode()
    assert (jobs / "results" / "copy").read_text() == "payload\n"
    rec = json.loads((jobs / "rec.json").read_text())
    assert rec["unverified"] == [] and rec["integrity"][0]["success"]
    assert (jobs / "out.meta").exists() and list(elsewhere.iterdir()) == []


def test_durations_in_the_job_file(fl: Fluxlite, tmp_path: Path) -> None:
    job = _job(fl, tmp_path, {"limits": {"maxwalltime": "1h30m", "checkpoint_time": "1h"}})
    p = fl.run("run", "--dry-run", str(job))
    assert p.returncode == 0, p.stderr.decode()
    assert "TERM after 3600 s, KILL after 4500 s" in p.stdout.decode()
    job = _job(fl, tmp_path, {"arguments": ["-c", "exec sleep 30"],
                              "limits": {"checkpoint_time": "1s", "kill_grace": "2s"}})
    t0 = time.monotonic()
    p = fl.run("run", str(job))
    assert p.returncode == 143, p.stderr.decode()
    assert time.monotonic() - t0 < 10


def test_kickstart_numbers(fl: Fluxlite, tmp_path: Path) -> None:
    p = fl.run("kickstart", "-m", "0.5", "/bin/true")
    assert p.returncode == 0, p.stderr.decode()
    for value in ("nan", "1e300", "1" + "0" * 400):
        p = fl.run("kickstart", "-m", value, "/bin/true")
        assert p.returncode == 127
        err = p.stderr.decode()
        assert f"Invalid -m argument: {value}" in err and "Traceback" not in err


def test_one_duration_syntax_on_the_command_lines(fl: Fluxlite, tmp_path: Path) -> None:
    job = _job(fl, tmp_path, {})
    p = fl.run("batch-script", str(job), "-t", "40")
    assert p.returncode == 0, p.stderr.decode()
    assert "#FLUX: --time-limit=40s" in p.stdout.decode()
    p = fl.run("batch-script", str(job), "-t", "1h30m")
    assert "#FLUX: --time-limit=90m" in p.stdout.decode()
    for bad in ("nan", "inf", "1e300", "-5"):
        p = fl.run("batch-script", str(job), "-t", bad)
        assert p.returncode == 2
        err = p.stderr.decode().strip()
        assert err.startswith("fluxlite: error: --time-limit:") and "\n" not in err
    (tmp_path / "t.dag").write_text("TASK a /bin/true\n")
    p = fl.run("cluster", "t.dag", "--no-rescue", "--max-wall-time", "1h30m", "-o",
               str(tmp_path / "c.out"))
    assert p.returncode == 0, p.stderr.decode()
    for bad in ("nan", "inf", "0"):
        p = fl.run("cluster", "t.dag", "--no-rescue", "--max-wall-time", bad)
        assert p.returncode == 2 and "Traceback" not in p.stderr.decode()
        assert "--max-wall-time" in p.stderr.decode()


def test_a_json_job_list_keeps_its_relative_paths(fl: Fluxlite, tmp_path: Path) -> None:
    """The cluster runs each entry from a copy in its private directory: a relative meta
    file is still the one beside where the cluster was started, not one beside the copy."""
    data = tmp_path / "f.dat"
    data.write_text("payload\n")
    _meta(tmp_path / "in.meta", **{"f.dat": "0" * 64})  # wrong on purpose: it must be read
    jobs = [{"id": "t", "executable": "/bin/true", "meta": ["in.meta"],
             "inputs": [{"lfn": "f.dat", "urls": [f"file://{data}"]}]}]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    p = fl.run("cluster", "jobs.json", "--no-rescue", "-o", str(tmp_path / "c.out"))
    assert p.returncode == 5, p.stderr.decode()
    out = (tmp_path / "c.out").read_text()
    assert "checksum mismatch" in out or "checksum mismatch" in p.stderr.decode()
