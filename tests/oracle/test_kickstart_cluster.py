"""A pegasus-cluster list whose lines call `fluxlite kickstart -H ...`, as the planner writes
clustered jobs, run by `fluxlite cluster`: Pegasus's parser and exit-code check accept it."""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path

import pytest

from tests.conftest import Fluxlite, judge, parse_records

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("fluxlite.commands.cluster") is None,
    reason="`fluxlite cluster` is not part of this tree yet (fluxlite/commands/cluster.py)")

KICKSTART = f"{shlex.quote(sys.executable)} -m fluxlite kickstart"


def cluster_list(path: Path, commands: list[tuple[str, str, str]]) -> Path:
    """Lines as the planner writes them: ``#@ N TRANSFORMATION ID`` before each command."""
    lines = []
    for n, (tr, job_id, command) in enumerate(commands, 1):
        lines.append(f"#@ {n} {tr} {job_id}")
        lines.append(f"{KICKSTART} -H -n {tr} -N {job_id} -R condorpool -L diamond "
                     f"-T 2026-11-22T08:00:00+00:00 {command}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_cluster_of_kickstart_lines_is_accepted(fl: Fluxlite) -> None:
    lst = cluster_list(fl.tmp / "merge_ID1.in", [
        ("diamond::preprocess:4.0", "ID0000001", "-s f.b1=f.b1 /bin/sh -c 'echo b1 > f.b1'"),
        ("diamond::findrange:4.0", "ID0000002", "/bin/echo findrange"),
        ("diamond::analyze:4.0", "ID0000003", "/bin/true"),
    ])
    p = fl.run("cluster", str(lst))
    assert p.returncode == 0, p.stderr.decode()
    out = fl.tmp / "merge_ID1.out"
    out.write_bytes(p.stdout)
    recs = parse_records(out)
    assert [r for r in recs if r.get("invocation")], p.stdout.decode()[:3000]
    summary = [r for r in recs if r.get("cluster-summary") or "succeeded" in r]
    assert summary, p.stdout.decode()[-2000:]
    assert (fl.tmp / "f.b1").read_text() == "b1\n"
    judge(out, None)


def test_a_failed_kickstart_line_fails_the_cluster(fl: Fluxlite) -> None:
    from Pegasus.exitcode import JobFailed

    lst = cluster_list(fl.tmp / "merge_ID2.in", [
        ("diamond::preprocess:4.0", "ID0000001", "/bin/true"),
        ("diamond::analyze:4.0", "ID0000002", "/bin/sh -c 'exit 3'"),
    ])
    p = fl.run("cluster", str(lst))
    assert p.returncode != 0
    out = fl.tmp / "merge_ID2.out"
    out.write_bytes(p.stdout)
    with pytest.raises(JobFailed):
        judge(out, None)
