"""A cluster's output as Pegasus judges it: pegasus-exitcode and the monitord parser."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Fluxlite, judge, parse_records

# a TASK line splits as pegasus-mpi-cluster splits it: a backslash escapes the next
# character, inside quotes too, and ' and " do not nest
DAG = r"""TASK a /bin/echo a
TASK b -c 1 /bin/sh -c "printf \'odd \\033 bytes \\377\\n\'"
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
    q = "\\'"  # a quote inside PMC's quotes
    rc, out = _run(fl, f'TASK a /bin/sh -c "echo {q}{fake}{q}"\nTASK b /bin/false\n')
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


# Hostile names, arguments and output: nothing a task brings can make a line Pegasus's
# parsers take for a task line, the summary or a record boundary.

def cluster(fl: Fluxlite, text: str, *args: str, name: str = "c.dag",
            timeout: float = 60) -> tuple[object, str]:
    (fl.tmp / name).write_text(text)
    p = fl.run("cluster", name, "-o", "c.out", *args, timeout=timeout)
    return p, (fl.tmp / "c.out").read_text()



def test_an_argument_cannot_forge_the_summary(fl: Fluxlite) -> None:
    from Pegasus.exitcode import JobFailed

    p, out = cluster(fl, 'TASK a /bin/echo "[cluster-summary tasks=0]"\nTASK b /bin/false\n',
                     "--no-rescue", name="j.dag")
    assert p.returncode == 5
    (fl.tmp / "j.out").write_text(out)
    with pytest.raises(JobFailed, match="cluster-summary"):
        judge(fl.tmp / "j.out", message=None)
    recs = [r for r in parse_records(fl.tmp / "j.out") if r.get("invocation")]
    assert len(recs) == 2
    # the argument is kept exactly in the record, as YAML reads it
    import yaml

    records = [yaml.safe_load(part.split("[cluster-task")[0])[0]
               for part in out.split("- invocation: True")[1:]
               for part in ["- invocation: True" + part]]
    echo = next(r for r in records if r["transformation"] == "echo")
    assert echo["mainjob"]["argument_vector"] == ["[cluster-summary tasks=0]"]


def test_grep_for_the_summary_as_a_task_does_not_crash_pegasus_exitcode(fl: Fluxlite) -> None:
    from Pegasus.exitcode import JobFailed

    # a pegasus-cluster list: the line goes to /bin/sh; grep exits 2 (bad bracket)
    p, out = cluster(fl, 'grep "[cluster-summary" /dev/null\n/bin/true\n', "--no-rescue",
                     name="g.in")
    (fl.tmp / "g.out").write_text(out)
    assert p.returncode == 5
    with pytest.raises(JobFailed, match="cluster-summary"):
        judge(fl.tmp / "g.out", message=None)
    p, out = cluster(fl, 'grep -c "[cluster-summary" /dev/null || true\n', "--no-rescue",
                     name="g.in")
    assert p.returncode == 0
    (fl.tmp / "g.out").write_text(out)
    judge(fl.tmp / "g.out", message=None)  # accepted: the real summary says ok


def test_names_cannot_forge_task_lines_or_break_records(fl: Fluxlite) -> None:
    # names with a quote, '=', ']', '- invocation:' and control characters
    text = ('#@ 1 tr,x status=0" ID1\n/bin/false\n'
            '#@ 2 - invocation: ID2\n/bin/true\n'
            '#@ 3 <invocation\x0bx]=y ID3\n/bin/true\n')
    p, out = cluster(fl, text, "--no-rescue", name="n.in")
    assert p.returncode == 5, p.stderr.decode()
    (fl.tmp / "n.out").write_text(out)
    recs = parse_records(fl.tmp / "n.out")
    assert recs, "a record or line did not parse"
    tasks = {r["id"]: r for r in recs if r.get("task")}
    assert set(tasks) == {"1", "2", "3"}
    assert tasks["1"]["status"] == str(1 << 8)  # not the status=0 in the name
    assert sum(1 for r in recs if r.get("invocation")) == 3


def test_a_json_job_output_cannot_forge_the_summary(fl: Fluxlite) -> None:
    from Pegasus.exitcode import JobFailed

    jobs = [{"id": "liar", "executable": "/bin/sh",
             "arguments": ["-c", "echo '[cluster-summary stat=\"ok\", tasks=0]'; "
                                 "echo '[cluster-summary tasks=0]' >&2; exit 1"]},
            {"id": "argv", "executable": "/bin/echo",
             "arguments": ["[cluster-summary tasks=0]", "[cluster-task id=x]"]}]
    p, out = cluster(fl, json.dumps(jobs), "--no-rescue", name="j.json", timeout=90)
    assert p.returncode == 5, p.stderr.decode()
    assert out.count("[cluster-summary") == 1
    (fl.tmp / "j.out").write_text(out)
    with pytest.raises(JobFailed, match="cluster-summary"):
        judge(fl.tmp / "j.out", message=None)


def test_a_working_directory_cannot_forge_the_summary(fl: Fluxlite) -> None:
    from Pegasus.exitcode import JobFailed

    # the records hold the working directory, the task's output paths and its error text
    odd = fl.tmp / '[cluster-summary tasks=0] "x"'
    odd.mkdir()
    (odd / "c.dag").write_text("TASK a /bin/true\nTASK b /nonexistent/[cluster-summary\n")
    p = fl.run("cluster", "c.dag", "-o", str(fl.tmp / "c.out"), "--no-rescue",
               "--tmpdir", str(odd), cwd=odd)
    assert p.returncode == 5, p.stderr.decode()
    out = (fl.tmp / "c.out").read_text()
    assert out.count("[cluster-summary") == 1
    with pytest.raises(JobFailed, match="cluster-summary"):
        judge(fl.tmp / "c.out", message=None)
    assert len([r for r in parse_records(fl.tmp / "c.out") if r.get("invocation")]) == 2


def test_not_run_lines_are_passed_over_by_pegasus(fl: Fluxlite) -> None:
    from Pegasus.exitcode import JobFailed

    rc, out = _run(fl, "TASK a /bin/false\nTASK b /bin/true\nTASK c /bin/true\n"
                       "EDGE a b\nEDGE b c\n")
    assert rc == 5
    assert open(out).read().count("[cluster-not-run ") == 2
    recs = parse_records(out)
    assert [r["exitcode"] for r in recs if r.get("invocation")] == [1]
    assert [r["id"] for r in recs if r.get("task")] == ["a"]
    assert [r["failed"] for r in recs if r.get("clustered")] == ["1"]
    with pytest.raises(JobFailed, match="cluster-summary"):
        judge(out, message=None)


def test_a_task_cannot_pass_off_several_records(fl: Fluxlite) -> None:
    # one task printing two records is no kickstart wrapper: its output is embedded
    (fl.tmp / "fake.yml").write_text("- invocation: True\n  transformation: fake\n" * 2)
    rc, out = _run(fl, "TASK a /bin/cat fake.yml\n")
    assert rc == 0
    recs = [r for r in parse_records(out) if r.get("invocation")]
    assert len(recs) == 1 and recs[0]["transformation"] == "cat"
