"""A newcomer's first mistakes, each answered by name instead of silently done or crashed on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Fluxlite


@pytest.mark.parametrize("option", ["--foo", "--verbose", "--help-me", "---"])
def test_kickstart_reports_an_unknown_long_option(fl: Fluxlite, tmp_path: Path,
                                                  option: str) -> None:
    canary = tmp_path / "ran"
    p = fl.run("kickstart", option, "/bin/touch", str(canary))
    err = p.stderr.decode()
    assert p.returncode == 127, err
    assert err.splitlines()[0] == f"fluxlite kickstart: error: unknown option '{option}'"
    assert not canary.exists() and p.stdout == b"", "the application ran anyway"


def test_kickstart_long_help_is_help_not_a_run(fl: Fluxlite, tmp_path: Path) -> None:
    canary = tmp_path / "ran"
    p = fl.run("kickstart", "--help", "/bin/touch", str(canary))
    assert p.returncode == 127  # kickstart's -h: usage on stderr, 127
    assert p.stderr.decode().startswith("Usage:") and p.stdout == b""
    assert not canary.exists()
    p = fl.run("kickstart", "--", "/bin/touch", str(canary))
    assert p.returncode == 0, p.stderr.decode()
    assert canary.exists()


@pytest.mark.parametrize(("where", "url"), [
    ("inputs[0].urls[0]", "file:data/f"), ("inputs[0].urls[0]", "FILE:data/f"),
    ("inputs[0].urls[0]", "file:/abs/f"), ("inputs[0].urls[0]", "symlink:data/f"),
    ("inputs[0].urls[0]", "http:data/f"), ("outputs[0].urls[0]", "file:out/g"),
    ("checkpoints[0].url", "file:ck/c")])
def test_a_file_url_without_slashes_is_a_validate_error(fl: Fluxlite, tmp_path: Path,
                                                        where: str, url: str) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f").write_text("x\n")
    job: dict = {"executable": "/bin/true", "inputs": [{"lfn": "f", "urls": ["data/f"]}]}
    section, _, _ = where.partition("[")
    if section == "inputs":
        job["inputs"] = [{"lfn": "f", "urls": [url]}]
    elif section == "outputs":
        job["outputs"] = [{"lfn": "g", "urls": [url]}]
    else:
        job["checkpoints"] = [{"lfn": "c", "url": url}]
    path = fl.write_job(job)
    hint = "HOST/PATH" if url.startswith("http") else "/ABSOLUTE/PATH or "
    for command in (("validate",), ("run", "--dry-run")):
        p = fl.run(*command, str(path))
        err = p.stderr.decode().strip()
        assert p.returncode == 2, (command, err)
        assert (f"{path}: {where}: '{url}' is not a URL: write "
                f"{url.partition(':')[0].lower()}://{hint}") in err, err
        assert "\n" not in err and where in err
    assert not (tmp_path / "file:data").exists()


def _both(fl: Fluxlite, path: Path) -> list[tuple[int, str]]:
    """validate's and run --dry-run's exit codes and stderr for one job file."""
    out = []
    for command in (("validate",), ("run", "--dry-run")):
        p = fl.run(*command, str(path))
        out.append((p.returncode, p.stderr.decode()))
    return out


def test_a_missing_local_source_is_named_as_a_warning(fl: Fluxlite, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "there").write_text("x\n")
    path = fl.write_job({"executable": "/bin/true", "inputs": [
        {"lfn": "a", "urls": ["data/there"]},
        {"lfn": "b", "urls": ["data/typo"]},
        {"lfn": "c", "urls": [f"file://{tmp_path}/data/gone", "data/there"]},
        {"lfn": "d", "urls": ["symlink:///no/such/dir/f"], "optional": True}]})
    for rc, err in _both(fl, path):
        assert rc == 0, err  # an earlier job may still write them: not an error
        lines = [ln for ln in err.splitlines() if "warning" in ln]
        assert len(lines) == 3 and len(err.splitlines()) == 3, err
        assert (f"inputs[1].urls[0]: '{tmp_path}/data/typo' does not exist: stage-in fails "
                "unless it appears before the job runs") in lines[0]
        assert f"inputs[2].urls[0]: '{tmp_path}/data/gone' does not exist" in lines[1]
        assert "inputs[3].urls[0]: '/no/such/dir/f' does not exist (optional" in lines[2]
        assert "inputs[0]" not in err
    assert fl.leftover_workdirs() == []


@pytest.mark.parametrize("exe", ["./x", "bin/x", "./sub/../x"])
def test_an_executable_nothing_stages_is_an_error(fl: Fluxlite, tmp_path: Path,
                                                  exe: str) -> None:
    (tmp_path / "x").write_text("#!/bin/sh\n")  # beside the job file: not where it runs
    path = fl.write_job({"executable": exe,
                         "inputs": [{"lfn": "y", "urls": [str(tmp_path / "x")]}]})
    for rc, err in _both(fl, path):
        assert rc == 2, err
        assert len(err.splitlines()) == 1 and f"executable: '{exe}' names a file of the " \
            "worker directory that nothing stages in" in err, err
    assert fl.leftover_workdirs() == []


def test_an_executable_that_is_staged_passes(fl: Fluxlite, tmp_path: Path) -> None:
    (tmp_path / "x").write_text("#!/bin/sh\n")
    path = fl.write_job({"executable": "./bin/x", "inputs": [
        {"lfn": "bin/x", "urls": [str(tmp_path / "x")], "executable": True}]})
    for rc, err in _both(fl, path):
        assert rc == 0 and err == "", err
    path = fl.write_job({"executable": "./x", "inputs": [
        {"lfn": "x", "urls": [str(tmp_path / "x")], "optional": True}]})
    for rc, err in _both(fl, path):
        assert rc == 0, err
        assert "executable: './x' is brought only by an optional input or a checkpoint" in err


def test_a_stage_in_failure_says_no_task_ran(fl: Fluxlite, tmp_path: Path) -> None:
    canary = tmp_path / "ran"
    path = fl.write_job({"executable": "/bin/touch", "arguments": [str(canary)],
                         "inputs": [{"lfn": "f", "urls": [str(tmp_path / "missing")]}]})
    p = fl.run("run", str(path))
    lines = p.stderr.decode().splitlines()
    assert p.returncode == 71, lines
    assert not canary.exists()
    assert lines[-1] == "PegasusLite: exitcode 71, no task ran (stage-in failed)"
    assert not any("originally exited" in ln for ln in lines)


def test_a_stage_out_failure_gives_the_tasks_own_code(fl: Fluxlite, tmp_path: Path) -> None:
    path = fl.write_job({"executable": "/bin/sh", "arguments": ["-c", "exit 0"],
                         "outputs": [{"lfn": "never-made", "urls": [str(tmp_path / "o")]}]})
    p = fl.run("run", str(path))
    lines = p.stderr.decode().splitlines()
    assert p.returncode == 71, lines
    assert lines[-1] == "PegasusLite: exitcode 71, tool originally exited with exitcode 0"


@pytest.mark.parametrize("argv", [
    ["run", "--overwrite", "{job}"], ["run", "--verbos", "{job}"],
    ["validate", "--verbos", "{job}"], ["run", "--dry", "{job}"],
    ["integrity", "--verif", "{job}"], ["transfer", "--multipart", "d", "{job}"]])
def test_an_abbreviated_option_is_refused(fl: Fluxlite, tmp_path: Path,
                                          argv: list[str]) -> None:
    canary = tmp_path / "ran"
    job = fl.write_job({"executable": "/bin/touch", "arguments": [str(canary)]})
    p = fl.run(*[a.format(job=job) for a in argv])
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert argv[1] in err and "Traceback" not in err
    assert not canary.exists() and not (tmp_path / "d").exists()


def test_a_retry_names_the_try_that_failed(fl: Fluxlite, tmp_path: Path) -> None:
    script = tmp_path / "flaky.sh"  # fails with 4 on its first two tries
    script.write_text('n=$(cat "$1" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > "$1"\n'
                      '[ "$n" -ge 3 ] || exit 4\n')
    (tmp_path / "f.dag").write_text(f"TASK flaky /bin/sh {script} {tmp_path}/count\n")
    p = fl.run("cluster", "f.dag", "--tries", "3", "--no-rescue", "-o", "c.out")
    err = p.stderr.decode()
    assert p.returncode == 0, err
    retries = [ln.split(": ", 1)[1] for ln in err.splitlines() if "retrying" in ln]
    assert retries == ["task flaky try 1 of 3 failed (exit 4), retrying",
                       "task flaky try 2 of 3 failed (exit 4), retrying"], err


def test_a_pmc_awk_line_as_pmc_reads_it(fl: Fluxlite, tmp_path: Path) -> None:
    (tmp_path / "in").write_text("1 a\n0 b\n2 c\n")
    (tmp_path / "f.dag").write_text(
        "TASK sh /bin/sh -c \"awk \\'\\$1 > 0 {print \\$2}\\' in > sh.out\"\n"
        "TASK direct awk '$1 > 0 {print $2}' in\n")
    p = fl.run("cluster", "f.dag", "--no-rescue", "-o", "c.out")
    assert p.returncode == 0, p.stderr.decode()
    assert (tmp_path / "sh.out").read_text() == "a\nc\n"
    assert "warning" not in p.stderr.decode()
