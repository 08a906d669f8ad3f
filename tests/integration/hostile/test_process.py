"""Hostile cases of starting, stopping and killing a job: nothing of it may outlive fluxlite.

Real processes and real signals, every one sent to a process the test started (fluxlite and
what it started below it). Times are bounded generously for a loaded two-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from fluxlite.signals import HANDLED_SIGNALS
from tests.conftest import Fluxlite
from tests.jobs import script

# A task that leaves the process group and the session in every way a daemon does, and
# writes its pids outside the worker directory (which may be removed).
ESCAPING = """#!/bin/sh
out=$1
setsid sleep 1234.5 &
echo $! >> "$out.tmp"
( setsid sh -c 'sleep 1234.6 & echo $! >> "$0.tmp"' "$out" & )
sh -c 'trap "" TERM HUP; sleep 1234.7 & echo $! >> "$0.tmp"; wait' "$out" &
echo $$ >> "$out.tmp"
sleep 0.2
mv "$out.tmp" "$out"
sleep 1234.8
"""


def _start(fl: Fluxlite, data: Path, tmp_path: Path, *args: str, job: dict | None = None,
           **kw: object) -> tuple[subprocess.Popen[bytes], list[int]]:
    """fluxlite run (or the command in args) of ESCAPING; returns once every process of
    the job exists, with the pids of the job's processes (fluxlite's own below it too)."""
    script(data / "escape.sh", ESCAPING)
    pids_file = tmp_path / "pids"
    if not args:
        doc = {"executable": str(data / "escape.sh"), "arguments": [str(pids_file)],
               "records": {"kickstart": str(tmp_path / "job.out")}, **(job or {})}
        args = ("run", str(fl.write_job(doc)))
    else:
        args = (*args, str(data / "escape.sh"), str(pids_file))
    proc = fl.popen(*args, **kw)
    deadline = time.monotonic() + 20
    while not pids_file.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.02)
    tree = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
    task_pids = {int(x) for x in pids_file.read_text().split()}
    assert len(task_pids) == 4 and task_pids <= tree, (task_pids, tree)
    return proc, sorted(tree)


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.Error:
            pass
    return out


def _gone_within(pids: list[int], seconds: float) -> float:
    t0 = time.monotonic()
    while _alive(pids):
        if time.monotonic() - t0 > seconds:
            left = _alive(pids)
            for pid in left:  # the test's own processes: never leave them running
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            raise AssertionError(f"still running {seconds} s after: {left}")
        time.sleep(0.005)
    return time.monotonic() - t0


def test_sigkill_of_fluxlite_ends_every_process_of_the_job(
        fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    proc, pids = _start(fl, data, tmp_path)
    (wd,) = fl.leftover_workdirs()
    proc.kill()
    proc.wait()
    took = _gone_within(pids, 2.0)
    assert took < 1.5
    # the worker directory fluxlite created goes, as keep "never" says
    deadline = time.monotonic() + 2
    while fl.leftover_workdirs() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fl.leftover_workdirs() == [], wd


def test_sigkill_keeps_the_worker_directory_that_keep_says_to_keep(
        fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    proc, pids = _start(fl, data, tmp_path, job={"workdir": {"keep": "on-failure"}})
    proc.kill()
    proc.wait()
    _gone_within(pids, 2.0)
    assert len(fl.leftover_workdirs()) == 1


def test_sigkill_of_fluxlites_process_group_ends_the_job(
        fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    # what a batch system's or Flux's job shell's final kill does: SIGKILL to the group
    proc, pids = _start(fl, data, tmp_path, start_new_session=True)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _gone_within(pids, 2.0) < 1.5


def test_sigkill_of_kickstart_ends_its_task(fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    proc, pids = _start(fl, data, tmp_path, "kickstart")
    proc.kill()
    proc.wait()
    assert _gone_within(pids, 2.0) < 1.5


@pytest.mark.parametrize("command", ["run", "kickstart"])
def test_one_term_ends_a_task_that_ignores_it_after_the_grace(
        fl: Fluxlite, data: Path, tmp_path: Path, command: str) -> None:
    if command == "run":
        proc, pids = _start(fl, data, tmp_path, job={"limits": {"kill_grace": 1}})
    else:
        proc, pids = _start(fl, data, tmp_path, "kickstart", "-K", "1")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 5
    # the task's shell dies of the TERM; what ignores it goes with the KILL after the grace
    assert _alive(pids) == []
    assert proc.returncode in (128 + signal.SIGTERM, 128 + signal.SIGKILL), err
    assert b"Traceback" not in err
    record = (tmp_path / "job.out").read_text() if command == "run" else out.decode()
    assert "- invocation: True" in record


def test_a_rerun_keeps_the_records_of_the_earlier_attempt(fl: Fluxlite, tmp_path: Path) -> None:
    ks, js = tmp_path / "job.out", tmp_path / "rec.json"
    job = {"executable": "/bin/sh", "arguments": ["-c", "echo attempt; exit ${CODE:-0}"],
           "records": {"kickstart": str(ks), "json": str(js)}}
    jp = fl.write_job(job)
    assert fl.run("run", str(jp), env={"CODE": "3"}).returncode == 3
    assert fl.run("run", str(jp)).returncode == 0
    assert json.loads((tmp_path / "rec.json.000").read_text())["exit_code"] == 3
    assert json.loads(js.read_text())["exit_code"] == 0
    assert "regular_exitcode: 3" in (tmp_path / "job.out.000").read_text()
    assert fl.run("run", str(jp), env={"CODE": "4"}).returncode == 4
    assert json.loads((tmp_path / "rec.json.001").read_text())["exit_code"] == 0
    # told to, it overwrites
    assert fl.run("run", "--overwrite-records", str(jp)).returncode == 0
    assert not (tmp_path / "rec.json.002").exists()
    assert json.loads(js.read_text())["exit_code"] == 0


def test_only_a_regular_file_is_kept_as_an_earlier_record(tmp_path: Path) -> None:
    from fluxlite.record.write import keep_earlier

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert keep_earlier(str(fifo)) is None and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert keep_earlier("/dev/null") is None
    (tmp_path / "empty").write_text("")
    assert keep_earlier(str(tmp_path / "empty")) is None
    assert sorted(os.listdir(tmp_path)) == ["empty", "fifo"]


def _summary(err: bytes) -> list[str]:
    lines = err.decode().splitlines()
    at = next(i for i, ln in enumerate(lines) if "job failed (exit" in ln)
    return [ln.split(": ", 1)[1] for ln in lines[at:-1]]


def test_a_failure_says_why_in_two_lines(fl: Fluxlite, tmp_path: Path) -> None:
    job = {"executable": "/bin/sh",
           "arguments": ["-c", "echo one >&2; echo two >&2; echo 'the input is bad' >&2; exit 3"],
           "workdir": {"keep": "on-failure"},
           "records": {"kickstart": str(tmp_path / "job.out"), "json": None}}
    p = fl.run("run", str(fl.write_job(job)))
    assert p.returncode == 3
    first, second = _summary(p.stderr)
    assert first == "job failed (exit 3): exit 3"
    (wd,) = fl.leftover_workdirs()
    assert second.startswith("task stderr ends: one | two | the input is bad; ")
    assert f"record: {tmp_path / 'job.out'}" in second and wd in second
    assert p.stderr.decode().splitlines()[-1] == "PegasusLite: exitcode 3"


def test_a_time_limit_failure_names_the_time_limit(fl: Fluxlite, tmp_path: Path) -> None:
    body = "trap 'echo saving >&2; exit 0' TERM; sleep 60 & wait"
    job = {"executable": "/bin/sh", "arguments": ["-c", body],
           "limits": {"checkpoint_time": 1, "maxwalltime": 20}}
    p = fl.run("run", str(fl.write_job(job)))
    assert p.returncode == 143
    first, second = _summary(p.stderr)
    assert first.startswith("job failed (exit 143): time limit: TERM at 1 s of 20 s")
    assert second == "task stderr ends: saving"


@pytest.mark.parametrize(("job", "needle", "code"), [
    ({"executable": "/nonexistent/tool"}, "task failed: executable '/nonexistent/tool' does "
                                           "not exist", 127),
    # an I/O failure of the task's stdio is not a missing executable: 71, still the task's phase
    ({"executable": "/bin/true", "stdin": "never-staged.txt"}, "task failed: cannot open stdin",
     71),
    ({"executable": "./plain.txt", "inputs": [{"lfn": "plain.txt", "urls": ["PLAIN"]}]},
     "is not an executable file", 127),
])
def test_the_phase_of_a_start_failure_is_the_task(fl: Fluxlite, tmp_path: Path, job: dict,
                                                   needle: str, code: int) -> None:
    # found before anything is created, when the stdio is opened, or after the stage-in:
    # a task that cannot be started is a failure of the task, not of a phase around it
    plain = tmp_path / "plain.txt"
    plain.write_text("not a program\n")
    if "inputs" in job:
        job = {**job, "inputs": [{"lfn": "plain.txt", "urls": [f"file://{plain}"]}]}
    job = {**job, "records": {"kickstart": None, "json": str(tmp_path / "rec.json")}}
    p = fl.run("run", str(fl.write_job(job)))
    assert p.returncode == code
    (first, _) = _summary(p.stderr)
    assert needle in first, first
    assert json.loads((tmp_path / "rec.json").read_text())["failed_phase"] == "task"
    assert not any(f"{ph} failed".encode() in p.stderr for ph in ("setup", "stage-in", "stage-out"))


def test_a_signal_to_the_supervisor_does_not_lose_the_task(fl: Fluxlite, tmp_path: Path) -> None:
    # the supervisor ignores a stray TERM while fluxlite lives: the task's status still comes
    job = {"executable": "/bin/sh", "arguments": ["-c", "sleep 1; exit 5"],
           "records": {"kickstart": None, "json": str(tmp_path / "rec.json")}}
    proc = fl.popen("run", str(fl.write_job(job)))
    deadline = time.monotonic() + 20
    while True:
        kids = psutil.Process(proc.pid).children()
        if kids and kids[0].children():
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    kids[0].send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 5
    assert json.loads((tmp_path / "rec.json").read_text())["task"]["status"]["exitcode"] == 5


def test_the_task_does_not_inherit_fluxlites_signal_handling(fl: Fluxlite, tmp_path: Path
                                                             ) -> None:
    # the supervisor is a fork of fluxlite: the task must still start with no signal
    # ignored or blocked that fluxlite's own caller did not ignore or block; the signals
    # fluxlite handles and forwards to the task are at their defaults there, whatever the
    # caller's (as a task of pegasus-kickstart, which catches them too, gets them)
    job = {"executable": "/bin/grep", "arguments": ["-E", "^Sig(Ign|Blk)", "/proc/self/status"],
           "records": {"kickstart": None, "json": str(tmp_path / "rec.json")}}
    assert fl.run("run", str(fl.write_job(job))).returncode == 0
    rec = json.loads((tmp_path / "rec.json").read_text())
    (stdout,) = [f["tail"] for f in rec["task"]["stdio"] if f["name"] == "stdout"]
    mine = subprocess.run(["/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"],
                          capture_output=True, check=True).stdout.decode()
    expected = _caller_signals(mine)
    expected["SigIgn"] -= _FORWARDED
    assert _caller_signals(stdout) == expected


# what fluxlite handles itself and forwards to the task (the stop signals, its time-limit
# warning) and the one its supervisor keeps for itself
_FORWARDED = {int(s) for s in (*HANDLED_SIGNALS, signal.SIGUSR2)}


def test_a_signal_fluxlite_forwards_is_the_tasks_to_act_on_any_other_stays_ignored(
        fl: Fluxlite, tmp_path: Path) -> None:
    # `nohup fluxlite run` from a shell's `&`: the caller ignores HUP, QUIT and (here) TSTP;
    # fluxlite forwards HUP and QUIT to the task, which gets them at their defaults, so that
    # a forwarded QUIT ends it (it exits 131, no escalation to KILL); TSTP, which fluxlite
    # leaves alone, stays ignored
    job = {"executable": "/bin/grep", "arguments": ["-E", "^SigIgn", "/proc/self/status"],
           "records": {"kickstart": None, "json": str(tmp_path / "rec.json")}}

    def ignore() -> None:
        for sig in (signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP):
            signal.signal(sig, signal.SIG_IGN)

    p = subprocess.run([sys.executable, "-m", "fluxlite", "run", str(fl.write_job(job))],
                       env=fl.env(), capture_output=True, timeout=120, preexec_fn=ignore)
    assert p.returncode == 0, p.stderr
    rec = json.loads((tmp_path / "rec.json").read_text())
    (stdout,) = [f["tail"] for f in rec["task"]["stdio"] if f["name"] == "stdout"]
    ignored = _caller_signals(stdout)["SigIgn"]
    assert int(signal.SIGTSTP) in ignored
    assert not ignored & {int(signal.SIGHUP), int(signal.SIGQUIT)}, ignored
    sleeper = {"executable": "/bin/sleep", "arguments": ["30"],
               "records": {"kickstart": None, "json": str(tmp_path / "rec2.json")}}
    proc = subprocess.Popen([sys.executable, "-m", "fluxlite", "run",
                             str(fl.write_job(sleeper))], env=fl.env(), preexec_fn=ignore,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not psutil.Process(proc.pid).children(recursive=True)[1:]:
        assert time.monotonic() < deadline, "the task did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGQUIT)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGQUIT


def _caller_signals(status: str) -> dict[str, set[int]]:
    """The ignored and blocked signals of a /proc status, of those a program can set: the C
    library's own (32 and 33 with glibc) are left out, as glibc's posix_spawn leaves them
    ignored in the new program and glibc sets their handlers itself when it uses them."""
    valid = {int(s) for s in signal.valid_signals()}
    out = {}
    for line in status.splitlines():
        name, mask = line.split(":")
        out[name] = {n for n in range(1, 65) if int(mask, 16) >> (n - 1) & 1 and n in valid}
    return out


@pytest.mark.parametrize("code", [71, 126, 127, 137, 255])
def test_a_tasks_own_exit_code_passes_unchanged_and_the_record_tells_it(
        fl: Fluxlite, tmp_path: Path, code: int) -> None:
    job = {"executable": "/bin/sh", "arguments": ["-c", f"exit {code}"],
           "records": {"kickstart": None, "json": str(tmp_path / "rec.json")}}
    p = fl.run("run", str(fl.write_job(job)))
    assert p.returncode == code
    rec = json.loads((tmp_path / "rec.json").read_text())
    assert rec["failed_phase"] == "task" and rec["task"]["status"]["exitcode"] == code
    assert rec["task"]["status"]["signal"] is None
    assert _summary(p.stderr)[0] == f"job failed (exit {code}): exit {code}"
    if code == 71:
        assert p.stderr.decode().splitlines()[-1] == (
            "PegasusLite: exitcode 71, tool originally exited with exitcode 71")


def _marked(token: str) -> list[int]:
    """Live processes whose command line holds token (made unique to this test)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if token.encode() in fh.read() and _alive([int(name)]):
                    out.append(int(name))
        except OSError:
            pass
    return out


def _kill_marked(token: str) -> None:
    for pid in _marked(token):  # the test's own processes: never leave them running
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _sigkill_when(proc: subprocess.Popen[bytes], ready: Callable[[], bool], token: str,
                  within: float) -> None:
    """SIGKILL fluxlite once ready() holds; then no process marked with token may be left
    `within` seconds later."""
    try:
        deadline = time.monotonic() + 20
        while not ready():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + within
        while _marked(token) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _marked(token) == []
    finally:
        _kill_marked(token)


def test_sigkill_while_the_task_keeps_forking_leaves_nothing(fl: Fluxlite, tmp_path: Path
                                                             ) -> None:
    token = f"4321.{os.getpid()}"
    body = (f"i=0; while [ $i -lt 400 ]; do ( setsid sleep {token} & ); i=$((i+1)); "
            f"[ $i -eq 20 ] && touch {tmp_path}/forking; done; sleep {token}")
    proc = fl.popen("run", str(fl.write_job({"executable": "/bin/sh", "arguments": ["-c", body]})))
    _sigkill_when(proc, (tmp_path / "forking").exists, token, 5.0)


def test_sigkill_of_kickstart_during_its_prejob_ends_the_hook(fl: Fluxlite, data: Path) -> None:
    token = f"4322.{os.getpid()}"
    hook = script(data / "prejob.sh", f"#!/bin/sh\nsetsid sleep {token} &\nsleep {token}\n")
    proc = fl.popen("kickstart", "/bin/true", env={"KICKSTART_PREJOB": str(hook)})
    _sigkill_when(proc, lambda: len(_marked(token)) >= 2, token, 2.0)
