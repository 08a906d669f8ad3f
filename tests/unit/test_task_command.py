"""The task's command, built once by the runner (``Runner.command``) and handed to a
container runtime as it is: the runtime's own processes get the host's environment, the
container what the job set (the command's ``inner``)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from fluxlite.container import runtime_env
from fluxlite.execute.base import TaskCommand
from fluxlite.runner import RunOptions, Runner
from fluxlite.spec import JobSpec


def test_the_command_carries_what_the_job_sets(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWED", "host")
    spec = JobSpec.from_dict({"fluxlite": 1, "executable": "/bin/true",
                              "environment": {"SHADOWED": "job", "A": "1"}})
    r = Runner(spec, RunOptions(kickstart=None, json=None, stdout=io.BytesIO(),
                                extra_env={"B": "2"}))
    r.workdir = type("Wd", (), {"path": str(tmp_path)})()
    cmd = r.command(["/bin/true", "x"])
    assert (cmd.argv, cmd.cwd) == (["/bin/true", "x"], str(tmp_path))
    assert cmd.inner == {"SHADOWED": "job", "A": "1", "B": "2",
                         "FLUXLITE_WORKDIR": str(tmp_path)}
    assert cmd.env == r.task_env() == {**os.environ, **cmd.inner}


def test_the_runtime_gets_the_hosts_environment_not_the_tasks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWED", "host")
    monkeypatch.setenv("SAME", "v")
    monkeypatch.setenv("APPTAINERENV_LEAK", "1")
    inner = {"SHADOWED": "job", "ONLY_JOB": "1", "SAME": "v", "FLUXLITE_WORKDIR": "/wd"}
    env = runtime_env(TaskCommand(["x"], "/wd", {**os.environ, **inner}, inner))
    assert env["SHADOWED"] == "host" and env["SAME"] == "v"
    assert not {"ONLY_JOB", "FLUXLITE_WORKDIR", "APPTAINERENV_LEAK"} & set(env)
