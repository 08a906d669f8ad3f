"""`fluxlite cluster` under hostile inputs, faults and signals: each case one test.

Every case checks what a batch job would see: the exit code, one line on stderr naming the
problem, no traceback, the summary line when tasks ran, nothing left behind (the private
directory, processes). Full and read-only filesystems are small tmpfs mounts in a private
mount namespace (``unshare -m``), never a real one.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Fluxlite, pegasus_cluster_parser

TASK_LINE = re.compile(r"^\[cluster-task (.*)\]$", re.M)
NOT_RUN = re.compile(r"^\[cluster-not-run (.*)\]$", re.M)
SUMMARY = re.compile(r"^\[cluster-summary (.*)\]$", re.M)


def fields(line: str) -> dict[str, str]:
    return pegasus_cluster_parser()(line).parse()


def summary(out: str) -> dict[str, str]:
    found = SUMMARY.findall(out)
    assert len(found) == 1, found
    return fields(f"[cluster-summary {found[0]}]")


def task_lines(out: str) -> list[dict[str, str]]:
    return [fields(f"[cluster-task {m}]") for m in TASK_LINE.findall(out)]


def not_run(out: str) -> dict[str, str]:
    # Pegasus's parsers pass over these lines; read them as task lines are read
    found = (fields(f"[cluster-task {m}]") for m in NOT_RUN.findall(out))
    return {f.get("task", f["id"]): f["reason"] for f in found if "reason" in f}


def one_line_error(err: bytes, *words: str) -> str:
    text = err.decode()
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if "error" in ln]
    assert len(lines) == 1, text
    for w in words:
        assert w in lines[0], text
    return lines[0]


def cluster(fl: Fluxlite, text: str | bytes, *args: str, name: str = "c.dag",
            timeout: float = 60) -> tuple[subprocess.CompletedProcess[bytes], str]:
    data = text.encode() if isinstance(text, str) else text
    (fl.tmp / name).write_bytes(data)
    out = fl.tmp / "c.out"
    out.unlink(missing_ok=True)
    p = fl.run("cluster", name, "-o", "c.out", *args, timeout=timeout)
    return p, out.read_text() if out.exists() else ""


def private_dirs(fl: Fluxlite) -> list[str]:
    return [p.name for p in fl.wdbase.iterdir() if p.name.startswith(".fluxlite-cluster.")]


def in_tmpfs(fl: Fluxlite, mnt: Path, script: str, size: str = "64k", ro: bool = False,
             timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """Run ``script`` (sh) with a tmpfs of ``size`` on ``mnt`` in a mount namespace of its
    own: the mount, and whatever fills it, vanish with the namespace."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    mnt.mkdir(exist_ok=True)
    opts = f"size={size}" + (",ro" if ro else "")
    wrapper = (f"mount -t tmpfs -o {opts} tmpfs {shlex.quote(str(mnt))} || exit 99\n"
               + script)
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", wrapper],
                       cwd=fl.tmp, env=fl.env(), capture_output=True, timeout=timeout)
    if p.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.decode().strip()}")
    return p


FLUXLITE = f"{shlex.quote(sys.executable)} -m fluxlite"


# ------------------------------------------------------------------ stopped is not done

def test_task_that_exits_0_after_the_time_limit_term_is_not_done(fl: Fluxlite) -> None:
    text = ('TASK quick /bin/true\n'
            'TASK slow /bin/sh -c "trap \\"exit 0\\" TERM; echo started >> ran.log; '
            'sleep 30 & wait"\n'
            'EDGE quick slow\n')
    p, out = cluster(fl, text, "--max-wall-time", "0.05", "--time-margin", "1",
                     "--json", "c.json")
    assert p.returncode == 14, p.stderr.decode()
    s = summary(out)
    assert s["stopped"] == "time limit" and s["succeeded"] == "1" and s["stat"] == "fail"
    slow = next(t for t in task_lines(out) if t["id"] == "slow")
    assert slow["stopped"] == "time limit"
    assert slow["status"] == str(143 << 8)  # as run counts it: 143, work not done
    assert "DONE slow" not in (fl.tmp / "c.dag.rescue").read_text()
    doc = json.loads((fl.tmp / "c.json").read_text())
    state = {t["id"]: t for t in doc["tasks"]}["slow"]
    assert state["state"] == "not-run" and state["reason"] == "stopped (time limit)"
    attempt = state["attempts"][0]
    assert attempt["exit_code"] == 143 and attempt["raw"] == 0
    assert "stopped by SIGTERM (time limit)" in attempt["error"]
    p, out = cluster(fl, text.replace("sleep 30 & wait", "true"))
    assert p.returncode == 0, p.stderr.decode()
    assert (fl.tmp / "ran.log").read_text().split() == ["started", "started"]


# ------------------------------------------------------------------ resources, GPUs

def test_dry_run_checks_resource_requests(fl: Fluxlite) -> None:
    p, _ = cluster(fl, "TASK big -c 64 /bin/true\n", "--dry-run", "--jobs", "2")
    assert p.returncode == 2
    one_line_error(p.stderr, "c.dag:1", "64 cores", "the local executor has 2")
    p, _ = cluster(fl, "TASK g -g 1 /bin/true\n", "--dry-run")
    assert p.returncode == 2
    one_line_error(p.stderr, "1 gpus", "has 0")
    p, _ = cluster(fl, "TASK g -g 1 /bin/true\n", "--dry-run", "--gpus", "1")
    assert p.returncode == 0, p.stderr.decode()


def test_gpus_are_handed_out_by_id(fl: Fluxlite) -> None:
    show = '/bin/sh -c "echo $PMC_TASK $CUDA_VISIBLE_DEVICES $ROCR_VISIBLE_DEVICES >> gpus.log'
    text = "".join(f'TASK g{i} -g 1 {show}; sleep 0.3"\n' for i in range(2))
    text += f'TASK two -g 2 {show}"\nTASK none {show}"\n'
    text += "EDGE g0 two\nEDGE g1 two\n"
    p, _ = cluster(fl, text, "--gpus", "2", "--jobs", "4", "--no-rescue")
    assert p.returncode == 0, p.stderr.decode()
    seen = {ln.split()[0]: ln.split()[1:] for ln in
            (fl.tmp / "gpus.log").read_text().splitlines()}
    assert sorted([seen["g0"][0], seen["g1"][0]]) == ["0", "1"]  # two at once: both GPUs
    assert all(v[0] == v[1] for v in seen.values())  # CUDA and ROCR agree
    assert sorted(seen["two"][0].split(",")) == ["0", "1"]
    assert seen["none"][0] == "-1"
    # the GPUs this process was given are the ones handed out
    p = fl.run("cluster", "c.dag", "-o", "c.out", "--gpus", "2", "--no-rescue",
               env={"CUDA_VISIBLE_DEVICES": "5,7"})
    assert p.returncode == 0
    assert "5,7" in (fl.tmp / "gpus.log").read_text() or "7,5" in (
        fl.tmp / "gpus.log").read_text()


def test_records_paths_of_json_entries_are_refused(fl: Fluxlite) -> None:
    jobs = [{"id": "a", "executable": "/bin/true", "records": {"json": "a.json"}}]
    p, _ = cluster(fl, json.dumps(jobs), name="r.json")
    assert p.returncode == 2
    one_line_error(p.stderr, "tasks" if False else "[0].records.json")
    assert not (fl.tmp / "a.json").exists()


# ------------------------------------------------------------------ forwarding failures

_BIG = "head -c 200000 /dev/zero"


def test_pipe_forward_to_a_full_filesystem_fails_and_leaves_no_partial_block(
        fl: Fluxlite) -> None:
    mnt = fl.tmp / "mnt"
    (fl.tmp / "f.dag").write_text(
        f'TASK small -f OUT={mnt}/out.txt /bin/sh -c "echo first >&$OUT"\n'
        f'TASK big -f OUT={mnt}/out.txt /bin/sh -c "{_BIG} >&$OUT"\n'
        f'TASK after /bin/true\nEDGE small big\nEDGE big after\n')
    p = in_tmpfs(fl, mnt, f"{FLUXLITE} cluster f.dag -o c.out --no-rescue; rc=$?; "
                          f"cp {mnt}/out.txt out.copy; exit $rc")
    assert p.returncode == 5, p.stderr.decode()
    assert (fl.tmp / "out.copy").read_text() == "first\n"  # cut back to before the block
    out = (fl.tmp / "c.out").read_text()
    big = next(t for t in task_lines(out) if t["id"] == "big")
    assert big["status"] == str(71 << 8) and "No space left" in big["error"]
    assert not_run(out) == {"after": "parent 'big' failed"}
    assert "Traceback" not in p.stderr.decode()


@pytest.mark.parametrize("how", ["read-only", "directory"])
def test_pipe_forward_to_an_unwritable_file_fails_the_task(fl: Fluxlite, how: str) -> None:
    mnt = fl.tmp / "mnt"
    dest = f"{mnt}/out.txt" if how == "read-only" else str(fl.tmp)
    (fl.tmp / "f.dag").write_text(f'TASK t -f OUT={dest} /bin/sh -c "echo x >&$OUT"\n')
    if how == "read-only":
        p = in_tmpfs(fl, mnt, f"{FLUXLITE} cluster f.dag -o c.out", ro=True)
    else:
        p = fl.run("cluster", "f.dag", "-o", "c.out")
    assert p.returncode == 5, p.stderr.decode()
    t = task_lines((fl.tmp / "c.out").read_text())[0]
    assert t["status"] == str(71 << 8) and "cannot forward" in t["error"]
    assert "DONE t" not in (fl.tmp / "f.dag.rescue").read_text()


def test_file_forward_of_a_directory_fails_the_task(fl: Fluxlite) -> None:
    (fl.tmp / "d").mkdir()
    p, out = cluster(fl, "TASK t -F d=dest.txt /bin/true\n")
    assert p.returncode == 5, p.stderr.decode()
    t = task_lines(out)[0]
    assert "cannot forward d" in t["error"] and t["status"] == str(71 << 8)
    assert (fl.tmp / "d").is_dir() and not (fl.tmp / "dest.txt").exists()


def test_file_forward_to_a_full_filesystem_fails_and_leaves_no_partial_block(
        fl: Fluxlite) -> None:
    mnt = fl.tmp / "mnt"
    (fl.tmp / "f.dag").write_text(
        f'TASK a -F a.txt={mnt}/all.txt /bin/sh -c "echo first > a.txt"\n'
        f'TASK b -F b.txt={mnt}/all.txt /bin/sh -c "{_BIG} > b.txt"\nEDGE a b\n')
    p = in_tmpfs(fl, mnt, f"{FLUXLITE} cluster f.dag -o c.out; rc=$?; "
                          f"cp {mnt}/all.txt all.copy; exit $rc")
    assert p.returncode == 5, p.stderr.decode()
    assert (fl.tmp / "all.copy").read_text() == "first\n"
    assert (fl.tmp / "b.txt").exists()  # kept: the data is not lost
    assert (fl.tmp / "f.dag.rescue").read_text().count("DONE") == 1


# ------------------------------------------------------------------ ids, lines, BOM, NUL

ODD_IDS = ["b c", "b\u2028c", "b\x0cc", "b\x85c", '"b"', "b\tc"]


def test_odd_task_ids_round_trip_through_the_rescue_file(fl: Fluxlite) -> None:
    # 'b' fails; tasks whose ids start with 'b' and hold a blank or a line break succeed.
    # A rescue file split on those would mark 'b' done, or never rescue them.
    log = fl.tmp / "ran.log"  # JSON job tasks run in worker directories of their own
    entries = [{"id": tid, "executable": "/bin/sh",
                "arguments": ["-c", f"echo {i} >> {log}"]} for i, tid in enumerate(ODD_IDS)]
    entries.append({"id": "b", "executable": "/bin/false"})
    p, _ = cluster(fl, json.dumps(entries), name="ids.json", timeout=120)
    assert p.returncode == 5, p.stderr.decode()
    rescue = (fl.tmp / "ids.json.rescue").read_bytes()
    assert rescue.count(b"\n") == len(ODD_IDS) + 1  # a comment and one line per task
    entries[-1] = {"id": "b", "executable": "/bin/sh", "arguments": ["-c", f"echo b >> {log}"]}
    (fl.tmp / "ran.log").unlink()
    p, _ = cluster(fl, json.dumps(entries), name="ids.json", timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert (fl.tmp / "ran.log").read_text().split() == ["b"]  # only b ran again


def test_pmc_lines_end_only_at_newlines(fl: Fluxlite) -> None:
    # \x0c, \x85 and U+2028 are characters of a line (as in PMC), and \r\n ends one
    text = ('TASK a\x0cb /bin/sh -c "echo one >> ran.log"\r\n'
            'TASK c\u2028d /bin/sh -c "echo two\x85 >> ran.log"\n'
            'EDGE a\x0cb c\u2028d\r\n')
    p, out = cluster(fl, text, "--no-rescue")
    assert p.returncode == 0, p.stderr.decode()
    assert [t["id"] for t in task_lines(out)] == ["a%0Cb", "c%E2%80%A8d"]
    assert (fl.tmp / "ran.log").read_text() == "one\ntwo\x85\n"


@pytest.mark.parametrize("fmt", ["pmc", "json"])
def test_a_byte_order_mark_does_not_turn_lines_into_shell_commands(fl: Fluxlite,
                                                                    fmt: str) -> None:
    text = ("TASK a /bin/sh -c 'echo pmc >> ran.log'\n" if fmt == "pmc" else
            json.dumps([{"id": "a", "executable": "/bin/sh",
                         "arguments": ["-c", f"echo json >> {fl.tmp}/ran.log"]}]))
    p, out = cluster(fl, b"\xef\xbb\xbf" + text.encode(), "--no-rescue", timeout=90)
    assert p.returncode == 0, p.stderr.decode()
    assert (fl.tmp / "ran.log").read_text() == f"{fmt}\n"
    assert summary(out)["tasks"] == "1"


def test_the_format_given_wins_and_nothing_invisible_is_guessed(fl: Fluxlite) -> None:
    # a zero-width space before TASK: not guessed into a shell line
    p, _ = cluster(fl, "\u200bTASK a /bin/sh -c 'echo ran >> ran.log'\n")
    assert p.returncode == 2
    one_line_error(p.stderr, "U+200B", "--format")
    assert not (fl.tmp / "ran.log").exists()
    # --format list: the line is a shell command, as asked
    (fl.tmp / "TASK").write_text("#!/bin/sh\necho list >> ran.log\n")
    (fl.tmp / "TASK").chmod(0o755)
    p = fl.run("cluster", "c.dag", "-o", "c.out", "--format", "pmc", "--dry-run")
    assert p.returncode == 2  # as pmc: the invisible character is no TASK keyword
    p, _ = cluster(fl, "TASK a\n", "--format", "list", "--no-rescue",
                   )
    (fl.tmp / "c.dag").write_text("./TASK a\n")
    p = fl.run("cluster", "c.dag", "-o", "c.out", "--format", "list", "--no-rescue")
    assert p.returncode == 0, p.stderr.decode()
    assert (fl.tmp / "ran.log").read_text() == "list\n"
    p = fl.run("cluster", "c.dag", "-o", "c.out", "--format", "json")
    assert p.returncode == 2
    one_line_error(p.stderr, "malformed JSON")


@pytest.mark.parametrize("fmt", ["pmc", "list", "json"])
def test_a_nul_byte_is_one_line_before_anything_runs(fl: Fluxlite, fmt: str) -> None:
    text = {"pmc": b"TASK a /bin/sh -c 'echo ran >> ran.log'\nTASK b /bin/ec\x00ho x\n",
            "list": b"echo ran >> ran.log\n/bin/ec\x00ho x\n",
            "json": json.dumps([{"id": "a", "executable": "/bin/sh",
                                 "arguments": ["-c", f"echo ran >> {fl.tmp}/ran.log"]},
                                {"id": "b", "executable": "/bin/echo",
                                 "arguments": ["x\0y"]}]).encode()}[fmt]
    p, out = cluster(fl, text)
    assert p.returncode == 2
    one_line_error(p.stderr, "c.dag:2" if fmt != "json" else "[1].arguments[0]", "NUL")
    assert not (fl.tmp / "ran.log").exists() and out == ""


# ------------------------------------------------------------------ numbers

@pytest.mark.parametrize("opt", ["-c 1e300", "-m inf", "-m nan", "-c -1", "-t " + "9" * 400,
                                 "-p 99999999999", "-g 1e3", "-t 1e2", "-m 0x10"])
def test_pmc_numbers_out_of_bounds_are_one_line(fl: Fluxlite, opt: str) -> None:
    p, _ = cluster(fl, f"TASK a {opt} /bin/true\n")
    assert p.returncode == 2, p.stderr.decode()
    one_line_error(p.stderr, "c.dag:1", opt.split()[0])


@pytest.mark.parametrize("doc", ['[{"id":"a","executable":"/bin/true","tries":NaN}]',
                                 '[{"id":"a","executable":"/bin/true","tries":1e400}]',
                                 '[{"id":"a","executable":"/bin/true","priority":' + "9" * 5000
                                 + "}]",
                                 '[{"id":"a","executable":"/bin/true","tries":99999999}]',
                                 '[{"id":"a","id":"b","executable":"/bin/true"}]',
                                 '[{"id":"a","executable":"/bin/true","priority":-Infinity}]'])
def test_json_numbers_out_of_bounds_are_one_line(fl: Fluxlite, doc: str) -> None:
    p, _ = cluster(fl, doc, name="n.json")
    assert p.returncode == 2, p.stderr.decode()
    one_line_error(p.stderr, "n.json")


@pytest.mark.parametrize("opt", [["--max-wall-time", "nan"], ["--kill-grace", "inf"],
                                 ["--time-margin", "-1"], ["--progress", "1e300"],
                                 ["--jobs", "9" * 400], ["--tries", "0"],
                                 ["--memory", "9" * 30], ["--gpus", "-1"]])
def test_option_numbers_out_of_bounds_are_one_line(fl: Fluxlite, opt: list[str]) -> None:
    p, _ = cluster(fl, "TASK a /bin/sh -c 'echo ran >> ran.log'\n", *opt)
    assert p.returncode == 2, p.stderr.decode()
    one_line_error(p.stderr, opt[0])
    assert not (fl.tmp / "ran.log").exists()


# ------------------------------------------------------------------ the rescue file

def test_rescue_on_dev_null(fl: Fluxlite) -> None:
    p, out = cluster(fl, "TASK a /bin/true\nTASK b /bin/true\n", "--rescue", "/dev/null")
    assert p.returncode == 0, p.stderr.decode()
    assert "Traceback" not in p.stderr.decode()
    assert summary(out)["stat"] == "ok"
    assert Path("/dev/null").is_char_device()


def test_rescue_on_a_full_filesystem(fl: Fluxlite) -> None:
    mnt = fl.tmp / "mnt"
    text = "".join(f"TASK t{i} /bin/true\n" for i in range(60))
    (fl.tmp / "r.dag").write_text(text)
    p = in_tmpfs(fl, mnt, f"head -c 4096 /dev/zero > {mnt}/fill 2>/dev/null; "
                          f"{FLUXLITE} cluster r.dag -o c.out --rescue {mnt}/r.rescue "
                          f"--jobs 1", size="4k")
    assert p.returncode == 0, p.stderr.decode()
    one_line_error(p.stderr, "cannot write the rescue file", "No space left")
    assert summary((fl.tmp / "c.out").read_text())["succeeded"] == "60"


# ------------------------------------------------------------------ signals

def _start(fl: Fluxlite, text: str, *args: str) -> subprocess.Popen[bytes]:
    (fl.tmp / "s.dag").write_text(text)
    proc = fl.popen("cluster", "s.dag", "-o", "c.out", *args)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (fl.tmp / "started").exists():
        time.sleep(0.02)
    assert (fl.tmp / "started").exists()
    return proc


STUBBORN = ('TASK stubborn /bin/sh -c "trap \\"\\" TERM; touch started; '
            'while :; do sleep 0.1; done"\nTASK next /bin/true\nEDGE stubborn next\n')


def test_one_term_kills_tasks_that_ignore_it_after_the_grace(fl: Fluxlite) -> None:
    proc = _start(fl, STUBBORN, "--kill-grace", "1")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 128 + signal.SIGTERM, err.decode()
    assert 0.9 <= elapsed < 6, elapsed
    out = (fl.tmp / "c.out").read_text()
    s = summary(out)
    assert s["stopped"] == "interrupted" and s["signal"] == "SIGTERM"
    stub = task_lines(out)[0]
    assert stub["status"] == str(signal.SIGKILL) and stub["stopped"] == "interrupted by SIGTERM"
    assert not_run(out) == {"stubborn": "stopped (interrupted by SIGTERM)",
                            "next": "parent 'stubborn' did not run"}
    assert private_dirs(fl) == []


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT])
def test_a_second_hup_or_quit_skips_the_grace(fl: Fluxlite, sig: int) -> None:
    proc = _start(fl, STUBBORN, "--kill-grace", "60")
    proc.send_signal(sig)
    time.sleep(0.5)
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 5
    assert proc.returncode == 128 + sig, err.decode()
    assert summary((fl.tmp / "c.out").read_text())["stopped"] == "interrupted"


@pytest.mark.parametrize("sig", [signal.SIGALRM, signal.SIGXCPU, signal.SIGUSR1])
def test_alrm_xcpu_and_usr1_end_the_cluster_with_its_summary(fl: Fluxlite, sig: int) -> None:
    text = ('TASK a /bin/sh -c "touch started; sleep 30"\n'
            'TASK b /bin/sh -c "echo ran >> ran.log"\nEDGE a b\n')
    proc = _start(fl, text, "--kill-grace", "1")
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    # SIGUSR1 is the warning that the time limit is near: stopped as by the time limit
    want = 14 if sig == signal.SIGUSR1 else 128 + sig
    assert proc.returncode == want, err.decode()
    assert "Traceback" not in err.decode()
    out = (fl.tmp / "c.out").read_text()
    s = summary(out)
    assert s["stopped"] == ("time limit" if sig == signal.SIGUSR1 else "interrupted")
    assert task_lines(out)[0]["status"] == str(signal.SIGTERM)  # the running task ended
    assert not (fl.tmp / "ran.log").exists()
    assert private_dirs(fl) == []


def test_a_term_during_startup_is_not_lost(fl: Fluxlite) -> None:
    # a large input: the TERM comes while it is read or the scheduler sets up; it must stop
    # the cluster (before any task, or through the scheduler), never be dropped
    n = 150_000
    text = "".join(f"TASK t{i} /bin/sh -c 'echo {i} >> ran.log'\n" for i in range(n))
    (fl.tmp / "big.dag").write_text(text)
    for delay in (0.4, 0.9, 1.6):
        (fl.tmp / "ran.log").unlink(missing_ok=True)
        (fl.tmp / "c.out").write_bytes(b"")
        proc = fl.popen("cluster", "big.dag", "-o", "c.out", "--no-rescue", "--jobs", "2")
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        # -15: the TERM came before fluxlite had a handler (while Python starts)
        assert proc.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), err.decode()[-500:]
        if proc.returncode > 0 and b"[cluster-summary" not in (fl.tmp / "c.out").read_bytes():
            # before the scheduler: one line, nothing ran
            one_line_error(err, "interrupted by SIGTERM during the cluster's startup")
        ran = (fl.tmp / "ran.log").read_text().split() if (fl.tmp / "ran.log").exists() else []
        assert len(ran) < n // 10, len(ran)  # stopped, not run to the end
        assert "Traceback" not in err.decode()


def _stopped_at_once(tmp_path: Path, text: str, sig: int = signal.SIGTERM
                     ) -> tuple[object, dict[str, object], str]:
    """Run a scheduler on a real local executor with a signal handed over at its start."""
    import io

    from fluxlite.cluster.executors import LocalExecutor, TaskFiles
    from fluxlite.cluster.formats import parse
    from fluxlite.cluster.records import RecordWriter
    from fluxlite.cluster.scheduler import Options, Scheduler

    ex = LocalExecutor(TaskFiles(str(tmp_path), 1024), jobs=1)
    out = io.BytesIO()
    sched = Scheduler(parse(text, "h.dag"), ex, RecordWriter(), out, Options())
    try:
        result = sched.run(pending=lambda: [sig])
    finally:
        ex.close()
    return sched, result, out.getvalue().decode()


def test_a_signal_in_the_handover_to_the_scheduler_is_acted_on(tmp_path: Path) -> None:
    # the window between the command's handlers and the scheduler's: a TERM that came
    # there is handed over, and the scheduler starts nothing
    sched, result, out = _stopped_at_once(
        tmp_path, f"TASK a /bin/sh -c 'echo ran >> {tmp_path}/ran.log'\n")
    assert result["stopped"] == "interrupted" and result["signal"] == "SIGTERM"
    assert sched.exit_code(result) == 128 + signal.SIGTERM  # type: ignore[attr-defined]
    assert not (tmp_path / "ran.log").exists()
    assert not_run(out) == {"a": "interrupted by SIGTERM"}


def test_a_usr1_in_the_handover_stops_as_the_time_limit(tmp_path: Path) -> None:
    sched, result, out = _stopped_at_once(tmp_path, "TASK a /bin/true\n", signal.SIGUSR1)
    assert result["stopped"] == "time limit" and "signal" not in result
    assert sched.exit_code(result) == 14  # type: ignore[attr-defined]
    assert not_run(out) == {"a": "time limit"}


def test_not_run_lines_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fluxlite.cluster import scheduler

    monkeypatch.setattr(scheduler, "NOT_RUN_LINES", 2)
    _, _, out = _stopped_at_once(tmp_path, "".join(f"TASK t{i} /bin/true\n" for i in range(5)))
    assert list(not_run(out)) == ["t0", "t1"]
    assert "[cluster-not-run more=3]\n" in out


def test_not_run_tasks_say_why(fl: Fluxlite) -> None:
    text = ("TASK a /bin/false\nTASK b /bin/true\nTASK c /bin/true\n"
            "TASK d /bin/true\nEDGE a b\nEDGE b c\n")
    p, out = cluster(fl, text, "--no-rescue", "--jobs", "1")
    assert p.returncode == 5
    assert not_run(out) == {"b": "parent 'a' failed", "c": "parent 'b' did not run"}
    assert "2 task(s) not run" in p.stderr.decode()
    p, out = cluster(fl, text, "--no-rescue", "--jobs", "1", "--fail-fast")
    reasons = not_run(out)
    assert reasons["d"] == "--fail-fast after task 'a' failed"


def test_an_input_name_with_a_line_break_cannot_mark_a_task_done(fl: Fluxlite) -> None:
    name = "odd\nDONE b\n.dag"
    p, _ = cluster(fl, "TASK b /bin/false\n", name=name)
    assert p.returncode == 5
    rescue = (fl.tmp / (name + ".rescue")).read_text()
    assert "\nDONE b\n" not in rescue and rescue.count("\n") == 1
    p, _ = cluster(fl, "TASK b /bin/false\n", name=name)
    assert p.returncode == 5  # b runs again, and fails again


def test_an_output_that_cannot_be_written_is_one_line_and_exit_71(fl: Fluxlite) -> None:
    text = "TASK a /bin/true\nTASK b /bin/sh -c 'echo ran >> ran.log'\nEDGE a b\n"
    (fl.tmp / "o.dag").write_text(text)
    p = fl.run("cluster", "o.dag", "-o", "/dev/full", "--no-rescue")
    assert p.returncode == 71
    one_line_error(p.stderr, "cannot write the output /dev/full", "No space left")
    assert not (fl.tmp / "ran.log").exists()  # nothing more is started
    assert Path("/dev/full").is_char_device() and private_dirs(fl) == []


def test_not_run_reasons_follow_edges_whatever_the_order_of_the_lines(fl: Fluxlite) -> None:
    text = "TASK c /bin/true\nTASK b /bin/true\nTASK a /bin/false\nEDGE a b\nEDGE b c\n"
    p, out = cluster(fl, text, "--no-rescue")
    assert p.returncode == 5
    assert not_run(out) == {"b": "parent 'a' failed", "c": "parent 'b' did not run"}


def test_a_failed_task_is_told_in_one_line_with_its_cause(fl: Fluxlite) -> None:
    text = ('TASK a /bin/sh -c "echo noise >&2; echo the real cause >&2; exit 3"\n'
            'TASK b /bin/sh -c "kill -KILL \\$\\$"\nTASK c /nonexistent/x\n')
    p, _ = cluster(fl, text.replace("\\$\\$", "$$"), "--no-rescue")
    assert p.returncode == 5
    err = p.stderr.decode()
    assert "task a failed (exit 3) after 1 try: the real cause" in err
    assert "task b failed (killed by SIGKILL) after 1 try" in err
    assert "task c failed (exit 127) after 1 try: cannot execute /nonexistent/x" in err
