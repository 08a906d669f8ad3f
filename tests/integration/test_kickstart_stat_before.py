"""When `fluxlite kickstart -S` stats its files: as pegasus-kickstart does, once it has
started and changed to -w's directory, before the setup and prejob hooks and the task; the
usage text and docs/kickstart.md say so."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.conftest import Fluxlite

ROOT = Path(__file__).resolve().parents[2]


def _files(out: bytes) -> dict:
    text = out.decode()
    return yaml.safe_load(text[text.index("- invocation: True"):])[0]["files"]


def test_S_stats_before_the_hooks_and_s_after_the_task(fl: Fluxlite) -> None:
    d = fl.tmp / "there"
    d.mkdir()
    (d / "f").write_bytes(b"abc")
    # -S before -w: the name is still taken in -w's directory
    p = fl.run("kickstart", "-S", "before=f", "-w", str(d), "-s", "after=f",
               "/bin/sh", "-c", "printf task >> f",
               env={"KICKSTART_SETUP": "/bin/sh -c 'printf setup >> f'",
                    "KICKSTART_PREJOB": "/bin/sh -c 'printf prejob >> f'"})
    assert p.returncode == 0, p.stderr.decode()
    files = _files(p.stdout)
    assert files["before"]["file_name"] == str(d / "f")
    assert files["before"]["size"] == 3
    assert files["after"]["size"] == len("abcsetupprejobtask")


def test_the_usage_and_the_docs_say_when(fl: Fluxlite) -> None:
    p = fl.run("kickstart", "-h")
    line = next(x for x in p.stderr.decode().splitlines() + p.stdout.decode().splitlines()
                if x.startswith(" -S "))
    assert "after start (before any hook and the job)" in line
    row = next(x for x in (ROOT / "docs" / "kickstart.md").read_text().splitlines()
               if x.startswith("| `-S "))
    assert "before the setup and prejob hooks and the task" in row
