"""`fluxlite cluster --nested` when its sub-instance fails, waits, or cannot be had, and the
cluster run as a plain job of an instance; in a real `flux start --test-size=2` instance."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Fluxlite
from tests.flux.conftest import FluxInstance

F58 = r"[ƒf][1-9A-HJ-NP-Za-km-z]+"


@pytest.fixture
def fi(flux_instance: FluxInstance) -> FluxInstance:
    return flux_instance


def _lines(err: bytes) -> list[str]:
    return [ln for ln in err.decode().splitlines() if ln.startswith("fluxlite: error:")]


def _nested_id(proc_stderr: bytes) -> str:
    m = re.search(rf"nested instance ({F58}):", proc_stderr.decode())
    assert m, proc_stderr.decode()
    return m.group(1)


def _read_until(proc, text: bytes) -> bytes:  # noqa: ANN001
    seen = b""
    while text not in seen:
        line = proc.stderr.readline()
        assert line, seen.decode()
        seen += line
    return seen


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat", encoding="utf-8") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                out.append(int(d))
    return out


def _shell_of(jobid_int: int) -> int:
    """The pid of the job shell of a job of this instance (its argv[1] is the job id)."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"flux-shell") and argv[1:2] == [str(jobid_int).encode()]:
            return int(d)
    raise AssertionError(f"no job shell for job {jobid_int}")


def test_a_nested_cluster_that_ran_ends_its_instance_as_completed(fi: FluxInstance,
                                                                  fl: Fluxlite) -> None:
    (fl.tmp / "a.dag").write_text("TASK a /bin/true\nTASK b /bin/false\n")
    p = fl.run("cluster", "a.dag", "--nested", "--nodes", "1", "-o", "c.out", env=fi.env)
    assert p.returncode != 0  # b failed: the cluster says so, the instance did its part
    info = fi.job_info(_nested_id(p.stderr))
    assert info["result"] == "COMPLETED" and info["returncode"] == 0, info


def test_killed_nested_broker_ends_the_cluster_in_one_line(fi: FluxInstance,
                                                           fl: Fluxlite) -> None:
    pidfile = fl.tmp / "task.pid"
    task = fl.tmp / "long.sh"
    task.write_text(f"#!/bin/sh\necho $$ > {pidfile}\nexec sleep 60\n")
    task.chmod(0o755)
    (fl.tmp / "long.dag").write_text(f"TASK a {task}\n")
    proc = fl.popen("cluster", "long.dag", "--nested", "--nodes", "1", "-o", "c.out",
                    env=fi.env)
    seen = _read_until(proc, b"1 running")
    jid = int(fi.flux("job", "id", "--to=dec", _nested_id(seen)).stdout)
    (broker,) = _children(_shell_of(jid))
    os.kill(broker, signal.SIGKILL)  # the nested instance's rank-0 broker
    t0 = time.monotonic()
    try:
        _, err = proc.communicate(timeout=20)
    finally:
        if pidfile.exists():  # Flux leaves the dead instance's task: the test does not
            try:
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 71, err.decode() + (fl.tmp / "c.out").read_text()
    assert b"Traceback" not in err
    lines = _lines(err)
    assert len(lines) == 1 and "nested instance" in lines[0], err.decode()
    assert "killed by SIGKILL" in lines[0]


def test_term_while_the_nested_instance_waits_for_resources(fi: FluxInstance,
                                                            fl: Fluxlite) -> None:
    hog = fi.flux("submit", f"-N{fi.size}", "--exclusive", "sleep", "120").stdout.strip()
    try:
        fi.flux("job", "wait-event", "-t", "30", hog, "start")
        (fl.tmp / "a.dag").write_text("TASK a /bin/true\n")
        proc = fl.popen("cluster", "a.dag", "--nested", "--nodes", "1", "-o", "c.out",
                        env=fi.env)
        seen = _read_until(proc, b"waiting for it to start")
        nested = _nested_id(seen)
        time.sleep(0.5)
        assert fi.job_info(nested)["state"] == "SCHED"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - t0 < 5
        assert proc.returncode == 128 + signal.SIGTERM, (seen + err).decode()
        assert b"Traceback" not in err
        assert fi.wait_job(nested, timeout=30)["state"] == "INACTIVE"
    finally:
        fi.flux("cancel", hog, check=False)


def test_term_during_the_nested_submission_keeps_its_id(fi: FluxInstance,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import flux.job  # type: ignore[import-not-found]

    from fluxlite.flux.instance import NestedInstance

    class Stop(Exception):
        pass

    def stop(signum: int, frame: object) -> None:
        raise Stop

    real = flux.job.submit

    def submit_then_term(*args: object, **kw: object) -> int:
        jid = real(*args, **kw)
        os.kill(os.getpid(), signal.SIGTERM)  # the reply is in, the caller has not got it
        return jid

    monkeypatch.setattr(flux.job, "submit", submit_then_term)
    old = signal.signal(signal.SIGTERM, stop)
    nested = NestedInstance(1, 1, uri=fi.uri)
    try:
        with pytest.raises(Stop):
            nested.start()
        assert nested.job is not None  # known, so the way out cancels it
        jid = nested.job.jobid
        nested.stop(ok=False)
    finally:
        signal.signal(signal.SIGTERM, old)
    assert fi.wait_job(str(jid), timeout=30)["result"] == "CANCELED"


@pytest.mark.parametrize(("opts", "what"), [(("--nodes", "9"), "9 node(s)"),
                                            (("--cores", "99"), "99 core(s)"),
                                            (("--gpus", "1"), "1 GPU(s)")])
def test_unsatisfiable_nested_instance_says_what(fi: FluxInstance, fl: Fluxlite,
                                                 opts: tuple[str, str], what: str) -> None:
    (fl.tmp / "a.dag").write_text("TASK a /bin/true\n")
    p = fl.run("cluster", "a.dag", "--nested", *opts, "-o", "c.out", env=fi.env, timeout=60)
    lines = _lines(p.stderr)
    assert p.returncode == 71 and len(lines) == 1, p.stderr.decode()
    assert "cannot be satisfied" in lines[0] and what in lines[0], lines[0]
    assert f"{fi.size} node(s)" in lines[0]  # what the instance has


@pytest.mark.parametrize("opt", ["--nodes", "--cores"])
def test_nested_negative_sizes_are_one_line(fi: FluxInstance, fl: Fluxlite, opt: str) -> None:
    (fl.tmp / "a.dag").write_text("TASK a /bin/true\n")
    p = fl.run("cluster", "a.dag", "--nested", opt, "-1", "-o", "c.out", env=fi.env)
    err = p.stderr.decode().strip().splitlines()
    assert p.returncode == 2 and len(err) == 1 and opt in err[0], err


def test_cluster_as_a_plain_job_warns_and_its_memo_ends_done(fi: FluxInstance, fl: Fluxlite,
                                                             tmp_path: Path) -> None:
    import sys

    (fl.tmp / "a.dag").write_text("TASK a /bin/true\n")
    p = fi.run("flux", "run", "-n1", sys.executable, "-m", "fluxlite", "cluster", "a.dag",
               "--executor", "flux", "-o", "c.out", env=fl.env(fi.env), cwd=fl.tmp)
    assert "queue behind its own allocation" in p.stderr, p.stderr
    jobid = fi.flux("jobs", "-a", "-n", "-c1", "-o", "{id.f58}").stdout.strip()
    memo = fi.flux("jobs", "-n", "-o", "{user.fluxlite.phase} {user.fluxlite.exit_code}",
                   jobid).stdout.split()
    assert memo == ["done", "0"]
