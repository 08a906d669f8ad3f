"""`fluxlite pegasus-home`: the worker package PegasusLite finds through PEGASUS_HOME."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Fluxlite, sha256_of

CLEAN_ENV = {"PATH": "/usr/bin:/bin"}  # no virtualenv, no fluxlite on PATH


def _home(fl: Fluxlite, d: Path, version: str = "5.1.3", *extra: str
          ) -> subprocess.CompletedProcess[bytes]:
    return fl.run("pegasus-home", str(d), "--pegasus-version", version, *extra)


def test_tools_run_without_path_or_virtualenv(fl: Fluxlite, tmp_path: Path) -> None:
    home = tmp_path / "home"
    p = _home(fl, home)
    assert p.returncode == 0, p.stderr
    assert f"PEGASUS_HOME={home}" in p.stdout.decode()
    names = sorted(x.name for x in (home / "bin").iterdir())
    assert names == ["pegasus-config", "pegasus-integrity", "pegasus-kickstart",
                     "pegasus-transfer"]
    env = {**CLEAN_ENV, "PYTHONPATH": str(tmp_path / "elsewhere")}  # a leaked PYTHONPATH
    run = lambda *a: subprocess.run(a, capture_output=True, env=env, cwd=tmp_path,  # noqa: E731
                                    timeout=60)
    k = run(str(home / "bin" / "pegasus-kickstart"), "-n", "tr", "/bin/echo", "hi")
    assert k.returncode == 0, k.stderr
    assert k.stdout.startswith(b"- invocation: True")
    (tmp_path / "f").write_text("x")
    i = run(str(home / "bin" / "pegasus-integrity"), "--generate=f")
    assert i.returncode == 0 and i.stdout.split()[1] == b"f", i.stderr
    t = subprocess.run([str(home / "bin" / "pegasus-transfer"), "--threads", "1"],
                       input=b"[]", capture_output=True, env=env, timeout=60)
    assert t.returncode == 0, t.stderr


def test_pegasus_config_answers(fl: Fluxlite, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _home(fl, home, "5.0.9").returncode == 0
    cfg = str(home / "bin" / "pegasus-config")
    run = lambda *a: subprocess.run([cfg, *a], capture_output=True, env=CLEAN_ENV,  # noqa: E731
                                    timeout=10)
    assert run("--version").stdout == b"5.0.9\n"
    assert run("-V").stdout == b"5.0.9\n"
    assert run("--noeoln", "--version").stdout == b"5.0.9"
    assert run("--bin").stdout.decode().strip() == str(home / "bin")
    assert run("--python").stdout.strip()  # where fluxlite is imported from
    dump = run("--sh-dump").stdout.decode()
    assert f"PEGASUS_BIN_DIR={home / 'bin'}" in dump
    bad = run("--no-such-option")
    assert bad.returncode == 2 and b"unrecognized arguments" in bad.stderr
    assert run().returncode == 1  # nothing asked: usage, as pegasus-config does


def test_idempotent_refusals_and_force(fl: Fluxlite, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert _home(fl, home).returncode == 0
    before = {p.name: p.stat().st_mtime_ns for p in (home / "bin").iterdir()}
    again = _home(fl, home)
    assert again.returncode == 0 and b"already up to date" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in (home / "bin").iterdir()} == before
    other = _home(fl, home, "5.1.2")
    assert other.returncode == 2
    assert "holds a worker package for Pegasus 5.1.3" in other.stderr.decode()
    assert b"5.1.3" in subprocess.run([str(home / "bin" / "pegasus-config"), "--version"],
                                      capture_output=True).stdout
    forced = _home(fl, home, "5.1.2", "--force")
    assert forced.returncode == 0, forced.stderr
    assert subprocess.run([str(home / "bin" / "pegasus-config"), "--version"],
                          capture_output=True).stdout == b"5.1.2\n"
    assert json.loads((home / ".fluxlite-pegasus-home.json").read_text())[
        "pegasus_version"] == "5.1.2"


def test_refuses_a_directory_that_is_not_a_package(fl: Fluxlite, tmp_path: Path) -> None:
    d = tmp_path / "mine"
    (d / "bin").mkdir(parents=True)
    canary = d / "bin" / "pegasus-config"
    canary.write_text("mine")
    for extra in ((), ("--force",)):
        p = _home(fl, d, "5.1.3", *extra)
        err = p.stderr.decode()
        assert p.returncode == 2, err
        assert "not empty and not a worker package made by fluxlite" in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert canary.read_text() == "mine"
    assert sorted(x.name for x in d.rglob("*")) == ["bin", "pegasus-config"]
    f = tmp_path / "file"
    f.write_text("x")
    assert _home(fl, f).returncode == 2
    bad = _home(fl, tmp_path / "new", "5.1")
    assert bad.returncode == 2 and b"must be a version as pegasus-version prints" in bad.stderr
    assert not (tmp_path / "new").exists()


def test_force_removes_only_files_of_the_package(fl: Fluxlite, tmp_path: Path) -> None:
    """A marker edited to list files outside the package must not make --force delete them."""
    home = tmp_path / "home"
    assert _home(fl, home).returncode == 0
    canary = tmp_path / "canary"
    canary.write_text("keep")
    marker = home / ".fluxlite-pegasus-home.json"
    doc = json.loads(marker.read_text())
    doc["files"].update({"../canary": sha256_of(canary), str(canary): sha256_of(canary)})
    marker.write_text(json.dumps(doc))
    (home / "bin" / "mine").write_text("a user's file beside the tools")
    p = _home(fl, home, "5.1.2", "--force")
    assert p.returncode == 0, p.stderr
    assert canary.read_text() == "keep"
    assert (home / "bin" / "mine").exists()


def test_an_interpreter_without_fluxlite_is_refused(fl: Fluxlite, tmp_path: Path) -> None:
    import shutil

    system = shutil.which("python3", path="/usr/bin:/bin")
    if system is None:
        pytest.skip("no system python3 to try")
    d = tmp_path / "home"
    p = _home(fl, d, "5.1.3", "--python", system)
    assert p.returncode == 2
    assert "cannot import fluxlite" in p.stderr.decode()
    assert not d.exists()


def test_versions_compare_as_pegasuslite_greps_them() -> None:
    """PegasusVersion.accepts against grep -E with the pattern PegasusLite builds from the
    planner's major, minor and patch (the dots of the patch match any character, the line
    may start with anything)."""
    from fluxlite.pegasus.home import PegasusVersion

    planners = ["5.1.2", "5.1.3-dev.0", "5.1.3.dev0", "6.0.0-dev.0"]
    printed = ["5.1.2", "15.1.2", "5.1.2 ", "5.1.3-dev.0", "5.1.3-devX0", "5.1.3.dev0",
               "5.1.3xdev0", "5.1.3-dev.0\nx", "x\n5.1.2", "6.0.0-dev.0", "6.0.0.dev.0"]
    for planner in planners:
        v = PegasusVersion.parse(planner)
        major, minor, patch = planner.split(".", 2)
        for text in printed:
            g = subprocess.run(["grep", "-E", f"{major}\\.{minor}\\.{patch}$"],
                               input=(text + "\n").encode(), capture_output=True, timeout=10)
            assert v.accepts(text) == (g.returncode == 0), (planner, text)


def test_an_interpreter_path_no_shebang_can_carry_gets_a_sh_launcher(fl: Fluxlite,
                                                                      tmp_path: Path) -> None:
    from tests.conftest import ROOT

    venv = tmp_path / "with space" / "venv"
    made = subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)],
                          capture_output=True, timeout=120)
    site = list((venv / "lib").glob("python3*/site-packages"))
    if made.returncode != 0 or not site:
        pytest.skip("no /usr/bin/python3 that makes a virtualenv")
    (site[0] / "fluxlite-checkout.pth").write_text(f"{ROOT}\n")
    home = tmp_path / "home"
    p = _home(fl, home, "5.1.3", "--python", str(venv / "bin" / "python"))
    if p.returncode == 2 and b"fluxlite needs 3.11" in p.stderr:
        pytest.skip("/usr/bin/python3 is older than 3.11")
    assert p.returncode == 0, p.stderr
    launcher = home / "bin" / "pegasus-kickstart"
    assert launcher.read_text().startswith("#!/bin/sh\n")
    k = subprocess.run([str(launcher), "/bin/true"], capture_output=True, env=CLEAN_ENV,
                       cwd=tmp_path, timeout=60)
    assert k.returncode == 0 and k.stdout.startswith(b"- invocation: True"), k.stderr
