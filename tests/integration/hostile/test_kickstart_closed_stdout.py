"""fluxlite kickstart started with its standard output closed: its record has nowhere to
go, which is one line and exit 71, never a traceback."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import Fluxlite


def test_kickstart_with_stdout_closed_is_one_line(fl: Fluxlite) -> None:
    # a shell closes descriptor 1 for the command only (no user string reaches it)
    p = subprocess.run(["/bin/sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m",
                        "fluxlite", "kickstart", "/bin/true"],
                       env=fl.env(), cwd=fl.tmp, stderr=subprocess.PIPE, timeout=60)
    err = p.stderr.decode()
    assert p.returncode == 71, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "standard output is closed" in lines[0], err
