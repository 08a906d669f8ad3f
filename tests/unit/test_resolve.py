"""One executable resolution (fluxlite.execute.resolve) for validate, run and kickstart:
the same files get the same verdict from each, in each one's words."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import pytest

from fluxlite.errors import ExecError
from fluxlite.execute.resolve import in_workdir, resolve
from fluxlite.pegasus.kickstart import CannotExecute, check_executable
from fluxlite.runner import RunOptions, Runner
from fluxlite.spec import JobSpec, executable_problem


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    good = tmp_path / "good"
    good.write_text("#!/bin/sh\nexit 0\n")
    good.chmod(0o755)
    plain = tmp_path / "plain"
    plain.write_text("data")
    plain.chmod(0o644)
    (tmp_path / "dir").mkdir()
    return {"good": str(good), "plain": str(plain), "dir": str(tmp_path / "dir"),
            "missing": str(tmp_path / "missing")}


def test_resolve(files: dict[str, str], tmp_path: Path) -> None:
    assert resolve(files["good"], None).errno == 0
    assert resolve("good", str(tmp_path)).path == files["good"]  # looked up on the PATH
    assert resolve("good", None).path is None  # no PATH: not looked up
    nf = resolve("no-such-program-xyz", "/nonexistent")
    assert (nf.errno, nf.problem) == (errno.ENOENT, "'no-such-program-xyz' not found on PATH")
    missing = resolve(files["missing"], None)
    assert (missing.errno, missing.problem) == (errno.ENOENT, f"'{files['missing']}' does not exist")
    for name in ("plain", "dir"):
        r = resolve(files[name], None)
        assert (r.errno, r.problem) == (errno.EACCES, f"'{files[name]}' is not an executable file")


def test_a_file_of_the_worker_directory_is_resolved_after_stage_in() -> None:
    assert in_workdir("tool", {"tool"}) and in_workdir("bin/tool", set())
    assert not in_workdir("tool", set()) and not in_workdir("/bin/tool", set())


@pytest.mark.parametrize("name", ["good", "plain", "dir", "missing"])
def test_validate_run_and_kickstart_agree(files: dict[str, str], tmp_path: Path,
                                          name: str) -> None:
    path = files[name]
    doc = {"fluxlite": 1, "executable": path, "records": {"kickstart": None, "json": None},
           "workdir": {"base": str(tmp_path), "min_free_mb": 0}}
    spec = JobSpec.from_dict(doc)
    validate = executable_problem(spec)
    run = Runner(spec, RunOptions(kickstart=None, json=None, stdout=io.BytesIO()))
    try:
        run_exe, run_error = run.strategy.prepare(), None
    except ExecError as err:
        run_exe, run_error = None, str(err)
    try:
        check_executable(path)
        ks_errno = 0
    except CannotExecute as err:
        ks_errno = err.errno
    if name == "good":
        assert (validate, run_error, run_exe, ks_errno) == (None, None, path, 0)
        return
    assert validate is not None and run_error == f"executable {validate}"
    assert ks_errno == (errno.ENOENT if name == "missing" else errno.EACCES)
    assert run.record.executable == path


def test_kickstart_asks_read_as_well_as_execute(files: dict[str, str]) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may read any file: the unreadable one cannot be made here")
    os.chmod(files["good"], 0o311)
    assert resolve(files["good"], None).errno == 0
    with pytest.raises(CannotExecute) as err:
        check_executable(files["good"])
    assert err.value.errno == errno.EACCES


def test_kickstart_refuses_a_name_it_did_not_find() -> None:
    with pytest.raises(CannotExecute) as err:
        check_executable("no-such-program-xyz")
    assert err.value.failure_error == f"{errno.ENOENT}   {os.strerror(errno.ENOENT)}"
