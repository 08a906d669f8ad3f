"""A cluster's output as Pegasus judges it: pegasus-exitcode and the monitord parser."""

from __future__ import annotations

import pytest

from tests.conftest import Fluxlite, judge, parse_records

DAG = """\
TASK a /bin/echo a
TASK b -c 1 /bin/sh -c "printf 'odd \\033 bytes \\377\\n'"
TASK c /bin/true
EDGE a b
EDGE a c
"""


def _run(fl: Fluxlite, text: str, name: str = "job.dag") -> tuple[int, str]:
    (fl.tmp / name).write_text(text)
    p = fl.run("cluster", name, "-o", "job.out", "--no-rescue")
    (fl.tmp / "job.err").write_bytes(p.stderr)
    return p.returncode, str(fl.tmp / "job.out")


def test_successful_cluster_is_accepted(fl: Fluxlite) -> None:
    rc, out = _run(fl, DAG)
    assert rc == 0
    judge(out, message=None)
    recs = [r for r in parse_records(out) if r.get("invocation")]
    assert len(recs) == 3  # every record parses (an unparseable one would give [])
    assert all(r["exitcode"] == 0 for r in recs)
    assert {r["transformation"] for r in recs} == {"echo", "sh", "true"}


def test_cluster_with_a_failed_task_is_rejected(fl: Fluxlite) -> None:
    from Pegasus.exitcode import JobFailed

    rc, out = _run(fl, DAG.replace("/bin/true", "/bin/false"))
    assert rc == 5
    with pytest.raises(JobFailed, match="cluster-summary"):
        judge(out, message=None)
    recs = [r for r in parse_records(out) if r.get("invocation")]
    assert sorted(r["exitcode"] for r in recs) == [0, 0, 1]


def test_pegasus_cluster_list_is_accepted(fl: Fluxlite) -> None:
    rc, out = _run(fl, "#@ 1 tr::one ID1\n/bin/true\n#@ 2 tr::two ID2\necho x | cat\n",
                   "merge.in")
    assert rc == 0
    judge(out, message=None)
    recs = [r for r in parse_records(out) if r.get("invocation")]
    assert len(recs) == 2


def test_nested_cluster_output_cannot_fool_the_oracle(fl: Fluxlite) -> None:
    # a task that prints a successful summary of its own must not decide for the cluster
    fake = '[cluster-summary stat=\\"ok\\", tasks=1, succeeded=1, failed=0]'
    rc, out = _run(fl, f'TASK a /bin/sh -c "echo \'{fake}\'"\nTASK b /bin/false\n')
    assert rc == 5
    with pytest.raises(Exception, match="cluster-summary"):
        judge(out, message=None)


def test_kickstart_wrapped_tasks_keep_their_own_records(fl: Fluxlite) -> None:
    import shlex
    import sys

    ks = f"{shlex.quote(sys.executable)} -m fluxlite kickstart -H"
    text = (f"#@ 1 diamond::preprocess:4.0 ID0000001\n{ks} -n diamond::preprocess:4.0 "
            f"-N ID0000001 -s f.b1=f.b1 /bin/sh -c 'echo b1 > f.b1'\n"
            f"#@ 2 diamond::analyze:4.0 ID0000002\n{ks} -n diamond::analyze:4.0 "
            f"-N ID0000002 /bin/true\n")
    rc, out = _run(fl, text, "merge_ID1.in")
    assert rc == 0
    judge(out, message=None)
    recs = [r for r in parse_records(out) if r.get("invocation")]
    # one record per task, the wrapper's own: no record of the wrapper around it
    assert sorted(r["transformation"] for r in recs) == ["diamond::analyze:4.0",
                                                         "diamond::preprocess:4.0"]
    assert "sha256:" in open(out).read()  # the -s output checksum, for the .meta file


def test_task_that_succeeds_on_retry_is_accepted(fl: Fluxlite) -> None:
    rc, out = _run(fl, 'TASK a /bin/true\n'
                       'TASK flaky -t 2 /bin/sh -c "test -e once || { touch once; exit 3; }"\n'
                       "EDGE a flaky\n")
    assert rc == 0
    judge(out, message=None)
    recs = [r for r in parse_records(out) if r.get("invocation")]
    assert sorted(r["exitcode"] for r in recs) == [0, 0, 3]
