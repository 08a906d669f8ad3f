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
