from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from fluxlite.errors import WorkdirError
from fluxlite.spec import WorkdirSpec
from fluxlite.workdir import candidates, create


def test_candidate_order_follows_pegasuslite(tmp_path: Path) -> None:
    env = {"TMPDIR": "/t", "PEGASUS_WN_TMP": "/p", "FLUX_JOB_TMPDIR": "/f",
           "_CONDOR_SCRATCH_DIR": "/c", "SCRATCH": "/s", "TMP": "/tmp2"}
    got = candidates(WorkdirSpec(base="/b"), env)
    assert got == ["/b", "/f", "/p", "/c", "/s", "/t", "/tmp2", "/tmp"]


def test_created_private_and_unique(tmp_path: Path) -> None:
    a = create(WorkdirSpec(base=str(tmp_path), min_free_mb=0), {})
    b = create(WorkdirSpec(base=str(tmp_path), min_free_mb=0), {})
    assert a.path != b.path
    assert stat.S_IMODE(os.stat(a.path).st_mode) == 0o700
    a.remove()
    assert not os.path.exists(a.path)


def test_unusable_candidates_are_passed_over(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    wd = create(WorkdirSpec(base=str(tmp_path / "missing"), min_free_mb=0),
                {"TMPDIR": str(good)})
    assert wd.path.startswith(str(good))
    assert wd.tried[0][0] == str(tmp_path / "missing")


def test_free_space_check(tmp_path: Path) -> None:
    with pytest.raises(WorkdirError) as ei:
        create(WorkdirSpec(base=str(tmp_path), min_free_mb=1e12), {"TMPDIR": str(tmp_path)})
    assert "no usable worker directory" in str(ei.value) and "MB needed" in str(ei.value)
