"""`fluxlite run` end to end: real files, real processes, the real command line."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import Fluxlite, sha256_of
from tests.jobs import example_job, partial_files, script


def test_example_job_end_to_end(fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    job = example_job(data, out, records={"kickstart": "-", "json": str(tmp_path / "rec.json")})
    p = fl.run("run", str(fl.write_job(job)))
    assert p.returncode == 0, p.stderr.decode()
    expected_c = (data / "f.a").read_bytes() + (data / "f.b").read_bytes()
    assert (out / "f.c").read_bytes() == expected_c
    assert (out / "f.d").read_text().strip() == "600"
    rec = json.loads((tmp_path / "rec.json").read_text())
    outs = {o["lfn"]: o for o in rec["outputs"]}
    assert outs["f.c"]["sha256"] == sha256_of(out / "f.c")
    assert outs["f.d"]["sha256"] == sha256_of(out / "f.d")
    assert rec["exit_code"] == 0 and rec["task"]["status"]["exitcode"] == 0
    assert [p["name"] for p in rec["phases"]] == ["workdir", "stage-in", "task", "stage-out"]
    assert rec["integrity"][0]["lfn"] in ("f.a", "task.sh") and all(
        v["success"] for v in rec["integrity"])
    assert rec["task"]["rusage"]["maxrss"] > 0 and rec["task"]["monitor"] is not None
    # the kickstart record is stdout, the log is stderr
    ks = p.stdout.decode()
    assert ks.startswith("- invocation: True\n") and "task says hello" in ks
    err = p.stderr.decode().splitlines()
    assert err[-1] == "PegasusLite: exitcode 0"
    assert all(line[:4].isdigit() and line[19:21] == ": " for line in err[:-1]), err
    assert fl.leftover_workdirs() == []


def test_workdir_is_private_and_kept_on_request(fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    job = example_job(data, tmp_path / "out", workdir={"keep": "always"},
                      records={"json": str(tmp_path / "r.json"), "kickstart": None})
    assert fl.run("run", str(fl.write_job(job))).returncode == 0
    wd = json.loads((tmp_path / "r.json").read_text())["workdir"]
    assert stat.S_IMODE(os.stat(wd).st_mode) == 0o700
    assert sorted(os.listdir(wd)) == [".fluxlite", "f.a", "f.b", "f.c", "f.d", "task.sh"]


def test_failed_task_keeps_its_exit_code_and_outputs_still_leave(
        fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    script(data / "fail.sh", "#!/bin/sh\necho partial > f.c\nexit 3\n")
    job = example_job(data, tmp_path / "out", executable={"url": f"file://{data}/fail.sh"},
                      workdir={"keep": "on-failure"})
    job["outputs"][1]["optional"] = True
    p = fl.run("run", str(fl.write_job(job)))
    assert p.returncode == 3
    assert (tmp_path / "out" / "f.c").read_text() == "partial\n"  # saved as PegasusLite does
    assert p.stderr.decode().splitlines()[-1] == "PegasusLite: exitcode 3"
    assert len(fl.leftover_workdirs()) == 1  # kept on failure


def test_signalled_task_exits_128_plus_n(fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    job = {"executable": "/bin/sh", "arguments": ["-c", "kill -9 $$"]}
    p = fl.run("run", str(fl.write_job(job)))
    assert p.returncode == 128 + 9
    assert "signalled_signal: 9" in p.stdout.decode()


# -- bad input: exit code, one line, nothing started, nothing left behind -----------------


def _bad(fl: Fluxlite, job_text: str | dict, code: int, needle: str, tmp_path: Path) -> str:
    marker = tmp_path / "task-ran"
    jp = tmp_path / "job.json"
    if isinstance(job_text, dict):
        job_text = json.dumps({"fluxlite": 1, **job_text})
    jp.write_text(job_text)
    p = fl.run("run", str(jp))
    err = p.stderr.decode()
    assert p.returncode == code, err
    assert needle in err, err
    assert not marker.exists()
    assert fl.leftover_workdirs() == []
    assert "Traceback" not in err
    return err


def test_malformed_json(fl: Fluxlite, tmp_path: Path) -> None:
    err = _bad(fl, '{"fluxlite": 1, "executable": ', 2, "malformed JSON", tmp_path)
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("job,needle", [
    ({"name": "x"}, "executable: is required"),
    ({"fluxlite": 1, "executable": 5}, "executable: must be a string or an object"),
    ({"fluxlite": 1, "executable": "/bin/true", "inputs": {"lfn": "x"}}, "inputs: must be a list"),
    ({"fluxlite": 1, "executable": "/bin/true",
      "inputs": [{"lfn": "x", "urls": ["ftp://h/x"]}]}, "inputs[0].urls[0]: unsupported scheme 'ftp'"),
    ({"fluxlite": 1, "executable": "/bin/true",
      "outputs": [{"lfn": "../../x", "urls": ["file:///tmp/x"]}]}, "escapes the worker directory"),
    ({"fluxlite": 1, "executable": "/bin/true", "limits": {"maxwalltime": "an hour"}},
     "limits.maxwalltime: 'an hour' is not a duration"),
])
def test_invalid_specs(fl: Fluxlite, tmp_path: Path, job: dict, needle: str) -> None:
    _bad(fl, job, 2, needle, tmp_path)


def test_validate_reports_every_problem(fl: Fluxlite, tmp_path: Path) -> None:
    jp = fl.write_job({"executable": "/bin/true", "inputs": [
        {"lfn": "/abs", "urls": ["ftp://x"]}, {"lfn": "ok", "urls": ["gopher://y"]}]})
    p = fl.run("validate", str(jp))
    lines = p.stderr.decode().strip().splitlines()
    assert p.returncode == 2
    assert any("inputs[0].lfn" in ln for ln in lines)
    assert any("inputs[0].urls[0]: unsupported scheme 'ftp'" in ln for ln in lines)
    assert any("inputs[1].urls[0]: unsupported scheme 'gopher'" in ln for ln in lines)
    ok = fl.write_job({"executable": "/bin/true"}, name="ok.json")
    assert fl.run("validate", str(ok)).returncode == 0


def test_missing_input(fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    job = {"executable": "/bin/sh", "arguments": ["-c", f"touch {tmp_path}/task-ran"],
           "inputs": [{"lfn": "x", "urls": [f"file://{data}/nope"]}]}
    err = _bad(fl, job, 71, "x: ", tmp_path)
    assert "No such file" in err
    assert "PegasusLite: exitcode 71" in err


def test_checksum_mismatch_stops_before_the_task(fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    (data / "x").write_text("data")
    job = {"executable": "/bin/sh", "arguments": ["-c", f"touch {tmp_path}/task-ran"],
           "inputs": [{"lfn": "x", "urls": [f"file://{data}/x"], "sha256": "0" * 64}],
           "records": {"kickstart": str(tmp_path / "job.out")}}
    err = _bad(fl, job, 71, "x: checksum mismatch: expected sha256 " + "0" * 64, tmp_path)
    assert sha256_of(data / "x") in err
    rec = (tmp_path / "job.out").read_text()
    assert "success: False" in rec and "failure_error" in rec


def test_missing_executable(fl: Fluxlite, tmp_path: Path) -> None:
    _bad(fl, {"fluxlite": 1, "executable": "no-such-program-xyz"}, 127,
         "executable 'no-such-program-xyz' not found on PATH", tmp_path)
    _bad(fl, {"fluxlite": 1, "executable": "/nonexistent/prog"}, 127, "does not exist", tmp_path)


def test_non_executable_executable(fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    (data / "prog").write_text("#!/bin/sh\ntrue\n")  # no x bit
    _bad(fl, {"fluxlite": 1, "executable": str(data / "prog")}, 127,
         "is not an executable file", tmp_path)


def test_unwritable_destination(fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    # the task puts a file where the directory should be: known only after the task ran
    # (one there before is refused at once, exit 2: tests/integration/hostile)
    job = example_job(data, tmp_path / "out", executable="/bin/sh", arguments=[
        "-c", f"echo c > f.c; echo d > f.d; echo blocker > {tmp_path}/blocker"])
    job["outputs"][0]["urls"] = [f"file://{tmp_path}/blocker/sub/f.c"]
    p = fl.run("run", str(fl.write_job(job)))
    assert p.returncode == 71
    assert "cannot write" in p.stderr.decode()
    assert partial_files(tmp_path / "out", tmp_path) == []
    assert fl.leftover_workdirs() == []


def test_missing_required_output_fails_the_job(fl: Fluxlite, tmp_path: Path) -> None:
    job = {"executable": "/bin/true",
           "outputs": [{"lfn": "never", "urls": [f"file://{tmp_path}/never"]},
                       {"lfn": "opt", "urls": [f"file://{tmp_path}/opt"], "optional": True}]}
    p = fl.run("run", str(fl.write_job(job)))
    assert p.returncode == 71
    assert "missing output: never" in p.stderr.decode()


def test_stdio_files_and_stdin(fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    (data / "in.txt").write_text("from stdin\n")
    job = {"executable": "/bin/cat", "stdin": "in.txt", "stdout": "out.txt",
           "inputs": [{"lfn": "in.txt", "urls": [f"file://{data}/in.txt"]}],
           "outputs": [{"lfn": "out.txt", "urls": [f"file://{tmp_path}/res/out.txt"]}]}
    p = fl.run("run", str(fl.write_job(job)))
    assert p.returncode == 0, p.stderr.decode()
    assert (tmp_path / "res" / "out.txt").read_text() == "from stdin\n"


def test_secrets_are_redacted(fl: Fluxlite, tmp_path: Path) -> None:
    job = {"executable": "/bin/false", "environment": {"MY_API_TOKEN": "hunter2-secret"},
           "records": {"kickstart": "-", "json": str(tmp_path / "r.json")}}
    p = fl.run("run", str(fl.write_job(job)), env={"DB_PASSWORD": "pw-secret-value"})
    assert p.returncode == 1
    everything = p.stdout + p.stderr + (tmp_path / "r.json").read_bytes()
    assert b"hunter2-secret" not in everything and b"pw-secret-value" not in everything
    assert b'"MY_API_TOKEN": "***"' in p.stdout


def test_dry_run_creates_nothing(fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    job = example_job(data, tmp_path / "out")
    p = fl.run("run", "--dry-run", str(fl.write_job(job)))
    assert p.returncode == 0
    assert "stage-in  f.a" in p.stdout.decode()
    assert fl.leftover_workdirs() == [] and not (tmp_path / "out" / "f.c").exists()


def test_a_checkpoint_that_cannot_be_saved_does_not_keep_outputs_back(
        fl: Fluxlite, tmp_path: Path) -> None:
    # the task puts a file where the directory should be: known only after the task ran
    job = {"executable": "/bin/sh", "arguments": [
               "-c", f"echo s > state; echo o > out; echo blocker > {tmp_path}/blocker"],
           "checkpoints": [{"lfn": "state", "url": f"file://{tmp_path}/blocker/state"}],
           "outputs": [{"lfn": "out", "urls": [f"file://{tmp_path}/res/out"]}],
           "records": {"kickstart": None, "json": str(tmp_path / "r.json")}}
    p = fl.run("run", str(fl.write_job(job)))
    assert p.returncode == 71
    assert (tmp_path / "res" / "out").read_text() == "o\n"
    phases = {ph["name"]: ph for ph in json.loads((tmp_path / "r.json").read_text())["phases"]}
    assert not phases["checkpoint-out"]["ok"] and phases["stage-out"]["ok"]


def test_names_that_look_like_url_escapes(fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    (data / "in%41 #1?.txt").write_text("x")
    job = {"executable": "/bin/cp", "arguments": ["in%41 #1?.txt", "out%20.txt"],
           "inputs": [{"lfn": "in%41 #1?.txt", "urls": [str(data / "in%41 #1?.txt")]}],
           "outputs": [{"lfn": "out%20.txt", "urls": [str(tmp_path / "res" / "out%20.txt")]}]}
    p = fl.run("run", str(fl.write_job(job)))
    assert p.returncode == 0, p.stderr.decode()
    assert (tmp_path / "res" / "out%20.txt").read_text() == "x"


def test_a_record_that_cannot_be_written_fails_the_job_cleanly(
        fl: Fluxlite, tmp_path: Path) -> None:
    # the task puts a file where the directory should be: known only after the task ran
    job = {"executable": "/bin/sh", "arguments": ["-c", f"echo blocker > {tmp_path}/blocker"],
           "records": {"kickstart": "-", "json": str(tmp_path / "blocker" / "r.json")}}
    p = fl.run("run", str(fl.write_job(job)))
    err = p.stderr.decode()
    assert p.returncode == 71, err
    assert "cannot write the JSON record to" in err and "Traceback" not in err
    assert p.stdout.startswith(b"- invocation: True")  # the other record is still written
    assert err.strip().splitlines()[-1].startswith("PegasusLite: exitcode 71")
    assert fl.leftover_workdirs() == []


def test_nothing_is_written_through_a_symlinked_input(fl: Fluxlite, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "x").write_text("x\n")
    job = {"executable": "/bin/echo", "arguments": ["escaped"], "staging": {"threads": 1},
           "inputs": [{"lfn": "d", "urls": [f"file://{outside}"], "symlink": True},
                      {"lfn": "d/x", "urls": [f"file://{tmp_path}/x"]}],
           "stdout": "d/out.txt"}
    p = fl.run("run", str(fl.write_job(job)))
    assert p.returncode == 2, p.stderr.decode()
    assert b"inputs[1].lfn: 'd/x' lies below 'd'" in p.stderr
    assert list(outside.iterdir()) == [] and fl.leftover_workdirs() == []


def test_arguments_that_are_not_utf8_still_give_both_records(fl: Fluxlite,
                                                            tmp_path: Path) -> None:
    """JSON allows lone surrogates (``\\udcff``): the JSON record must still be written."""
    doc = ('{"fluxlite": 1, "executable": "/bin/echo", "arguments": ["a\\udcffb"],'
           f' "records": {{"kickstart": "-", "json": "{tmp_path}/r.json"}}}}')
    (tmp_path / "job.json").write_text(doc)
    p = fl.run("run", str(tmp_path / "job.json"))
    assert p.returncode == 0, p.stderr.decode()
    assert b"Traceback" not in p.stderr and b"PegasusLite: exitcode 0" in p.stderr
    rec = json.loads((tmp_path / "r.json").read_bytes())
    assert rec["task"]["argv"][1:] == ["a\\udcffb"]
    assert b"- invocation: True" in p.stdout and fl.leftover_workdirs() == []
    # a surrogate that stands for no byte cannot reach the task: an invalid spec
    (tmp_path / "job.json").write_text(doc.replace("a\\udcffb", "\\ud800"))
    p = fl.run("run", str(tmp_path / "job.json"))
    assert p.returncode == 2 and b"Traceback" not in p.stderr
    assert b"arguments[0]: contains '\\ud800'" in p.stderr


@pytest.mark.parametrize("text,needle", [
    ("[" * 100_000 + "]" * 100_000, "malformed json: nested too deeply"),
    ('{"fluxlite": ' + "1" * 5000 + "}", "malformed json: exceeds the limit"),
])
def test_pathological_json_is_one_line(fl: Fluxlite, tmp_path: Path, text: str,
                                       needle: str) -> None:
    err = _bad(fl, text, 2, "malformed JSON", tmp_path)
    assert len(err.strip().splitlines()) == 1 and needle in err.lower(), err
    p = fl.run("validate", str(tmp_path / "job.json"))
    assert p.returncode == 2 and needle in p.stderr.decode().lower(), p.stderr.decode()
