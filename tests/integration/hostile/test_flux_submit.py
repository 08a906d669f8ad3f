"""Hostile values in the batch script `batch-script` prints and `submit` submits, without Flux.

Flux's own directive parser reads the `#FLUX:` lines in the flux tier (tests/flux/
test_batch_directives.py); here the lexing rules it documents are applied with Python's
shlex, and bash reads the rest of the script.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import Fluxlite

HOSTILE = [
    "my \"job\" it's", "a'''b", 'a"""b', "'\"'", "\"'\"", "\\", "a\\\\b", "x\\", "#note",
    "a#b", ";touch pwned;", "$(touch pwned)", "`touch pwned`", "a b\tc", "{{id}}", "ƒjob",
    "--queue=x", " lead", "trail ", "'", '"', "''", '""', "é ü", "a&&b|c>d<e(f)", "*?[x]~",
    "= eq", "'''", '"""', "''''''", "x'''", "\\'", "\\\"", "\x1b[31m",
]


def _flux_lex(value: str) -> list[str]:
    """A directive as RFC 36 and flux-core's DirectiveParser read it: no triple quotes
    (three quote characters in a row), then POSIX shell words with backslash escapes even
    inside single quotes, '#' comments and punctuation words."""
    assert not re.search(r"""["']{3}""", value), value
    lexer = shlex.shlex(value, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.escapedquotes = "\"'"
    return list(lexer)


@pytest.mark.parametrize("value", HOSTILE)
def test_directive_word_reads_back_exactly(value: str) -> None:
    from fluxlite.flux.submit import directive_word

    assert _flux_lex(f"--job-name={directive_word(value)}") == [f"--job-name={value}"]


def _task(data: Path) -> Path:
    task = data / "task.sh"
    task.write_text("#!/bin/sh\ntrue\n")
    task.chmod(0o755)
    return task


def _directives(script: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ln in script.splitlines():
        if ln.startswith("#FLUX: "):
            (word,) = _flux_lex(ln[len("#FLUX: "):])
            opt, _, value = word.partition("=")
            out.setdefault(opt, []).append(value)
    return out


def test_every_directive_with_hostile_values(fl: Fluxlite, data: Path) -> None:
    name, queue, bank = "my \"job\" it's #1", "q'''; $(x)", "b\\ank\"\"\""
    job = fl.write_job({"executable": str(_task(data)), "name": name,
                        "resources": {"queue": queue, "bank": bank, "time_limit": 600}})
    out, err = "o u't\"#{{id}}.out", "e;r`r`.err"
    p = fl.run("batch-script", str(job), "--output", out, "--error", err,
               "--dependency", "afterok:ƒ2kWN7xZ", "--dependency", "afterany:1234")
    assert p.returncode == 0, p.stderr.decode()
    d = _directives(p.stdout.decode())
    assert d["--job-name"] == [name] and d["--queue"] == [queue] and d["--bank"] == [bank]
    assert d["--output"] == [out] and d["--error"] == [err]
    assert d["--dependency"] == ["afterok:ƒ2kWN7xZ", "afterany:1234"]


def test_default_output_is_the_one_submit_uses(fl: Fluxlite, data: Path) -> None:
    job = fl.write_job({"executable": str(_task(data))})
    p = fl.run("batch-script", str(job))
    assert p.returncode == 0, p.stderr.decode()
    assert "#FLUX: --output=fluxlite-{{id}}.out" in p.stdout.decode().splitlines()


@pytest.mark.parametrize("brk", ["\n", "\r", "\0"])
def test_a_line_break_in_a_directive_is_refused(fl: Fluxlite, data: Path, brk: str) -> None:
    job = fl.write_job({"executable": str(_task(data)), "name": f"a{brk}FLUX: --exclusive"})
    if brk == "\0":
        # a NUL cannot even reach a job file's name through JSON: a queue option can't either
        p = fl.run("batch-script", str(job), "--queue", "x")
        assert p.returncode == 2
        return
    p = fl.run("batch-script", str(job))
    err = p.stderr.decode().strip().splitlines()
    assert p.returncode == 2 and len(err) == 1 and "--job-name" in err[0], err
    assert p.stdout == b""


def test_exported_values_stay_on_their_line(fl: Fluxlite, data: Path) -> None:
    value = "one\nFLUX: --exclusive\r\ntouch pwned 'q' \\ \x07end"
    job = fl.write_job({"executable": str(_task(data))})
    p = fl.run("batch-script", str(job), "--env", f"HOSTILE={value}")
    assert p.returncode == 0, p.stderr.decode()
    script = p.stdout.decode()
    lines = script.split("\n")
    assert not any(ln.startswith(("FLUX:", "touch")) for ln in lines)
    # bash gives the task the value exactly, and runs none of it
    head = script.split("\nset -m\n", 1)[0] + "\n"
    got = subprocess.run(["bash", "-c", head + 'printf %s "$HOSTILE"'], cwd=fl.tmp,
                         capture_output=True, timeout=30)
    assert got.stdout.decode() == value
    assert not (fl.tmp / "pwned").exists()


@pytest.mark.parametrize("dep", ["afterok:ƒ2kWN7xZ", "afternotok:f2kWN7xZ", "after:42",
                                 "afterany:0x1f2e", "afterok:0001.0002.0003.0004"])
def test_dependency_forms(dep: str) -> None:
    from fluxlite.flux.submit import parse_dependency

    assert parse_dependency(dep) == dep


@pytest.mark.parametrize("dep", ["afterok", "afterok:", "before:ƒ2k", "afterok:ƒ0OIl",
                                 "afterok:12 34", "singleton", "afterok:$(x)"])
def test_a_bad_dependency_is_one_line(fl: Fluxlite, data: Path, dep: str) -> None:
    job = fl.write_job({"executable": str(_task(data))})
    p = fl.run("batch-script", str(job), "--dependency", dep)
    err = p.stderr.decode().strip().splitlines()
    assert p.returncode == 2 and len(err) == 1 and "--dependency" in err[0], err
    assert "Traceback" not in p.stderr.decode()


def test_the_flux_extra_does_not_pick_a_flux_python() -> None:
    # the bindings must match the site's flux-core: an extra cannot know its version
    import tomllib

    from tests.conftest import ROOT

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert not any(r.replace(" ", "").startswith("flux-python") for r in extras["flux"])


def test_the_trap_sends_a_second_term_before_the_kill_timeout(fl: Fluxlite, data: Path) -> None:
    # the script's fluxlite line, pointed at a stand-in that logs the signals it gets
    log = fl.tmp / "signals.log"
    stand_in = fl.tmp / "stand-in.sh"
    stand_in.write_text("#!/bin/bash\n"
                        f"for s in TERM HUP; do trap \"echo $s >> {log}\" $s; done\n"
                        f"echo $$ > {log}.pid\necho up > {log}\n"
                        "for i in $(seq 1 100); do sleep 0.1; done\n")
    stand_in.chmod(0o755)
    job = fl.write_job({"executable": str(_task(data))})
    p = fl.run("batch-script", str(job))
    lines = p.stdout.decode().splitlines()
    (i,) = [n for n, ln in enumerate(lines) if ln.endswith(" < /dev/null &")]
    lines[i] = f"{stand_in} < /dev/null &"
    script = fl.tmp / "b.sh"
    script.write_text("\n".join(lines) + "\n")
    proc = subprocess.Popen(["bash", str(script)], cwd=fl.tmp,
                            env={**fl.env(), "FLUXLITE_KILL_TIMEOUT": "4"})
    try:
        deadline = time.monotonic() + 10
        while not (log.exists() and log.read_text()):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGHUP)  # the broker's signal: not passed on a second time
        while log.read_text().count("TERM") < 2 and time.monotonic() < t0 + 5:
            time.sleep(0.02)
        took = time.monotonic() - t0
        assert log.read_text().split() == ["up", "TERM", "TERM"]
        assert 1.8 < took < 3.0  # 2 s before the kill timeout of 4 s
    finally:
        proc.kill()
        proc.wait()
        try:  # the stand-in runs in a process group of its own (set -m)
            os.killpg(int((fl.tmp / "signals.log.pid").read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
