"""Time limits, checkpoints and signals: every way a job is stopped ends in order.

Real processes and real signals; times are asserted with tolerances that hold on a loaded
two-core machine.
"""

from __future__ import annotations

import http.server
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

from fluxlite.signals import STOP_SIGNALS
from tests.conftest import Fluxlite, judge, parse_records, require_oracle, writing_into
from tests.jobs import partial_files, script

# A task that saves its state when told to stop: counts up from its checkpoint.
CHECKPOINTING = """#!/bin/sh
n=0
[ -f state.ckpt ] && n=$(cat state.ckpt)
echo "resumed at $n"
trap 'echo $n > state.ckpt; echo "checkpointed at $n"; exit 0' TERM
target=${TARGET:-1000000}
while [ "$n" -lt "$target" ]; do
  n=$((n + 1))
  sleep 0.05 &
  wait $!
done
echo $n > state.ckpt
echo done > result.txt
"""


def records(tmp_path: Path) -> dict[str, str]:
    return {"kickstart": str(tmp_path / "job.out"), "json": str(tmp_path / "rec.json")}


def load(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "rec.json").read_text())


def sent(rec: dict, sig: str) -> list[float]:
    """Seconds after the task started at which fluxlite sent sig to it."""
    t0 = rec["task"]["start_epoch"] if "start_epoch" in rec["task"] else None
    if t0 is None:
        from datetime import datetime

        t0 = datetime.fromisoformat(rec["task"]["start"]).timestamp()
    return [e["time"] - t0 for e in rec["signals"]
            if e["direction"] == "sent" and e["signal"] == sig]


def checkpointing_job(data: Path, tmp_path: Path, **extra: object) -> tuple[dict, Path]:
    """The checkpointing task with its checkpoint kept in tmp_path/persist."""
    script(data / "count.sh", CHECKPOINTING)
    persist = tmp_path / "persist"
    job = {"executable": {"url": f"file://{data}/count.sh"},
           "checkpoints": [{"lfn": "state.ckpt", "url": f"file://{persist}/state.ckpt"}],
           "records": records(tmp_path), **extra}
    return job, persist


def test_checkpoint_time_terms_the_task_and_a_rerun_resumes(
        fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    job, persist = checkpointing_job(
        data, tmp_path,
        outputs=[{"lfn": "result.txt", "urls": [f"file://{tmp_path}/result.txt"]}],
        limits={"checkpoint_time": 2, "maxwalltime": 12})
    jp = fl.write_job(job)
    p = fl.run("run", str(jp), env={"TARGET": "1000000"})
    assert p.returncode == 128 + signal.SIGTERM, p.stderr.decode()
    rec = load(tmp_path)
    (t_term,) = sent(rec, "SIGTERM")
    assert abs(t_term - 2.0) <= 0.5, t_term
    assert sent(rec, "SIGKILL") == []
    assert rec["schedule"]["term_after"] == 2 and rec["schedule"]["kill_after"] == 7
    saved = int((persist / "state.ckpt").read_text())
    assert saved > 0
    assert "state.ckpt" in rec["staged_after_signal"]
    assert not (tmp_path / "result.txt").exists()
    first = tmp_path / "first"  # the interrupted attempt's records, judged at the end
    first.mkdir()
    shutil.copy(tmp_path / "job.out", first / "job.out")
    (first / "job.err").write_bytes(p.stderr)
    # the rerun picks the checkpoint up and finishes
    p2 = fl.run("run", str(jp), env={"TARGET": str(saved + 5)})
    assert p2.returncode == 0, p2.stderr.decode()
    assert (tmp_path / "result.txt").read_text() == "done\n"
    assert f"resumed at {saved}" in (tmp_path / "job.out").read_text()
    require_oracle()
    from Pegasus.exitcode import JobFailed

    assert [r for r in parse_records(first / "job.out") if r.get("invocation")]
    with pytest.raises(JobFailed):
        judge(first / "job.out")


def test_a_task_ignoring_term_is_killed_halfway_to_the_walltime(fl: Fluxlite,
                                                                tmp_path: Path) -> None:
    job = {"executable": "/bin/sh", "arguments": ["-c", "trap '' TERM; sleep 60 & wait; sleep 60"],
           "limits": {"checkpoint_time": 1, "maxwalltime": 11}, "records": records(tmp_path)}
    t0 = time.monotonic()
    p = fl.run("run", str(fl.write_job(job)))
    assert p.returncode == 128 + signal.SIGKILL
    assert time.monotonic() - t0 < 15
    rec = load(tmp_path)
    (t_kill,) = sent(rec, "SIGKILL")
    assert abs(t_kill - 6.0) <= 0.7, t_kill
    assert rec["task"]["timed_out"] == "kill"


GRANDCHILDREN = """#!/bin/sh
setsid sleep 1234.5 &
echo $! > pid1
( setsid sh -c 'sleep 1234.6 & echo $! > pid2' & )
sh -c 'sleep 1234.7 & echo $! > pid3; exit 0' &
sleep 0.3
cat pid1 pid2 pid3 > pids
"""


def _survivors(pids_file: Path) -> list[int]:
    pids = [int(x) for x in pids_file.read_text().split()]
    alive = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE and "1234." in " ".join(p.cmdline()):
                alive.append(pid)
        except psutil.Error:
            pass
    return alive


@pytest.mark.parametrize("how", ["exit", "timeout"])
def test_no_descendant_survives(fl: Fluxlite, data: Path, tmp_path: Path, how: str) -> None:
    script(data / "spawn.sh", GRANDCHILDREN + ("sleep 60\n" if how == "timeout" else "exit 0\n"))
    job = {"executable": {"url": f"file://{data}/spawn.sh"}, "workdir": {"keep": "always"},
           "records": records(tmp_path)}
    if how == "timeout":
        job["limits"] = {"checkpoint_time": 1, "kill_grace": 1}
    p = fl.run("run", str(fl.write_job(job)))
    rec = load(tmp_path)
    pids_file = Path(rec["workdir"]) / "pids"
    assert len(pids_file.read_text().split()) == 3
    assert _survivors(pids_file) == []
    killed = {k["pid"] for k in rec["task"]["killed"]}
    pids = [int(x) for x in pids_file.read_text().split()]
    # the two that left the process group are killed one by one; the third, still in the
    # group, goes with the TERM sent to the group when the time limit fires
    assert set(pids[:2] if how == "timeout" else pids) <= killed
    assert p.returncode == (0 if how == "exit" else 128 + signal.SIGTERM)


# -- signals sent to fluxlite itself ---------------------------------------------------------


def _wait_for(proc: subprocess.Popen[bytes], needle: bytes, timeout: float = 20) -> bytes:
    """Read proc's stderr until needle shows up (fluxlite logs one line per phase)."""
    assert proc.stderr is not None
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        assert time.monotonic() < deadline, buf
        line = proc.stderr.readline()
        assert line, buf
        buf += line
    return buf


def _run_signalled(fl: Fluxlite, job: dict, signum: int, *, after: float = 0.3
                   ) -> tuple[subprocess.Popen[bytes], bytes, float]:
    """`fluxlite run` of job, sent signum `after` seconds into the task; the ended process,
    its stderr and the seconds from the signal to its end."""
    proc = fl.popen("run", str(fl.write_job(job)))
    _wait_for(proc, b"task started")
    time.sleep(after)
    t0 = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    return proc, err, time.monotonic() - t0


def test_term_during_the_task_is_forwarded_and_checkpoints_leave(
        fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    job, persist = checkpointing_job(data, tmp_path)
    proc, err, _ = _run_signalled(fl, job, signal.SIGTERM, after=0.5)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert int((persist / "state.ckpt").read_text()) > 0
    rec = load(tmp_path)
    assert any(e["direction"] == "received" and e["signal"] == "SIGTERM" for e in rec["signals"])
    assert sent(rec, "SIGTERM")
    assert fl.leftover_workdirs() == []


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=lambda s: s.name)
def test_every_stop_signal_is_forwarded_and_the_record_written(
        fl: Fluxlite, tmp_path: Path, signum: signal.Signals) -> None:
    """The one set of stop signals: each reaches the task and ends the job with a record
    (ALRM, Flux's job shell at the time limit, as TERM does)."""
    job = {"executable": "/bin/sleep", "arguments": ["60"], "records": records(tmp_path)}
    proc, err, took = _run_signalled(fl, job, signum)
    assert proc.returncode == 128 + signum, err
    assert took < 10
    rec = load(tmp_path)
    assert any(e["direction"] == "received" and e["signal"] == signum.name
               for e in rec["signals"])
    assert sent(rec, signum.name)
    assert fl.leftover_workdirs() == []


def test_two_terms_kill_at_once(fl: Fluxlite, tmp_path: Path) -> None:
    job = {"executable": "/bin/sh", "arguments": ["-c", "trap '' TERM; sleep 60 & wait; sleep 60"],
           "limits": {"kill_grace": 60}, "records": records(tmp_path)}
    proc = fl.popen("run", str(fl.write_job(job)))
    _wait_for(proc, b"task started")
    time.sleep(0.3)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 128 + signal.SIGKILL
    rec = load(tmp_path)
    assert sent(rec, "SIGKILL") and len(sent(rec, "SIGTERM")) == 1


IGNORES_TERM = "trap '' TERM; sleep 60 & wait; sleep 60"


def test_one_term_is_followed_by_a_kill_after_the_grace(fl: Fluxlite, tmp_path: Path) -> None:
    job = {"executable": "/bin/sh", "arguments": ["-c", IGNORES_TERM],
           "limits": {"kill_grace": 1}, "records": records(tmp_path)}
    proc, err, took = _run_signalled(fl, job, signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGKILL, err
    assert 0.9 <= took < 5, took
    rec = load(tmp_path)
    (t_term,) = sent(rec, "SIGTERM")
    (t_kill,) = sent(rec, "SIGKILL")
    assert 0.9 <= t_kill - t_term <= 2.5, (t_term, t_kill)
    assert rec["exit_code"] == 137
    assert fl.leftover_workdirs() == []


TRAPS = ("trap 'echo usr1 >> got' USR1; trap 'echo term >> got; exit 0' TERM; "
         "i=0; while [ $i -lt 100 ]; do i=$((i+1)); sleep 0.1; done")


def test_usr1_by_default_is_fluxlites_own_time_limit_warning(fl: Fluxlite,
                                                             tmp_path: Path) -> None:
    # what Flux's --signal=SIGUSR1@LEAD does: the task is stopped as by the time limit, with
    # a TERM (and KILL after the grace); it never gets the USR1, which would kill a program
    # that does not handle it
    job = {"executable": "/bin/sh", "arguments": ["-c", TRAPS], "workdir": {"keep": "always"},
           "records": records(tmp_path)}
    proc, err, _ = _run_signalled(fl, job, signal.SIGUSR1)
    assert proc.returncode == 128 + signal.SIGTERM, err
    rec = load(tmp_path)
    assert (Path(rec["workdir"]) / "got").read_text() == "term\n"
    assert rec["task"]["timed_out"] == "term"
    assert sent(rec, "SIGUSR1") == [] and len(sent(rec, "SIGTERM")) == 1
    assert b"time limit" in err


def test_usr1_kills_a_plain_program_only_when_asked_to_forward(fl: Fluxlite,
                                                              tmp_path: Path) -> None:
    job = {"executable": "/bin/sleep", "arguments": ["30"], "signals": {"usr1": "forward"},
           "records": records(tmp_path)}
    proc, _, _ = _run_signalled(fl, job, signal.SIGUSR1)
    assert proc.returncode == 128 + signal.SIGUSR1


def _kickstart_termed(fl: Fluxlite, *argv: str) -> tuple[int, bytes, bytes, float]:
    """`fluxlite kickstart argv` sent one TERM once its task, a shell script (the last
    argument), has set its traps: exit code, record, stderr, seconds to end."""
    ready = fl.tmp / "task-ready"
    ready.unlink(missing_ok=True)
    script = argv[-1].replace("; sleep 60", f"; touch {ready}; sleep 60", 1)
    proc = fl.popen("kickstart", *argv[:-1], script)
    deadline = time.monotonic() + 60
    while not ready.exists():  # kickstart says nothing on stderr: the task says it is ready
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err, time.monotonic() - t0


def test_kickstart_term_is_followed_by_a_kill_after_k_big(fl: Fluxlite, tmp_path: Path) -> None:
    rc, out, err, took = _kickstart_termed(fl, "-K", "1", "/bin/sh", "-c", IGNORES_TERM)
    assert rc == 128 + signal.SIGKILL, err
    assert 0.9 <= took < 5, took
    assert b"signalled_signal: 9" in out


def test_kickstart_exits_with_the_code_of_a_task_that_handled_the_signal(
        fl: Fluxlite, tmp_path: Path) -> None:
    # as pegasus-kickstart does: the signal is passed on, the task's own exit is kickstart's
    rc, out, err, _ = _kickstart_termed(fl, "/bin/sh", "-c", "trap 'exit 3' TERM; sleep 60 & wait")
    assert rc == 3, err
    assert b"regular_exitcode: 3" in out
    rc, out, err, _ = _kickstart_termed(fl, "/bin/sh", "-c", "trap 'exit 0' TERM; sleep 60 & wait")
    assert rc == 0, err


@pytest.mark.parametrize("action", ["forward", "term"])
def test_usr1_means_checkpoint_now(fl: Fluxlite, tmp_path: Path, action: str) -> None:
    body = ("trap 'echo usr1 > got-usr1' USR1; trap 'echo term > got-term; exit 0' TERM; "
            "i=0; while [ $i -lt 60 ] && [ ! -f got-usr1 ]; do i=$((i+1)); sleep 0.1; done; "
            "[ -f got-usr1 ] && cp got-usr1 flag")
    job = {"executable": "/bin/sh", "arguments": ["-c", body], "signals": {"usr1": action},
           "workdir": {"keep": "always"}, "records": records(tmp_path)}
    proc, _, _ = _run_signalled(fl, job, signal.SIGUSR1, after=0.5)
    wd = Path(load(tmp_path)["workdir"])
    if action == "forward":
        assert proc.returncode == 0 and (wd / "flag").exists()
    else:
        assert (wd / "got-term").exists() and proc.returncode == 128 + signal.SIGTERM


class _Always503(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_term_during_stage_in(fl: Fluxlite, tmp_path: Path) -> None:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Always503)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/f"
        marker = tmp_path / "task-ran"
        job = {"executable": "/bin/touch", "arguments": [str(marker)],
               "inputs": [{"lfn": "f", "urls": [url]}],
               "staging": {"attempts": 5, "backoff": 10, "max_backoff": 10},
               "records": records(tmp_path)}
        proc = fl.popen("run", str(fl.write_job(job)))
        _wait_for(proc, b"attempt 1 failed")  # in its first backoff now
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 5
        assert proc.returncode == 128 + signal.SIGTERM, err
        assert b"interrupted by SIGTERM during stage-in" in err
        assert not marker.exists()
        rec = load(tmp_path)
        assert rec["failed_phase"] == "stage-in" and rec["task"] is None
        assert fl.leftover_workdirs() == []
    finally:
        srv.shutdown()
    require_oracle()
    assert [r for r in parse_records(tmp_path / "job.out") if r.get("invocation")]


# A stop signal that lands while a log line is being written must still stop the job:
# logging's emit catches every Exception, so a stop raised as an ordinary error there was
# lost, the stage-in ending as if nothing had happened and the task running without its
# input. The signal is sent from inside the log stream's write, at the retry line.
class _SignalOnRetry(io.StringIO):
    """A log stream that sends this process SIGTERM as it writes the retry line."""

    def write(self, text: str) -> int:
        if "retrying in" in text:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().write(text)


def test_a_stop_signal_inside_a_log_line_stops_the_stage_in(tmp_path: Path) -> None:
    from fluxlite.runner import RunOptions, Runner
    from fluxlite.spec import JobSpec

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Always503)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    marker = tmp_path / "task-ran"
    spec = JobSpec.from_dict({
        "fluxlite": 1, "executable": "/bin/touch", "arguments": [str(marker)],
        "inputs": [{"lfn": "f", "urls": [f"http://127.0.0.1:{srv.server_address[1]}/f"]}],
        "staging": {"attempts": 5, "backoff": 10, "max_backoff": 10},
        "workdir": {"base": str(tmp_path), "keep": "never", "min_free_mb": 0}})
    log = logging.getLogger("fluxlite")
    handler = logging.StreamHandler(_SignalOnRetry())
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        runner = Runner(spec, RunOptions(kickstart=None, json=None, use_flux=False))
        t0 = time.monotonic()
        rc = runner.run()
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        srv.shutdown()
    assert time.monotonic() - t0 < 5  # not the 10 s backoffs
    rec = runner.record
    assert rc == 128 + signal.SIGTERM, rec.error
    assert rec.failed_phase == "stage-in" and rec.error == "interrupted by SIGTERM during stage-in"
    assert rec.task is None and not marker.exists()
    assert [p.error for p in rec.phases if p.name == "stage-in"] == [rec.error]


def test_term_during_stage_out_leaves_nothing_partial(fl: Fluxlite, tmp_path: Path) -> None:
    out = tmp_path / "out"
    body = "head -c 400000000 /dev/zero > big.dat"
    job = {"executable": "/bin/sh", "arguments": ["-c", body],
           "outputs": [{"lfn": "big.dat", "urls": [f"file://{out}/big.dat"]}],
           "records": records(tmp_path)}
    proc = fl.popen("run", str(fl.write_job(job)))
    # the signal goes as soon as fluxlite is seen writing into the destination directory
    # (an unnamed file where the filesystem allows it, else a temporary name)
    deadline = time.monotonic() + 60
    while not writing_into(proc.pid, str(out)):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.001)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert partial_files(out) == []
    assert not (out / "big.dat").exists() or (out / "big.dat").stat().st_size == 400_000_000
    rec = load(tmp_path)
    assert rec["failed_phase"] == "stage-out"
    assert fl.leftover_workdirs() == []


def test_impossible_schedule_is_refused(fl: Fluxlite, tmp_path: Path) -> None:
    job = {"executable": "/bin/true", "limits": {"checkpoint_time": 100, "maxwalltime": 105}}
    p = fl.run("run", str(fl.write_job(job)))
    assert p.returncode == 2
    assert b"less than 10 s apart" in p.stderr
    assert fl.leftover_workdirs() == []
