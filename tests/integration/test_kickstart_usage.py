"""`fluxlite kickstart` command lines that kickstart refuses, its environment, and the Flux
job id: what does not need Pegasus's parsers to check."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Fluxlite


@pytest.mark.parametrize(("args", "message", "help_shown"), [
    (("-x", "/bin/true"), "unknown option '-x'", True),
    ((), "no application to run", True),
    (("-n", "tr", "-N", "ID1"), "no application to run", True),
    (("-n",), "-n argument missing", True),
    (("-I", "missing-args-file"), "-I missing-args-file: cannot read argument file: "
                                  "No such file or directory", False),
    (("-I", "f", "/bin/true"), "no arguments allowed after -I f", True),
    (("-B", "none", "/bin/true"), "Invalid -B argument: none", False),
    (("-B", "0", "/bin/true"), "Invalid -B argument: 0", False),
    (("-K", "0", "/bin/true"), "Invalid -K argument: 0", False),
    (("-s", "@no-such-list", "/bin/true"), "cannot read no-such-list", False),
    (("-h",), "", True),
])
def test_bad_command_lines_exit_127_with_a_clear_message(
        fl: Fluxlite, args: tuple[str, ...], message: str, help_shown: bool) -> None:
    p = fl.run("kickstart", *args)
    err = p.stderr.decode()
    assert p.returncode == 127, err
    first = err.splitlines()[0]
    if message:
        assert first.startswith("fluxlite kickstart: error: ") and message in first, err
    assert ("Usage:\tfluxlite kickstart" in err) == help_shown, err
    assert p.stdout == b""  # no record: nothing was run


def test_kickstart_prepend_path_and_wrapper(fl: Fluxlite, tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    prog = bindir / "myprog"
    prog.write_text("#!/bin/sh\necho myprog \"$@\"\n")
    prog.chmod(0o755)
    wrap = bindir / "wrap"
    wrap.write_text("#!/bin/sh\necho wrapped\nexec \"$@\"\n")
    wrap.chmod(0o755)
    p = fl.run("kickstart", "myprog", "a", env={"KICKSTART_PREPEND_PATH": str(bindir),
                                               "KICKSTART_WRAPPER": f"{wrap}"})
    assert p.returncode == 0, p.stderr.decode()
    doc = yaml.safe_load(p.stdout.decode())[0]
    assert doc["files"]["stdout"]["data"] == "wrapped\nmyprog a\n"
    assert doc["mainjob"]["executable"]["file_name"] == str(wrap)


def test_no_pegasuslite_line_and_no_temporary_files_left(fl: Fluxlite) -> None:
    p = fl.run("kickstart", "/bin/sh", "-c", "echo out; echo err >&2")
    assert p.returncode == 0 and p.stderr == b""
    assert not [f for f in fl.wdbase.iterdir() if f.name.startswith("ks.")]


class _FakeFlux:
    jobid = "f2fLfcPmZ3"
    timeleft_at_start = None

    def info(self) -> dict[str, Any]:
        return {"level": 1, "jobid": self.jobid}

    def memo(self, memo: dict[str, Any]) -> None:
        pass

    def timeleft(self) -> float | None:
        return None


def test_inside_flux_the_record_carries_the_job_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The front end goes through the runner's Flux detection like `fluxlite run` does."""
    from fluxlite.flux import context
    from fluxlite.kickstart_args import parse
    from fluxlite.pegasus.kickstart import run_kickstart
    from fluxlite.pegasus.kickstart_job import build

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLUX_URI", "local:///nonexistent")
    monkeypatch.setattr(context, "detect", lambda *a, **k: _FakeFlux())
    spec, opts = build(parse(["-n", "tr", "-H", "/bin/true"]), {"PATH": "/usr/bin:/bin"})
    buf = io.BytesIO()
    opts.stdout = buf
    assert run_kickstart(spec, opts) == 0
    doc = yaml.safe_load(buf.getvalue().decode())[0]
    assert doc["jobids"] == {"flux": "f2fLfcPmZ3"}


def test_the_console_script_is_kickstart() -> None:
    """`fluxlite-kickstart` (the gridstart.path Pegasus is given) is `fluxlite kickstart`."""
    from fluxlite import __version__

    script = os.path.join(os.path.dirname(sys.executable), "fluxlite-kickstart")
    p = subprocess.run([script, "-V"], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout.strip(), p.stderr) == (0, __version__, "")
