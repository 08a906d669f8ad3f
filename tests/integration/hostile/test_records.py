"""Hostile records and task output: what a task prints, plants in its record or leaves for
``fluxlite stats`` and ``fluxlite report`` to read.

- a task's output with characters that YAML readers take for line breaks or skip still
  makes a record Pegasus's parser reads back exactly;
- a YAML alias bomb in a record or in ``$KICKSTART_INTEGRITY_DATA`` is refused at once,
  under a memory limit that the old behaviour would have blown (and the record is kept);
- a record with absurd or mistyped fields is skipped with one line;
- loops of directory links, huge files, unreadable directories: each ends, in bounded
  memory, with one line;
- any string in the report page cannot break out of its script element.

Every command runs as a real subprocess; the memory cases under ``prlimit``-style limits
set in the child, so a regression fails the test instead of taking the machine down.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Fluxlite, require_oracle

MEMORY_LIMIT = 1 << 30  # 1 GiB of address space: far above fluxlite's need, far below a bomb


def _limited(limit: int = MEMORY_LIMIT) -> Any:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return preexec


def _run(fl: Fluxlite, *args: str, env: dict[str, str] | None = None,
         timeout: float = 60, limit: int = MEMORY_LIMIT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "fluxlite", *args], env=fl.env(env),
                          cwd=fl.tmp, capture_output=True, timeout=timeout,
                          preexec_fn=_limited(limit))


def _one_clean_error(p: subprocess.CompletedProcess[bytes]) -> str:
    err = p.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err and "MemoryError" not in err, err
    return err


# -- line breaks of other readers in a task's output -----------------------------------------
BREAKERS = "NEL\x85 LS\u2028 PS\u2029 BOM\ufeff CR\r end"


def test_line_breaks_in_task_output_keep_the_record_readable(fl: Fluxlite,
                                                             tmp_path: Path) -> None:
    """U+2028, U+2029, NEL, BOM and CR in stdout and stderr: Pegasus's parser reads the
    record, its exit code and the output exactly."""
    script = tmp_path / "task.py"
    script.write_text("import sys\n"
                      f"sys.stdout.write({BREAKERS!r} + '\\n')\n"
                      f"sys.stderr.write('\\u2028' + {BREAKERS!r})\n"
                      "sys.exit(3)\n")
    out = tmp_path / "ks.out"
    p = subprocess.run([sys.executable, "-m", "fluxlite", "kickstart", "-n", "breaker",
                        sys.executable, str(script)], env=fl.env(), cwd=tmp_path,
                       stdout=out.open("wb"), stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 3, p.stderr
    import yaml

    text = out.read_text("utf-8")
    for loader in (yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        inv = yaml.load(text, Loader=loader)[0]  # noqa: S506 - safe loaders
        assert inv["mainjob"]["status"]["regular_exitcode"] == 3
        assert inv["files"]["stdout"]["data"] == BREAKERS + "\n"
        assert inv["files"]["stderr"]["data"] == "\u2028" + BREAKERS
    require_oracle()
    from tests.conftest import parse_records

    from Pegasus.tools import kickstart_parser as kp

    recs = parse_records(out)
    assert recs and recs[0]["exitcode"] == 3, recs
    got = kp.Parser(str(out)).parse_stdout_stderr()
    assert got[0]["stdout"] == BREAKERS + "\n" and got[0]["stderr"] == "\u2028" + BREAKERS


# -- YAML alias bombs --------------------------------------------------------------------------
def _bomb(indent: str, levels: int = 9) -> list[str]:
    """Nine levels of nine aliases: 640 bytes that a reader expanding them makes 9**9 items."""
    lines = [f'{indent}l0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"{indent}l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]"
              for i in range(1, levels)]
    return lines


def _bomb_record(tmp_path: Path) -> Path:
    lines = ["- invocation: True", "  version: 3.0",
             "  start: 2024-01-01T00:00:00.000+00:00", "  duration: 1.000",
             *_bomb("  "), "  transformation: *a8", "  hostname: *a8", "  mainjob:",
             "    start: 2024-01-01T00:00:00.000+00:00", "    duration: 1.000", "    pid: 42",
             "    status:", "      raw: 0", "      regular_exitcode: 0"]
    good = ["- invocation: True", "  version: 3.0",
            "  start: 2024-01-01T00:00:10.000+00:00", "  duration: 2.000",
            '  transformation: "good"', "  hostname: nodeA", "  mainjob:",
            "    start: 2024-01-01T00:00:10.000+00:00", "    duration: 2.000", "    pid: 43",
            "    status:", "      raw: 0", "      regular_exitcode: 0"]
    p = tmp_path / "bomb.out"
    p.write_text("\n".join(lines + good) + "\n")
    return p


@pytest.mark.parametrize("command", ["stats", "report"])
def test_an_alias_bomb_in_a_record_is_refused_in_bounded_memory(fl: Fluxlite, tmp_path: Path,
                                                                command: str) -> None:
    path = _bomb_record(tmp_path)
    extra = ["-o", str(tmp_path / "r.html")] if command == "report" else ["--json"]
    p = _run(fl, command, str(path), *extra)
    err = _one_clean_error(p)
    assert p.returncode == 0, err
    lines = [ln for ln in err.splitlines() if "skipped" in ln]
    assert len(lines) == 1 and "aliases are not allowed" in lines[0] and str(path) in lines[0]
    if command == "stats":
        doc = json.loads(p.stdout)
        assert doc["summary"]["tasks"] == 1 and "good" in doc["transformations"]


def test_an_alias_bomb_in_kickstart_integrity_data_keeps_the_record(fl: Fluxlite,
                                                                    tmp_path: Path) -> None:
    """A task appends a bomb to $KICKSTART_INTEGRITY_DATA: the entries are left out with one
    line, the record is written and nothing of kickstart's is left in $TMPDIR."""
    task = tmp_path / "task.py"
    task.write_text("import os\nlines = " + repr(_bomb("    ")) + "\n"
                    "with open(os.environ['KICKSTART_INTEGRITY_DATA'], 'a') as fh:\n"
                    "    fh.write('\\n'.join(lines) + '\\n')\n")
    p = _run(fl, "kickstart", sys.executable, str(task))
    err = _one_clean_error(p)
    assert p.returncode == 0, err
    import yaml

    inv = yaml.safe_load(p.stdout.decode())[0]
    assert inv["mainjob"]["status"]["regular_exitcode"] == 0
    assert "l8" not in (inv.get("files") or {})
    assert [ln for ln in err.splitlines() if "KICKSTART_INTEGRITY_DATA" in ln]
    assert [n for n in os.listdir(fl.wdbase) if n.startswith("ks.")] == []
