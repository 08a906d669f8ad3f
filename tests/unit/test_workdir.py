from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1)")
def test_a_removal_that_fails_says_why(tmp_path: Path) -> None:
    """In a private mount namespace, a tmpfs mounted inside the worker directory cannot be
    removed (EBUSY): the warning names the path and the system's reason."""
    code = (
        "import logging, os, subprocess, sys\n"
        "from fluxlite.spec import WorkdirSpec\n"
        "from fluxlite.workdir import create\n"
        "logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format='%(message)s')\n"
        f"wd = create(WorkdirSpec(base={str(tmp_path)!r}, min_free_mb=0), {{}})\n"
        "m = os.path.join(wd.path, 'm')\n"
        "os.mkdir(m)\n"
        "subprocess.run(['mount', '-t', 'tmpfs', 'none', m], check=True)\n"
        "print('removed', wd.remove())\n")
    p = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0 and "removed" not in p.stdout:
        pytest.skip(f"no private mount namespace here: {p.stderr.strip()[-200:]}")
    assert "removed False" in p.stdout
    assert "not fully removed" in p.stdout and "/m: Device or resource busy" in p.stdout


def test_removal_takes_links_never_what_they_lead_to(tmp_path: Path) -> None:
    """Links to directories and files outside are removed as links; their targets (canaries)
    stay. Nested directories, a read-only one among them, all go."""
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_text("keep")
    base = tmp_path / "base"
    base.mkdir()
    wd = create(WorkdirSpec(base=str(base), min_free_mb=0), {})
    root = Path(wd.path)
    (root / "a" / "b" / "c").mkdir(parents=True)
    (root / "a" / "b" / "c" / "f").write_text("f")
    (root / "a" / "to-dir").symlink_to(canary)
    (root / "a" / "b" / "to-file").symlink_to(canary / "keep")
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    (root / "ro").mkdir()
    (root / "ro" / "x").write_text("x")
    os.chmod(root / "ro", 0o500)
    os.mkfifo(root / "fifo")
    assert wd.remove() is True
    assert not root.exists() and os.listdir(base) == []
    assert (canary / "keep").read_text() == "keep"


def test_removal_of_a_directory_already_gone_is_success(tmp_path: Path) -> None:
    wd = create(WorkdirSpec(base=str(tmp_path), min_free_mb=0), {})
    os.rmdir(wd.path)
    assert wd.remove() is True


def test_a_file_put_in_its_place_stays(tmp_path: Path) -> None:
    wd = create(WorkdirSpec(base=str(tmp_path), min_free_mb=0), {})
    os.rmdir(wd.path)
    Path(wd.path).write_text("another's")
    assert wd.remove() is False
    assert Path(wd.path).read_text() == "another's"
