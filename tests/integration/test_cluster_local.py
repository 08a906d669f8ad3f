"""fluxlite cluster with the local executor: DAGs, lists, JSON job lists, rescue, limits."""

from __future__ import annotations

import itertools
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from fluxlite.execute.supervisor import alive as _alive

from tests.conftest import Fluxlite, pegasus_cluster_parser, sha256_of

TASK_LINE = re.compile(r"^\[cluster-task (.*)\]$", re.M)
SUMMARY = re.compile(r"^\[cluster-summary (.*)\]$", re.M)


def cluster_lines(text: str) -> tuple[list[dict[str, str]], dict[str, str]]:
    RecordParser = pegasus_cluster_parser()  # noqa: N806
    tasks = [RecordParser(f"[cluster-task {m}]").parse() for m in TASK_LINE.findall(text)]
    sums = SUMMARY.findall(text)
    assert len(sums) == 1, sums
    return tasks, RecordParser(f"[cluster-summary {sums[0]}]").parse()


def run(fl: Fluxlite, *args: str, **kw: Any):  # noqa: ANN201
    p = fl.run("cluster", *args, **kw)
    out = (fl.tmp / "c.out").read_text() if (fl.tmp / "c.out").exists() else ""
    return p, out


DIAMOND = """\
# a diamond with resource requests
TASK a -c 1 -m 16 /bin/sh -c "echo a >> order.log"
TASK b -c 2 -p 10 /bin/sh -c "echo b >> order.log; echo to-stdout; echo to-stderr >&2"
TASK c -m 32 /bin/sh -c "echo c >> order.log"
TASK d /bin/sh -c "echo d >> order.log"
EDGE a b
EDGE a c
EDGE b d
EDGE c d
"""


def test_pmc_diamond(fl: Fluxlite) -> None:
    (fl.tmp / "d.dag").write_text(DIAMOND)
    p, out = run(fl, "d.dag", "--jobs", "2", "-o", "c.out", "--json", "c.json")
    assert p.returncode == 0, p.stderr.decode()
    order = (fl.tmp / "order.log").read_text().split()
    assert order[0] == "a" and order[-1] == "d" and sorted(order[1:3]) == ["b", "c"]
    tasks, summary = cluster_lines(out)
    assert tasks[0]["id"] == "a"
    assert summary["stat"] == "ok" and summary["tasks"] == "4" and summary["succeeded"] == "4"
    assert summary["failed"] == "0"
    b = next(t for t in tasks if t["id"] == "b")
    assert b["cpus"] == "2" and b["status"] == "0" and b["line"] == "3"
    assert "machine:" not in out  # compact records, as kickstart -H
    assert out.count("- invocation: True") == 4
    assert "to-stdout" in out and "to-stderr" in out  # embedded task output
    rec = json.loads((fl.tmp / "c.json").read_text())
    assert rec["summary"]["stat"] == "ok"
    assert {t["id"]: t["state"] for t in rec["tasks"]} == dict.fromkeys("abcd", "done")
    a = rec["tasks"][0]
    assert a["memory_mb"] == 16 and a["attempts"][0]["exit_code"] == 0
    assert a["attempts"][0]["duration"] >= 0 and a["attempts"][0]["rusage"]
    rescue = (fl.tmp / "d.dag.rescue").read_text().split("\n")
    assert sorted(ln for ln in rescue if ln.startswith("DONE")) == [f"DONE {x}" for x in "abcd"]


def test_priorities_order_ready_tasks(fl: Fluxlite) -> None:
    lines = [f'TASK t{i} -p {i} /bin/sh -c "echo t{i} >> order.log"' for i in range(5)]
    (fl.tmp / "p.dag").write_text("\n".join(lines) + "\n")
    p, _ = run(fl, "p.dag", "--jobs", "1", "-o", "c.out")
    assert p.returncode == 0, p.stderr.decode()
    assert (fl.tmp / "order.log").read_text().split() == ["t4", "t3", "t2", "t1", "t0"]


def test_retries_then_success(fl: Fluxlite) -> None:
    # fails on its first two tries, succeeds on the third
    (fl.tmp / "r.dag").write_text(
        'TASK flaky -t 3 /bin/sh -c "echo x >> tries; test $(wc -l < tries) -ge 3"\n')
    p, out = run(fl, "r.dag", "-o", "c.out", "--json", "c.json")
    assert p.returncode == 0, p.stderr.decode()
    tasks, summary = cluster_lines(out)
    assert [(t["try"], t["status"]) for t in tasks] == [("1", "256"), ("2", "256"), ("3", "0")]
    assert summary["stat"] == "ok" and summary["retries"] == "2"
    rec = json.loads((fl.tmp / "c.json").read_text())
    assert len(rec["tasks"][0]["attempts"]) == 3


def test_failure_with_retries_then_rescue_rerun(fl: Fluxlite) -> None:
    dag = """\
TASK a /bin/sh -c "echo a >> ran.log"
TASK b -t 2 /bin/sh -c "echo b >> ran.log; test -e fixed"
TASK c /bin/sh -c "echo c >> ran.log"
TASK d /bin/sh -c "echo d >> ran.log"
EDGE a b
EDGE a c
EDGE b d
"""
    (fl.tmp / "f.dag").write_text(dag)
    p, out = run(fl, "f.dag", "-o", "c.out", "--json", "c.json")
    assert p.returncode == 5, p.stderr.decode()
    tasks, summary = cluster_lines(out)
    assert summary["stat"] == "fail" and summary["failed"] == "1"
    assert summary["succeeded"] == "2" and summary["not_run"] == "1"
    assert sorted((fl.tmp / "ran.log").read_text().split()) == ["a", "b", "b", "c"]
    assert [t["try"] for t in tasks if t["id"] == "b"] == ["1", "2"]
    rec = json.loads((fl.tmp / "c.json").read_text())
    states = {t["id"]: t["state"] for t in rec["tasks"]}
    assert states == {"a": "done", "b": "failed", "c": "done", "d": "not-run"}
    # the rerun runs only what was left
    (fl.tmp / "fixed").touch()
    (fl.tmp / "ran.log").unlink()
    p, out = run(fl, "f.dag", "-o", "c.out")
    assert p.returncode == 0, p.stderr.decode()
    assert (fl.tmp / "ran.log").read_text().split() == ["b", "d"]
    tasks, summary = cluster_lines(out)
    assert [t["id"] for t in tasks] == ["b", "d"]
    assert summary["stat"] == "ok" and summary["rescued"] == "2" and summary["succeeded"] == "4"
    # a third run has nothing to do and still succeeds
    p, out = run(fl, "f.dag", "-o", "c.out")
    assert p.returncode == 0
    assert cluster_lines(out)[1]["tasks"] == "4"


def test_fail_fast(fl: Fluxlite) -> None:
    (fl.tmp / "l.txt").write_text("false\necho two >> ran.log\necho three >> ran.log\n")
    p, out = run(fl, "l.txt", "-n", "1", "-f", "-o", "c.out", "--no-rescue")
    assert p.returncode == 5
    assert not (fl.tmp / "ran.log").exists()
    _, summary = cluster_lines(out)
    assert summary["failed"] == "1" and summary["not_run"] == "2"
    assert not (fl.tmp / "l.txt.rescue").exists()


def test_pegasus_cluster_list(fl: Fluxlite) -> None:
    text = """\
# a pegasus-cluster input
#@ 1 diamond::preprocess:4.0 ID0000001
/bin/echo one
#@ 2 diamond::findrange:4.0 ID0000002
echo two | tr a-z A-Z > two.txt
#@ 3 diamond::analyze:4.0 ID0000003
/bin/sh -c 'exit 0'
"""
    (fl.tmp / "merge_ID1.in").write_text(text)
    p, out = run(fl, "merge_ID1.in", "-n", "2", "-o", "c.out")
    assert p.returncode == 0, p.stderr.decode()
    assert (fl.tmp / "two.txt").read_text() == "TWO\n"  # pipes and redirections: a shell line
    tasks, summary = cluster_lines(out)
    assert sorted(t["id"] for t in tasks) == ["1", "2", "3"]
    assert {t["name"] for t in tasks} == {"diamond::preprocess:4.0", "diamond::findrange:4.0",
                                          "diamond::analyze:4.0"}
    assert summary["lines"] == "7" and summary["stat"] == "ok"
    assert 'derivation: "ID0000002"' in out
    assert 'transformation: "diamond::findrange:4.0"' in out


def test_json_job_list_with_staging(fl: Fluxlite, data: Path) -> None:
    (data / "in.txt").write_text("payload\n")
    res = fl.tmp / "results"
    jobs = [
        {"id": "first", "name": "copy", "executable": "/bin/cp", "arguments": ["in.txt",
                                                                               "mid.txt"],
         "inputs": [{"lfn": "in.txt", "urls": [f"file://{data}/in.txt"],
                     "sha256": sha256_of(data / "in.txt")}],
         "outputs": [{"lfn": "mid.txt", "urls": [f"file://{res}/mid.txt"]}]},
        {"id": "second", "after": ["first"], "tries": 2, "executable": "/bin/sh",
         "arguments": ["-c", "cat mid.txt mid.txt > out.txt"],
         "inputs": [{"lfn": "mid.txt", "urls": [f"file://{res}/mid.txt"]}],
         "outputs": [{"lfn": "out.txt", "urls": [f"file://{res}/out.txt"]}]},
    ]
    (fl.tmp / "jobs.json").write_text(json.dumps({"tasks": jobs}))
    p, out = run(fl, "jobs.json", "-o", "c.out", "--json", "c.json")
    assert p.returncode == 0, p.stderr.decode()
    assert (res / "out.txt").read_text() == "payload\npayload\n"
    tasks, _ = cluster_lines(out)
    assert [t["id"] for t in tasks] == ["first", "second"]
    assert "transfer_attempts" in out and "machine:" not in out
    assert out.count("- invocation: True") == 2
    rec = json.loads((fl.tmp / "c.json").read_text())
    jr = rec["tasks"][0]["attempts"][0]["job_record"]
    assert jr["success"] and jr["stage_in"][0]["transfers"][0]["sha256"]
    assert fl.leftover_workdirs() == []


def test_json_job_list_checksum_failure(fl: Fluxlite, data: Path) -> None:
    (data / "in.txt").write_text("payload\n")
    jobs = [{"id": "bad", "executable": "/bin/true",
             "inputs": [{"lfn": "in.txt", "urls": [f"file://{data}/in.txt"],
                         "sha256": "0" * 64}]},
            {"id": "child", "after": ["bad"], "executable": "/bin/true"}]
    (fl.tmp / "jobs.json").write_text(json.dumps(jobs))
    p, out = run(fl, "jobs.json", "-o", "c.out")
    assert p.returncode == 5
    tasks, summary = cluster_lines(out)
    assert [t["id"] for t in tasks] == ["bad"] and tasks[0]["status"] != "0"
    assert summary["not_run"] == "1" and summary["failed"] == "1"
    assert "integrity" in out


def test_task_environment_and_forwarding(fl: Fluxlite) -> None:
    (fl.tmp / "e.dag").write_text(
        # as PMC, $OUTVAR holds the number of a file descriptor the task writes to
        'TASK one -c 1 -f OUTVAR=collected.txt /bin/sh -c "echo $PMC_TASK >&$OUTVAR"\n'
        'TASK two -F part.txt=collected.txt /bin/sh -c "echo $PMC_CPUS > part.txt"\n'
        'EDGE one two\n')
    p, _ = run(fl, "e.dag", "-o", "c.out")
    assert p.returncode == 0, p.stderr.decode()
    assert (fl.tmp / "collected.txt").read_text() == "one\n1\n"
    assert not (fl.tmp / "part.txt").exists()


def test_time_limit_stops_and_rerun_continues(fl: Fluxlite) -> None:
    (fl.tmp / "t.dag").write_text(
        'TASK quick /bin/sh -c "echo quick >> ran.log"\n'
        'TASK slow /bin/sh -c "sleep 30"\n'
        'TASK after /bin/sh -c "echo after >> ran.log"\n'
        'EDGE quick slow\nEDGE slow after\n')
    t0 = time.monotonic()
    # 3 s allowed; tasks get TERM 1 s before the end
    p, out = run(fl, "t.dag", "--max-wall-time", "0.05", "--time-margin", "1", "-o", "c.out")
    elapsed = time.monotonic() - t0
    assert p.returncode == 14, p.stderr.decode()
    assert elapsed < 10
    tasks, summary = cluster_lines(out)
    assert summary["stat"] == "fail" and summary["stopped"] == "time limit"
    assert summary["failed"] == "0" and summary["not_run"] == "2"
    slow = next(t for t in tasks if t["id"] == "slow")
    assert slow["stopped"] == "time limit" and slow["status"] == str(signal.SIGTERM)
    assert (fl.tmp / "t.dag.rescue").read_text().count("DONE") == 1
    # the rerun starts where the first stopped
    (fl.tmp / "t.dag").write_text(
        'TASK quick /bin/sh -c "echo quick >> ran.log"\n'
        'TASK slow /bin/true\n'
        'TASK after /bin/sh -c "echo after >> ran.log"\n'
        'EDGE quick slow\nEDGE slow after\n')
    p, out = run(fl, "t.dag", "-o", "c.out")
    assert p.returncode == 0
    assert (fl.tmp / "ran.log").read_text().split() == ["quick", "after"]


def test_sigterm_writes_summary_and_rescue(fl: Fluxlite) -> None:
    (fl.tmp / "s.dag").write_text('TASK a /bin/true\nTASK b /bin/sleep 30\nEDGE a b\n')
    proc = fl.popen("cluster", "s.dag", "-o", "c.out")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if (fl.tmp / "s.dag.rescue").exists() and "DONE a" in (fl.tmp / "s.dag.rescue").read_text():
            break
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    _, summary = cluster_lines((fl.tmp / "c.out").read_text())
    assert summary["stat"] == "fail" and summary["stopped"] == "interrupted"


def test_dry_run(fl: Fluxlite) -> None:
    (fl.tmp / "d.dag").write_text(DIAMOND)
    p = fl.run("cluster", "d.dag", "--dry-run")
    assert p.returncode == 0
    assert b"4 tasks" in p.stdout and b"after=a" in p.stdout
    assert not (fl.tmp / "order.log").exists()


@pytest.mark.parametrize(("name", "text", "message"), [
    ("cycle.dag", "TASK a /bin/true\nTASK b /bin/true\nTASK c /bin/true\n"
                  "EDGE a b\nEDGE b c\nEDGE c b\n", "cycle.dag:2: dependency cycle: b -> c -> b"),
    ("unknown.dag", "TASK a /bin/true\nEDGE a zz\n", "unknown.dag:2: EDGE names unknown task 'zz'"),
    ("big.dag", "TASK a /bin/true\nTASK huge -c 64 /bin/true\n",
     "big.dag:2: task 'huge' asks for 64 cores but the local executor has 2"),
    ("opt.dag", "TASK a -c two /bin/true\n", "opt.dag:1: task 'a': -c needs an integer"),
    ("dup.dag", "TASK a /bin/true\nTASK a /bin/true\n", "dup.dag:2: duplicate task 'a'"),
    ("kw.dag", "TASK a /bin/true\nEDGES a b\n", "kw.dag:2: expected TASK or EDGE"),
    ("bad.json", '[{"id": "a", "executable": "/bin/true"},\n {"id": "b", "after": ["x"], '
                 '"executable": "/bin/true"}]', "bad.json: [1].after[0]: unknown task 'x'"),
    ("cyc.json", '[{"id": "a", "after": ["b"], "executable": "/bin/true"},'
                 '{"id": "b", "after": ["a"], "executable": "/bin/true"}]',
     "cyc.json: [0]: dependency cycle: a -> b -> a"),
    ("syntax.json", '[\n{"id": "a",,}\n]', "syntax.json:2: malformed JSON"),
    ("spec.json", '[{"id": "a"}]', "spec.json: [0].executable: is required"),
])
def test_bad_inputs(fl: Fluxlite, name: str, text: str, message: str) -> None:
    (fl.tmp / name).write_text(text)
    p = fl.run("cluster", name, "--jobs", "2", "-o", "c.out")
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert message in err, err
    assert err.count("\n") == 1 and err.startswith("fluxlite: error: ")
    assert not (fl.tmp / "c.out").exists()  # nothing ran, nothing written
    assert not (fl.tmp / f"{name}.rescue").exists()


def test_rescue_file_with_a_partial_last_line(fl: Fluxlite) -> None:
    # a crash while 'DONE abc' was written left 'DONE ab': that is not task ab done, and
    # the next DONE line must not be glued to it
    (fl.tmp / "r.dag").write_text('TASK ab /bin/sh -c "echo ab >> ran.log"\n'
                                  'TASK abc /bin/sh -c "echo abc >> ran.log"\n')
    (fl.tmp / "r.dag.rescue").write_text("# rescue\nDONE ab")
    p, _ = run(fl, "r.dag", "-o", "c.out")
    assert p.returncode == 0, p.stderr.decode()
    assert sorted((fl.tmp / "ran.log").read_text().split()) == ["ab", "abc"]
    lines = (fl.tmp / "r.dag.rescue").read_text().splitlines()
    assert sorted(ln for ln in lines if not ln.startswith("#")) == ["DONE ab", "DONE abc"]


def test_unreadable_rescue_file_is_one_line_error(fl: Fluxlite) -> None:
    (fl.tmp / "r.dag").write_text('TASK a /bin/sh -c "echo a >> ran.log"\n')
    (fl.tmp / "rdir").mkdir()
    p, _ = run(fl, "r.dag", "-o", "c.out", "--rescue", "rdir")
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert err.startswith("fluxlite: error: ") and err.count("\n") == 1 and "rdir" in err
    assert not (fl.tmp / "ran.log").exists()


def test_list_lines_for_the_shell(fl: Fluxlite) -> None:
    # assignments and builtins mean something only to the shell, as pegasus-cluster runs them
    (fl.tmp / "s.in").write_text("X=42 /usr/bin/env\nexit 0\ncd /\n")
    p, out = run(fl, "s.in", "-o", "c.out", "--no-rescue")
    assert p.returncode == 0, p.stderr.decode()
    _, summary = cluster_lines(out)
    assert summary["succeeded"] == "3"
    assert "X=42" in out


def test_negative_stdio_bytes_is_refused(fl: Fluxlite) -> None:
    (fl.tmp / "a.dag").write_text("TASK a /bin/echo hi\n")
    p, _ = run(fl, "a.dag", "-o", "c.out", "--stdio-bytes", "-1")
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert err.startswith("fluxlite: error: ") and err.count("\n") == 1


def test_unwritable_json_record_is_refused_before_running(fl: Fluxlite) -> None:
    (fl.tmp / "a.dag").write_text('TASK a /bin/sh -c "echo a >> ran.log"\n')
    p, _ = run(fl, "a.dag", "-o", "c.out", "--json", "no/such/dir/c.json")
    err = p.stderr.decode()
    assert p.returncode == 2, err
    assert err.startswith("fluxlite: error: ") and err.count("\n") == 1 and "c.json" in err
    assert not (fl.tmp / "ran.log").exists()


def test_processes_that_left_their_group_are_not_left_behind(fl: Fluxlite) -> None:
    # a task that puts a process in a session of its own (a daemon) still leaves nothing
    # running once the cluster is over
    (fl.tmp / "d.in").write_text("setsid /bin/sleep 300 < /dev/null > /dev/null 2>&1 & "
                                 "echo $! > daemon.pid; sleep 0.5\n")
    p, _ = run(fl, "d.in", "-o", "c.out", "--no-rescue")
    assert p.returncode == 0, p.stderr.decode()
    pid = int((fl.tmp / "daemon.pid").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    assert not _alive(pid)


def test_progress_does_not_repeat_itself(fl: Fluxlite) -> None:
    (fl.tmp / "a.dag").write_text("TASK a /bin/true\n")
    p, _ = run(fl, "a.dag", "-o", "c.out", "--no-rescue")
    assert p.returncode == 0
    tallies = [ln.rsplit(" (", 1)[0] for ln in p.stderr.decode().splitlines()
               if ln.startswith("fluxlite cluster: ")]
    assert tallies and tallies[-1].startswith("fluxlite cluster: 1/1 done")
    assert all(a != b for a, b in itertools.pairwise(tallies)), tallies


# A task that writes its block to the forwarded descriptor in small pieces, slowly, so
# that tasks running at once would interleave if the blocks were not kept whole; more
# than a pipe holds, so the reader must drain the pipe while the task runs.
_WRITER = ("import os, sys, time\n"
           "fd = int(os.environ['OUT'])\n"
           "ch = os.environ['PMC_TASK'][-1].encode()\n"
           "for i in range(40):\n"
           "    os.write(fd, ch * 4096)\n"
           "    time.sleep(0.002)\n"
           "sys.exit(int(os.environ.get('FAIL', '0')))\n")


def test_pipe_forward_gives_a_descriptor_and_appends_whole_blocks(fl: Fluxlite) -> None:
    import shlex
    import sys

    (fl.tmp / "w.py").write_text(_WRITER)
    py = shlex.quote(sys.executable)
    lines = [f"TASK t{c} -f OUT=all.txt {py} w.py" for c in "abcd"]
    # a failed task's forwarded data is dropped, as PMC drops it
    lines.append(f"TASK tx -f OUT=all.txt /usr/bin/env FAIL=3 {py} w.py")
    lines.append('TASK num -f OUT=num.txt /bin/sh -c "echo $OUT >&$OUT"')
    (fl.tmp / "f.dag").write_text("\n".join(lines) + "\n")
    p, out = run(fl, "f.dag", "--jobs", "6", "-o", "c.out", "--no-rescue")
    assert p.returncode == 5, p.stderr.decode()
    data = (fl.tmp / "all.txt").read_bytes()
    blocks = re.findall(rb"(.)\1*", data, re.S)
    runs = [m.group(0) for m in re.finditer(rb"(.)\1*", data, re.S)]
    assert sorted(blocks) == [b"a", b"b", b"c", b"d"], [r[:1] + b"*%d" % len(r) for r in runs]
    assert all(len(r) == 40 * 4096 for r in runs)
    assert (fl.tmp / "num.txt").read_text().strip().isdigit()
    tasks, _ = cluster_lines(out)
    assert {t["id"]: t["status"] for t in tasks}["tx"] == str(3 << 8)


_PIPES_PROBE = """\
import json, os, sys, time
me = os.getppid()  # the cluster: the parent of every task, and a subreaper


def pipes(pid):
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("pipe:"):
            out.add(target)
    return out


mine = pipes(os.getpid())  # what the cluster passes on to every task
if sys.argv[1] == "before":
    json.dump(sorted(pipes(me) - mine), open("pipes.before", "w"))
    sys.exit(0)
before = set(json.load(open("pipes.before")))
# every other child of the cluster is a process a forwarding task left behind (while this
# task runs alone); the pipes they hold that this task does not are their tasks' own
kids = [int(k) for tid in os.listdir(f"/proc/{me}/task")
        for k in open(f"/proc/{me}/task/{tid}/children").read().split()]
forwarded = set().union(*(pipes(k) for k in kids if k != os.getpid())) - mine
# a pipe the cluster opens for a moment (to start this task) goes away; a leaked read end
# stays: look until the cluster holds nothing it did not hold before, for 3 s at most
deadline = time.monotonic() + 3
while (extra := pipes(me) - mine - before) and time.monotonic() < deadline:
    time.sleep(0.05)
json.dump({"forwarded": sorted(forwarded), "extra": sorted(extra),
           "still_open": sorted(forwarded & pipes(me))}, open("pipes.after", "w"))
"""


def test_pipe_forward_read_end_is_closed_when_the_task_ends(fl: Fluxlite) -> None:
    # A process the task leaves behind holding the write end must neither hold the cluster
    # up nor keep fluxlite's read end open: after 20 forwarding tasks the cluster holds no
    # pipe it did not hold before them, and none that a left-behind process holds. Pipes
    # are compared by inode, not counted: a count also sees a descriptor open for a moment
    # (the one subprocess uses while it starts a task).
    import sys

    (fl.tmp / "probe.py").write_text(_PIPES_PROBE)
    lines = [f"TASK first {sys.executable} probe.py before",
             f"TASK last {sys.executable} probe.py after"]
    for i in range(20):
        lines.append(f'TASK f{i} -f OUT=fwd.txt /bin/sh -c "echo {i} >&$OUT; '
                     f'setsid /bin/sleep 30 </dev/null >/dev/null 2>&1 &"')
        lines.append(f"EDGE first f{i}")
        lines.append(f"EDGE f{i} last")
    (fl.tmp / "z.dag").write_text("\n".join(lines) + "\n")
    t0 = time.monotonic()
    p, _ = run(fl, "z.dag", "--jobs", "4", "-o", "c.out", "--no-rescue")
    assert p.returncode == 0, p.stderr.decode()
    assert time.monotonic() - t0 < 20
    got = sorted(int(x) for x in (fl.tmp / "fwd.txt").read_text().split())
    assert got == list(range(20))
    after = json.loads((fl.tmp / "pipes.after").read_text())
    # a task's leftover may be killed with its process group before its setsid: most live on
    assert after["forwarded"], after
    assert after["still_open"] == [] and after["extra"] == [], after


_ZOMBIES = ("import os, sys\n"
            "me = os.getppid()\n"
            "n = 0\n"
            "for d in os.listdir('/proc'):\n"
            "    try:\n"
            "        st = open(f'/proc/{d}/stat').read().rsplit(')', 1)[1].split()\n"
            "    except (OSError, IndexError):\n"
            "        continue\n"
            "    n += st[0] == 'Z' and int(st[1]) == me\n"
            "open(sys.argv[1], 'w').write(str(n))\n")


def test_processes_tasks_leave_behind_do_not_stay_zombies(fl: Fluxlite) -> None:
    # Orphans of tasks re-parent to fluxlite (a subreaper); once they exit they must be
    # reaped while the cluster runs, and never at the cost of a task's own exit status.
    import shlex
    import sys

    (fl.tmp / "z.py").write_text(_ZOMBIES)
    py = shlex.quote(sys.executable)

    def dag(name: str, codes: list[int]) -> None:
        lines = []
        for i, code in enumerate(codes):
            # each subshell exits at once: its /bin/true is orphaned, re-parented, exits
            lines.append(f'TASK leave{i} /bin/sh -c "(/bin/true &); (/bin/true &); '
                         f'sleep 0.2; exit {code}"')
            lines.append(f"EDGE leave{i} count")
        lines.append(f'TASK count /bin/sh -c "sleep 2.5; exec {py} z.py zombies.txt"')
        (fl.tmp / name).write_text("\n".join(lines) + "\n")

    codes = [i % 3 for i in range(8)]
    dag("z1.dag", codes)
    p, out = run(fl, "z1.dag", "--jobs", "4", "-o", "c.out", "--no-rescue")
    assert p.returncode == 5, p.stderr.decode()
    tasks, _ = cluster_lines(out)
    status = {t["id"]: t["status"] for t in tasks}
    assert status == {f"leave{i}": str(c << 8) for i, c in enumerate(codes)}

    dag("z2.dag", [0] * 8)
    p, _ = run(fl, "z2.dag", "--jobs", "4", "-o", "c.out", "--no-rescue")
    assert p.returncode == 0, p.stderr.decode()
    assert (fl.tmp / "zombies.txt").read_text() == "0"


def test_task_tries_override_the_default_and_zero_means_one(fl: Fluxlite) -> None:
    # PMC: a task's -t wins over the cluster's --tries, and -t 0 is one try
    (fl.tmp / "t.dag").write_text(
        'TASK once -t 1 /bin/sh -c "echo once >> ran.log; exit 1"\n'
        'TASK zero -t 0 /bin/sh -c "echo zero >> ran.log; exit 1"\n'
        'TASK deflt /bin/sh -c "echo deflt >> ran.log; exit 1"\n')
    p, _ = run(fl, "t.dag", "-o", "c.out", "--no-rescue", "--tries", "3")
    assert p.returncode == 5, p.stderr.decode()
    ran = (fl.tmp / "ran.log").read_text().split()
    assert (ran.count("once"), ran.count("zero"), ran.count("deflt")) == (1, 1, 3)


def test_file_forward_only_from_a_task_that_succeeded(fl: Fluxlite) -> None:
    # PMC forwards -F files of successful tasks only, and removes the source either way
    (fl.tmp / "f.dag").write_text(
        'TASK bad -F bad.part=all.txt /bin/sh -c "echo bad > bad.part; exit 1"\n'
        'TASK good -F good.part=all.txt /bin/sh -c "echo good > good.part"\n')
    p, _ = run(fl, "f.dag", "-o", "c.out", "--no-rescue")
    assert p.returncode == 5, p.stderr.decode()
    assert (fl.tmp / "all.txt").read_text() == "good\n"
    assert not (fl.tmp / "bad.part").exists() and not (fl.tmp / "good.part").exists()


def test_pipe_forward_of_more_than_is_kept_in_memory(fl: Fluxlite) -> None:
    # 6 MB through the pipe: kept in a private file past a few MB, appended whole
    (fl.tmp / "big.dag").write_text(
        'TASK big -f DATA=big.bin /bin/sh -c "head -c 6000000 /dev/zero | tr \\"\\\\0\\" x '
        '>&$DATA; echo end >&$DATA"\n'
        'TASK small -f DATA=big.bin /bin/sh -c "echo small >&$DATA"\nEDGE big small\n')
    p, _ = run(fl, "big.dag", "-o", "c.out", "--no-rescue")
    assert p.returncode == 0, p.stderr.decode()
    assert (fl.tmp / "big.bin").read_bytes() == b"x" * 6000000 + b"end\nsmall\n"


def test_pmc_task_lines_carry_the_planners_task_number(fl: Fluxlite) -> None:
    (fl.tmp / "p.dag").write_text("#@ 1 diamond::preprocess ID0000001\n"
                                  "TASK pre /bin/true\n"
                                  "#@ 2 diamond::analyze ID0000002\n"
                                  "TASK ana /bin/true\n"
                                  "EDGE pre ana\n")
    p, out = run(fl, "p.dag", "-o", "c.out")
    assert p.returncode == 0, p.stderr.decode()
    tasks, _ = cluster_lines(out)
    # pegasus-monitord matches task lines to the '#@ N' comments by their id
    assert [(t["id"], t["task"], t["name"]) for t in tasks] == [
        ("1", "pre", "diamond::preprocess"), ("2", "ana", "diamond::analyze")]


LIBRARY_RUN = """
import json, signal, sys
from fluxlite.cluster.run import Settings, run
sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP)
before = [signal.getsignal(s) for s in sigs]
code = run(Settings(input="d.dag", executor="local", jobs=2, output="c.out", json="c.json",
                    rescue="d.rescue", use_flux=False))
after = [signal.getsignal(s) for s in sigs]
print(json.dumps({"code": code, "handlers_restored": before == after}))
"""


def test_a_cluster_run_from_the_library_without_the_command_line(fl: Fluxlite) -> None:
    # settings in, an exit code out: the run's executor, records, JSON record and rescue
    # file as the command's; its signal handlers gone and its private directory removed
    (fl.tmp / "d.dag").write_text(DIAMOND)
    p = subprocess.run([sys.executable, "-c", LIBRARY_RUN], env=fl.env(), cwd=fl.tmp,
                       capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads(p.stdout) == {"code": 0, "handlers_restored": True}
    _, summary = cluster_lines((fl.tmp / "c.out").read_text())
    assert summary["succeeded"] == "4"
    doc = json.loads((fl.tmp / "c.json").read_text())
    assert doc["executor"] == "local" and doc["summary"]["succeeded"] == 4
    assert doc["flux_uri"] is None and doc["nested"] is None and "pool" not in doc
    assert sorted((fl.tmp / "d.rescue").read_text().split("\n")[1:]) == [
        "", "DONE a", "DONE b", "DONE c", "DONE d"]
    assert not [p for d in (fl.tmp, fl.wdbase) for p in d.glob(".fluxlite-cluster.*")]
