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

import resource
import subprocess
import sys
from pathlib import Path
from typing import Any


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
