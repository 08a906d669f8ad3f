"""The one factory of launchers (fluxlite.flux.launcher.launcher_for) and what the contract
says of a task's own job (``job_ids()``, ``job_info()``); the Flux side is the fake of
tests/unit/test_flux_launcher.py."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from fluxlite.execute.base import TaskCommand
from fluxlite.execute.local import LocalLauncher
from fluxlite.execute.timelimit import Schedule
from fluxlite.flux.launcher import FluxLauncher, launcher_for
from fluxlite.spec import Resources
from tests.unit.test_flux_launcher import FakeJobs


def cmd(tmp_path: Path) -> TaskCommand:
    return TaskCommand(["/bin/true"], str(tmp_path), {"PATH": "/bin"})


def stdio(tmp_path: Path) -> tuple[str, str, str]:
    return "/dev/null", str(tmp_path / "out"), str(tmp_path / "err")


def test_a_local_task_is_a_process_of_fluxlite_with_no_job_of_its_own(tmp_path: Path) -> None:
    orphaned = []
    la = launcher_for(cmd(tmp_path), stdio(tmp_path), schedule=Schedule(),
                      on_orphaned=lambda: orphaned.append(1))
    assert isinstance(la, LocalLauncher) and la.on_orphaned is not None
    assert la.timeleft is None  # no Flux context: no time left to ask
    la.start()
    assert la.wait().status.ok
    assert la.job_ids() == {} and la.job_info() == {}


def test_a_placement_on_flux_without_flux_runs_locally_and_says_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fluxlite"):
        la = launcher_for(cmd(tmp_path), stdio(tmp_path), placement="nested",
                          schedule=Schedule())
    assert isinstance(la, LocalLauncher)
    assert "placement 'nested' needs a flux instance" in caplog.text


def test_a_placement_on_flux_is_a_flux_job_with_its_id_in_the_contract(tmp_path: Path) -> None:
    ctx = SimpleNamespace(handle=None, uri="fake://", timeleft=lambda: 100.0)
    la = launcher_for(cmd(tmp_path), stdio(tmp_path), placement="flux", ctx=ctx,
                      resources=Resources(tasks=2), name="job", schedule=Schedule(),
                      on_orphaned=lambda: None)
    assert isinstance(la, FluxLauncher) and not la.nested and la.timeleft is ctx.timeleft
    assert la.job_ids() == {}  # not submitted yet
    la.jobs = FakeJobs("exit3")
    la.start()
    assert la.wait().status.exitcode == 3
    assert la.job_ids() == {"flux-task": "ƒfake42"}
    info = la.job_info()
    assert (info["jobid"], info["placement"], info["tasks"]) == ("ƒfake42", "flux", 2)
    assert "t_run" in info  # filled in further as the job ended
