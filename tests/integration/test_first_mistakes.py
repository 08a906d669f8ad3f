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
