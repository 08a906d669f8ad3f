"""The runner's strategy: the runner asks it, in order, what front ends decide, and asks
nothing else; real jobs of real processes, a strategy that notes each call."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from fluxlite.pegasus.lite import PegasusLite
from fluxlite.runner import RunOptions, Runner
from fluxlite.spec import JobSpec


class Noting(PegasusLite):
    """PegasusLite's strategy, each call noted by name."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        if name in ("prepare", "workdir", "stdio", "around_task", "judge", "failed", "ending",
                    "finished"):
            super().__getattribute__("calls").append(name)
        return attr


def run(tmp_path: Path, executable: str, *args: str) -> tuple[int, list[str], Runner]:
    spec = JobSpec.from_dict({"fluxlite": 1, "executable": executable, "arguments": list(args),
                              "workdir": {"base": str(tmp_path), "keep": "never",
                                          "min_free_mb": 0}})
    s = Noting()
    r = Runner(spec, RunOptions(kickstart="-", json=None, stdout=io.BytesIO(),
                                use_flux=False), s)
    return r.run(), s.calls, r


def test_a_job_that_succeeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, calls, r = run(tmp_path, "/bin/true")
    assert rc == 0
    assert calls == ["prepare", "workdir", "around_task", "stdio", "judge", "ending",
                     "finished"]
    assert r.strategy.job is r
    assert capsys.readouterr().err.endswith("PegasusLite: exitcode 0\n")  # finished()'s line


def test_a_task_that_fails_is_judged(tmp_path: Path) -> None:
    rc, calls, r = run(tmp_path, "/bin/sh", "-c", "exit 3")
    assert rc == 3 and r.record.error == "exited with code 3"
    assert calls == ["prepare", "workdir", "around_task", "stdio", "judge", "ending",
                     "finished"]


def test_a_job_that_cannot_start_says_so_and_still_ends(tmp_path: Path) -> None:
    rc, calls, r = run(tmp_path, str(tmp_path / "missing"))
    assert rc == 127 and r.record.failed_phase == "task"
    assert calls == ["prepare", "failed", "ending", "finished"]  # nothing was created
    assert list(tmp_path.iterdir()) == []
