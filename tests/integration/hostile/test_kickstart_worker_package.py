"""kickstart reached as PegasusLite reaches it, through a worker package's
``bin/pegasus-kickstart``: what the job hands it arrives whole, and a main job that never
started leaves no mainjob entry behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import Fluxlite


def _package(fl: Fluxlite) -> Path:
    home = fl.tmp / "pegasus-home"
    p = fl.run("pegasus-home", str(home), "--pegasus-version", "5.1.3")
    assert p.returncode == 0, p.stderr
    return home / "bin"


def _record(out: bytes) -> dict:
    text = out.decode()
    return yaml.safe_load(text[text.index("- invocation: True"):])[0]


def test_environment_names_a_shell_cannot_hold_reach_the_record(fl: Fluxlite) -> None:
    bin_dir = _package(fl)
    odd = {'GIDEON"': "juve", "A-B": "1", "1X": "2", "x.y": "3"}
    # env(1) puts them in the environment of pegasus-kickstart as a job's could be
    p = subprocess.run(["env", *(f"{k}={v}" for k, v in odd.items()),
                        str(bin_dir / "pegasus-kickstart"), "-f", "/bin/true"],
                       capture_output=True, timeout=60, cwd=fl.tmp, env=fl.env())
    assert p.returncode == 0, p.stderr
    env = _record(p.stdout)["environment"]
    for k, v in odd.items():
        assert env.get(k) == v, k
    assert b'"GIDEON\\"": "juve"' in p.stdout  # quoted as pegasus-kickstart quotes it


def test_a_prejob_stopped_by_the_alarm_leaves_no_mainjob(fl: Fluxlite) -> None:
    bin_dir = _package(fl)
    ran = fl.tmp / "main-ran"
    p = subprocess.run([str(bin_dir / "pegasus-kickstart"), "-k", "1", "-K", "1",
                        "/bin/touch", str(ran)], capture_output=True, timeout=60, cwd=fl.tmp,
                       env=fl.env({"KICKSTART_PREJOB": f"{sys.executable} -c "
                                   "'import time; time.sleep(30)'"}))
    assert p.returncode == 14, p.stderr
    assert b"Job timed out, sending SIGTERM" in p.stderr
    assert not ran.exists()
    assert b"  mainjob:" not in p.stdout
    rec = _record(p.stdout)
    assert "mainjob" not in rec and rec["prejob"]["status"]["signalled_signal"] == 15
