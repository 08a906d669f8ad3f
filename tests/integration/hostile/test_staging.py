"""Hostile input and faults against staging, `fluxlite transfer`, records and cleanup.

Each case runs the real command line against real files, a real loopback HTTP server that
lies (length, encoding, trickle), real devices and FIFOs made in the test's own directory,
and real signals, and asserts: the documented exit code, one line on stderr naming the
problem, no traceback, nothing partial at any destination, the worker directory removed
or kept as ``keep`` says, and no secret in anything fluxlite wrote.

Destructive cases (recursive removes of '/', mount points, the current directory) run only
inside a private mount namespace whose root is a small tmpfs with read-only binds of what
Python needs, entered with chroot: even a wrong delete could not reach a real path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, Fluxlite, sha256_of, writing_into
from tests.httpserver import FaultServer

# --------------------------------------------------------------------------- helpers


# the second line of a failed job's summary: where its records and worker directory are
_WHERE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d: "
                    r"(task stderr ends|records?|worker directory kept): ")


def _problem_lines(stderr: bytes) -> list[str]:
    """stderr without the PegasusLite protocol line every failed run ends with, and without
    the line saying where the records are."""
    return [ln for ln in stderr.decode(errors="replace").splitlines()
            if ln.strip() and not ln.startswith("PegasusLite:") and not _WHERE.match(ln)]


def _all_output(fl: Fluxlite, r: subprocess.CompletedProcess[bytes]) -> str:
    """Everything fluxlite wrote: its stdout, stderr and every file under the test's
    directory except the inputs the test wrote itself."""
    parts = [r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")]
    for p in fl.tmp.rglob("*"):
        if p.name in ("job.json", "list.json", "tasks.txt") or not p.is_file() or p.is_symlink():
            continue
        if "data" in p.relative_to(fl.tmp).parts[:1]:
            continue
        try:
            parts.append(p.read_bytes().decode(errors="replace"))
        except OSError:
            pass
    return "\n".join(parts)


def hostile(fl: Fluxlite, r: subprocess.CompletedProcess[bytes], code: int,
            needle: str | None, *, secrets: tuple[str, ...] = (),
            empty: tuple[Path, ...] = (), workdirs: int = 0) -> None:
    """The assertions every hostile case makes."""
    err = r.stderr.decode(errors="replace")
    assert r.returncode == code, err
    assert "Traceback" not in err and "Traceback" not in r.stdout.decode(errors="replace")
    lines = _problem_lines(r.stderr)
    if needle is None:
        assert lines == [], err
    else:
        assert len(lines) == 1, err
        assert needle.lower() in lines[0].lower(), err
    for d in empty:
        assert not d.exists() or list(d.iterdir()) == [], list(d.iterdir())
    assert len(fl.leftover_workdirs()) == workdirs, fl.leftover_workdirs()
    if secrets:
        text = _all_output(fl, r)
        for s in secrets:
            assert s not in text, s


def run_job(fl: Fluxlite, job: dict[str, Any], *extra: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    job = {"workdir": {"keep": "never"}, **job}
    job["workdir"] = {"min_free_mb": 1, **job["workdir"]}
    p = fl.write_job(job)
    return fl.run("run", "-q", "--kickstart-record", str(fl.tmp / "rec.yml"),
                  "--json-record", str(fl.tmp / "rec.json"), *extra, str(p), env=env,
                  timeout=timeout)


def transfer(fl: Fluxlite, doc: Any, *extra: str, env: dict[str, str] | None = None,
             raw: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    p = fl.tmp / "list.json"
    p.write_text(raw if raw is not None else json.dumps(doc))
    return fl.run("transfer", "-q", *extra, str(p), env=env, timeout=timeout)


def _t(srcs: list[Any], dst: str, lfn: str = "f") -> dict[str, Any]:
    return {"type": "transfer", "lfn": lfn,
            "src_urls": [s if isinstance(s, dict) else {"url": s} for s in srcs],
            "dest_urls": [{"url": dst}]}


def _sh(script: str) -> dict[str, Any]:
    return {"executable": "/bin/sh", "arguments": ["-c", script]}


def _record(fl: Fluxlite) -> dict[str, Any]:
    return json.loads((fl.tmp / "rec.json").read_text())


# --------------------------------------------------------------------------- sandbox
_SANDBOX = r"""
set -e
S=$1; WT=$2; PY=$3; shift 3
mount -t tmpfs -o size=32m tmpfs "$S"
for d in usr lib lib64 bin sbin etc; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$S/$d"
  elif [ -d "/$d" ]; then mkdir -p "$S/$d"; mount --bind "/$d" "$S/$d"
       mount -o remount,bind,ro "$S/$d"; fi
done
for d in "$PY" "$WT"; do
  mkdir -p "$S$d"; mount --bind "$d" "$S$d"; mount -o remount,bind,ro "$S$d"
done
mkdir -p "$S/proc" "$S/tmp" "$S/data/cwd/deep" "$S/scratch/m"
mount -t proc -o ro proc "$S/proc"
mount -t tmpfs -o size=1m tmpfs "$S/scratch/m"
echo canary > "$S/canary"; echo canary > "$S/data/canary"; echo canary > "$S/scratch/m/canary"
cp "$S.list.json" "$S/list.json"
cd "$S/data/cwd/deep"
exec chroot "$S" /bin/sh -c 'cd /data/cwd/deep && "$0" -m fluxlite transfer -q /list.json; \
  echo "rc=$?"; ls /canary /data/canary /scratch/m/canary' "$WT/.venv/bin/python"
"""


def _sandbox_ok() -> str | None:
    if os.geteuid() != 0:
        return "needs root for a private mount namespace and chroot"
    if not shutil.which("unshare") or not shutil.which("chroot"):
        return "unshare or chroot missing"
    return None


def chroot_transfer(tmp: Path, doc: Any, env: dict[str, str] | None = None
                    ) -> tuple[int, str, str]:
    """Run `fluxlite transfer` on doc inside the sandbox; (its exit code, its stderr, the
    listing of the canaries afterwards)."""
    root = tmp / "sbx"
    root.mkdir()
    (tmp / "sbx.list.json").write_text(json.dumps(doc))
    script = tmp / "sandbox.sh"
    script.write_text(_SANDBOX)
    py_home = str(Path(os.path.realpath(sys.executable)).parent.parent)
    e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})}
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", str(script),
                        str(root), str(ROOT), py_home], capture_output=True, timeout=60,
                       env=e)
    out = r.stdout.decode()
    rc = int(out.split("rc=", 1)[1].split()[0]) if "rc=" in out else -1
    return rc, r.stderr.decode(), out


# --------------------------------------------------------------------------- removes
@pytest.mark.skipif(_sandbox_ok() is not None, reason=str(_sandbox_ok()))
@pytest.mark.parametrize(("url", "recursive", "why"), [
    ("file:///", True, "root directory"),
    ("file://${EMPTY}/", True, "$EMPTY is empty"),
    ("file://$EMPTY", True, "$EMPTY is empty"),
    ("file:///scratch/m", True, "mount point /scratch/m"),
    ("file:///scratch", True, "the mount point /scratch/m is inside it"),
    ("file:///data/cwd", True, "current directory or one of its parents"),
    ("file:///data/cwd/deep/.", True, "current directory or one of its parents"),
    ("file:///data/cwd/../cwd/deep/..", True, "current directory or one of its parents"),
    ("file:///proc", False, "mount point /proc"),
])
def test_recursive_remove_refusals_in_a_sandbox(tmp_path, url, recursive, why):
    doc = [{"type": "remove", "target": {"url": url, "recursive": recursive}}]
    rc, err, listing = chroot_transfer(tmp_path, doc, env={"EMPTY": ""})
    assert rc == 1, (err, listing)
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and why in lines[0], err
    for canary in ("/canary", "/data/canary", "/scratch/m/canary"):
        assert canary in listing, listing  # nothing was touched


def test_workdir_cleanup_never_follows_a_link_put_in_its_place(fl, data):
    canary = data / "precious"
    canary.mkdir()
    (canary / "keep").write_text("keep")
    # the task moves its worker directory away and leaves a link to the canary instead
    job = _sh(f'cd /; mv "$FLUXLITE_WORKDIR" "$FLUXLITE_WORKDIR.moved"; '
              f'ln -s {canary} "$FLUXLITE_WORKDIR"')
    r = run_job(fl, job)
    assert (canary / "keep").read_text() == "keep"
    hostile(fl, r, 0, "no longer the directory fluxlite created", workdirs=2)
    link, moved = (fl.wdbase / n for n in fl.leftover_workdirs())
    assert link.is_symlink()  # left as it is: not fluxlite's
    shutil.rmtree(moved)


def test_workdir_cleanup_removes_only_the_directory_it_created(tmp_path):
    from fluxlite import workdir
    from fluxlite.spec import WorkdirSpec

    wd = workdir.create(WorkdirSpec(base=str(tmp_path), min_free_mb=0))
    os.rename(wd.path, wd.path + ".moved")
    os.mkdir(wd.path)  # another directory under the same name
    Path(wd.path, "other").write_text("other")
    assert wd.remove() is False
    assert Path(wd.path, "other").exists()
    shutil.rmtree(wd.path)
    os.rename(wd.path + ".moved", wd.path)
    assert wd.remove() is True and not os.path.exists(wd.path)


def test_remove_of_an_empty_directory_needs_no_recursive(fl, data):
    (data / "empty").mkdir()
    (data / "full").mkdir()
    (data / "full" / "x").write_text("x")
    r = transfer(fl, [{"type": "remove", "target": {"url": f"file://{data}/empty"}}])
    hostile(fl, r, 0, None)
    assert not (data / "empty").exists()
    r = transfer(fl, [{"type": "remove", "target": {"url": f"file://{data}/full"}}])
    hostile(fl, r, 1, "not empty")
    assert (data / "full" / "x").exists()


# --------------------------------------------------------------------------- permissions
def test_stage_out_keeps_permission_bits_never_widens(fl):
    out = fl.tmp / "out"
    job = {**_sh("umask 077; echo k > key; echo '#!/bin/sh' > tool; chmod 600 key; "
                 "chmod 755 tool; echo c > ck"),
           "outputs": [{"lfn": "key", "urls": [f"file://{out}/key"]},
                       {"lfn": "tool", "urls": [f"file://{out}/tool"]}],
           "checkpoints": [{"lfn": "ck", "url": f"file://{out}/ck"}]}
    r = run_job(fl, job)
    hostile(fl, r, 0, None)
    assert stat.S_IMODE(os.stat(out / "key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(out / "tool").st_mode) == 0o755 & ~_umask()
    assert stat.S_IMODE(os.stat(out / "ck").st_mode) == 0o600  # made under umask 077


def _umask() -> int:
    u = os.umask(0o022)
    os.umask(u)
    return u


# --------------------------------------------------------------------------- lying length
def test_announced_size_beyond_free_space_fails_that_source_only(fl):
    body = os.urandom(20000)
    with FaultServer() as srv:
        liar = srv.add("/liar", body, ["lie:1000000000000000"] * 10)
        good = srv.add("/good", body)
        job = {**_sh("cmp f f"),
               "inputs": [{"lfn": "f", "urls": [liar, good]}]}
        r = run_job(fl, job)
    hostile(fl, r, 0, None)
    atts = _record(fl)["stage_in"][0]["transfers"][0]["attempts"]
    assert "announces 1000000000000000 bytes" in atts[0]["error"]
    assert atts[1]["success"]


def test_lying_length_reserves_no_more_than_arrived_plus_a_step(fl):
    """1 GB announced, 20 KB sent: the destination's blocks stay near what arrived."""
    body = os.urandom(20000)
    with FaultServer() as srv:
        liar = srv.add("/liar", body, ["lie:1000000000:3"])
        good = srv.add("/good", body)
        job = {**_sh("true"), "inputs": [{"lfn": "f", "urls": [liar, good]}],
               "staging": {"attempts": 1}}
        p = fl.write_job({"workdir": {"keep": "never", "min_free_mb": 1}, **job})
        proc = fl.popen("run", "-q", "--kickstart-record", str(fl.tmp / "rec.yml"),
                        "--json-record", str(fl.tmp / "rec.json"), str(p))
        biggest = -1
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline and proc.poll() is None:
            biggest = max(biggest, _largest_open_file(proc.pid, str(fl.wdbase)))
            time.sleep(0.02)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    # the unnamed destination was seen, with at most one step reserved past what arrived
    assert 0 <= biggest <= 64 * 1024 * 1024 + 1024 * 1024, biggest


def _largest_open_file(pid: int, under: str) -> int:
    """Allocated bytes of the largest file the process has open below ``under``."""
    best = -1
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return 0
    for fd in fds:
        try:
            if not os.readlink(f"{fd_dir}/{fd}").startswith(under):
                continue
            best = max(best, os.stat(f"{fd_dir}/{fd}").st_blocks * 512)
        except OSError:
            continue
    return best


# --------------------------------------------------------------------------- secrets
SECRETS = ("Pa55#w/?rd x", "QSECRET1", "QSECRET2", "FRAGTOKEN3", "MATRIXSESS4", "DBPASSVAL5",
           "MYSQLPWDVAL6", "APITOKENVAL7")


def _secret_url(base: str) -> str:
    host = base.split("://", 1)[1]
    return (f"http://alice:Pa55#w/?rd x@{host}/missing;jsessionid=MATRIXSESS4"
            f"?pass=QSECRET1&Session=QSECRET2#access_token=FRAGTOKEN3")


def test_credentials_never_reach_stderr_records_or_logs(fl):
    env = {"DB_PASS": "DBPASSVAL5", "MYSQL_PWD": "MYSQLPWDVAL6", "API_TOKEN": "APITOKENVAL7"}
    with FaultServer() as srv:
        srv.add("/missing", b"", status=404)
        job = {**_sh("true"), "environment": env,
               "inputs": [{"lfn": "f", "urls": [_secret_url(srv.base)]}],
               "staging": {"attempts": 1}}
        r = run_job(fl, job, "--full", env=env)
    hostile(fl, r, 71, "HTTP 404", secrets=SECRETS)
    rec = _record(fl)
    assert rec["environment"]["DB_PASS"] == "***" and rec["environment"]["PWD"] != "***"
    assert "***@127.0.0.1" in r.stderr.decode()


def test_credentials_never_reach_a_dry_run_plan(fl):
    job = {**_sh("true"), "environment": {"DB_PASS": "DBPASSVAL5"},
           "inputs": [{"lfn": "f", "urls": [_secret_url("http://127.0.0.1:9")]}]}
    p = fl.write_job(job)
    r = fl.run("run", "--dry-run", str(p))
    hostile(fl, r, 0, None, secrets=SECRETS)
    assert "stage-in  f <- http://***@127.0.0.1:9/missing" in r.stdout.decode()


def test_credentials_never_reach_transfer_records(fl):
    with FaultServer() as srv:
        srv.add("/missing", b"", status=404)
        doc = [_t([_secret_url(srv.base)], f"file://{fl.tmp}/out/f")]
        r = transfer(fl, doc, "--json-record", str(fl.tmp / "t.json"), "--multipart-dir",
                     str(fl.tmp / "mp"))
    hostile(fl, r, 1, "HTTP 404", secrets=SECRETS, empty=(fl.tmp / "out",))
    assert list((fl.tmp / "mp").iterdir())


# --------------------------------------------------------------------------- outputs
@pytest.mark.parametrize(("make", "why"), [
    ("ln -s /etc/hostname o", "a symbolic link leading outside the worker directory"),
    ("mkdir -p sub; ln -s /etc sub/up; ln -s sub/up/hostname o",
     "a symbolic link leading outside the worker directory"),
    ("mkdir o", "a directory, not a regular file"),
    ("mkfifo o", "a FIFO, not a regular file"),
    ("mknod o c 1 3", "a character device, not a regular file"),
    ("python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind('o')\"",
     "a socket, not a regular file"),
])
def test_outputs_that_are_not_files_of_the_workdir_are_refused(fl, make, why):
    out = fl.tmp / "out"
    job = {**_sh(make), "outputs": [{"lfn": "o", "urls": [f"file://{out}/o"]}]}
    r = run_job(fl, job, timeout=30)  # a FIFO must not hang the stage-out
    hostile(fl, r, 71, f"o: refused: {why}", empty=(out,))


@pytest.mark.parametrize(("keep", "kept"), [("never", 0), ("on-failure", 1), ("always", 1)])
def test_a_refused_output_keeps_the_workdir_as_keep_says(fl, keep, kept):
    out = fl.tmp / "out"
    job = {**_sh("ln -s /etc/hostname o"), "workdir": {"keep": keep},
           "outputs": [{"lfn": "o", "urls": [f"file://{out}/o"]}]}
    r = run_job(fl, job)
    hostile(fl, r, 71, "o: refused", empty=(out,), workdirs=kept)


def test_checkpoint_link_leading_out_is_refused(fl):
    out = fl.tmp / "out"
    job = {**_sh("ln -s /etc/hostname ck"),
           "checkpoints": [{"lfn": "ck", "url": f"file://{out}/ck"}]}
    r = run_job(fl, job)
    hostile(fl, r, 71, "ck: refused: a symbolic link leading outside", empty=(out,))


def test_a_link_staying_inside_the_workdir_is_followed(fl):
    out = fl.tmp / "out"
    job = {**_sh("mkdir d; echo inside > d/real; ln -s d/real o"),
           "outputs": [{"lfn": "o", "urls": [f"file://{out}/o"]}]}
    r = run_job(fl, job)
    hostile(fl, r, 0, None)
    assert (out / "o").read_text() == "inside\n" and not (out / "o").is_symlink()


# --------------------------------------------------------------------------- temporaries
def test_sigkill_during_stage_out_leaves_no_temporary(fl):
    out = fl.tmp / "out"
    out.mkdir()
    job = {**_sh("head -c 400000000 /dev/zero > big"),
           "outputs": [{"lfn": "big", "urls": [f"file://{out}/big"]}]}
    p = fl.write_job({"workdir": {"keep": "never", "min_free_mb": 1}, **job})
    proc = fl.popen("run", "-q", "--kickstart-record", str(fl.tmp / "rec.yml"), str(p))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if writing_into(proc.pid, str(out), min_size=1):  # the data, not a probe
                break
            time.sleep(0.002)
        assert proc.poll() is None, "the stage-out was not seen under way"
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert list(out.iterdir()) == []  # the destination was an unnamed file
    for wd in fl.leftover_workdirs():  # a killed fluxlite cannot clean its directory
        shutil.rmtree(fl.wdbase / wd)


def test_stale_temporaries_of_a_killed_run_are_removed_and_only_those(fl, data):
    out = fl.tmp / "out"
    out.mkdir()
    (data / "f").write_text("new")
    stale = out / ".f.tmp-ab12cd34"
    stale.write_text("stale")
    fresh = out / ".f.tmp-ef56gh78"
    fresh.write_text("fresh")
    foreign = out / ".f.tmp-NOTOURS"
    foreign.write_text("x")
    link = out / ".f.tmp-zz99zz99"
    link.symlink_to(data / "f")
    old = time.time() - 3600
    for p in (stale, foreign):
        os.utime(p, (old, old))
    os.utime(link, (old, old), follow_symlinks=False)
    future = time.time() + 3600
    os.utime(fresh, (future, future))  # written after this job started: someone's
    r = transfer(fl, [_t([f"file://{data}/f"], f"file://{out}/f")])
    hostile(fl, r, 0, None)
    assert (out / "f").read_text() == "new"
    assert not stale.exists()
    assert fresh.exists() and foreign.exists() and link.is_symlink()


# --------------------------------------------------------------------------- encodings
@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_encoded_bodies_are_decoded_never_stored_encoded(fl, coding):
    body = b"plain text " * 5000
    import hashlib

    with FaultServer() as srv:
        url = srv.add("/f", body, [coding])
        r = transfer(fl, [_t([{"url": url}], f"file://{fl.tmp}/out/f")])
    hostile(fl, r, 0, None)
    assert sha256_of(fl.tmp / "out" / "f") == hashlib.sha256(body).hexdigest()


def test_unknown_encoding_is_refused(fl):
    out = fl.tmp / "out"
    with FaultServer() as srv:
        url = srv.add("/f", b"x" * 1000, ["encoding:br"] * 5)
        job = {**_sh("true"), "inputs": [{"lfn": "f", "urls": [url]}],
               "outputs": [{"lfn": "f", "urls": [f"file://{out}/f"]}]}
        r = run_job(fl, job)
    hostile(fl, r, 71, "content encoding 'br'", empty=(out,))


# --------------------------------------------------------------------------- trickle
def test_trickling_source_fails_its_attempt_and_the_next_source_follows(fl):
    body = os.urandom(5000)
    with FaultServer() as srv:
        slow = srv.add("/slow", body, ["trickle:1000:0.02"] * 5)
        good = srv.add("/good", body)
        job = {**_sh("true"), "inputs": [{"lfn": "f", "urls": [slow, good]}],
               "staging": {"min_rate": 1000, "rate_window": 1}}
        t0 = time.monotonic()
        r = run_job(fl, job)
    hostile(fl, r, 0, None)
    assert time.monotonic() - t0 < 15
    att = _record(fl)["stage_in"][0]["transfers"][0]["attempts"]
    assert "too slow" in att[0]["error"] and att[1]["success"]


def test_trickling_only_source_fails_the_job(fl):
    with FaultServer() as srv:
        slow = srv.add("/slow", os.urandom(5000), ["trickle:1000:0.02"] * 5)
        job = {**_sh("true"), "inputs": [{"lfn": "f", "urls": [slow]}],
               "staging": {"min_rate": 1000, "rate_window": 1, "attempts": 1}}
        r = run_job(fl, job)
    hostile(fl, r, 71, "too slow")


# --------------------------------------------------------------------------- sparse
def test_sparse_inputs_keep_their_holes(fl, data):
    src = data / "sparse"
    with open(src, "wb") as fh:
        fh.truncate(256 * 1024 * 1024)
        fh.seek(100 * 1024 * 1024)
        fh.write(b"data in the middle")
    if os.stat(src).st_blocks * 512 > 1024 * 1024:
        pytest.skip("this filesystem does not keep holes")
    r = transfer(fl, [_t([f"file://{src}"], f"file://{fl.tmp}/out/sparse")])
    hostile(fl, r, 0, None)
    dst = fl.tmp / "out" / "sparse"
    assert os.stat(dst).st_size == os.stat(src).st_size
    assert os.stat(dst).st_blocks * 512 <= 1024 * 1024
    assert sha256_of(dst) == sha256_of(src)


# --------------------------------------------------------------------------- messages
def test_a_destination_that_cannot_be_written_is_named_once(fl):
    blocker = fl.tmp / "out" / "o"
    blocker.parent.mkdir()
    # the task puts a directory where its output should go: only stage-out can find it
    job = {**_sh(f"echo o > o; mkdir {blocker}"),
           "outputs": [{"lfn": "o", "urls": [f"file://{blocker}"]}]}
    r = run_job(fl, job)
    hostile(fl, r, 71, f"o: cannot write {blocker}")
    assert list(blocker.iterdir()) == []
    assert "o: o:" not in r.stderr.decode()


def test_a_truncated_chunked_body_says_so(fl):
    with FaultServer() as srv:
        url = srv.add("/c", os.urandom(5000), ["chunked-drop:1000"] * 5)
        r = transfer(fl, [_t([url], f"file://{fl.tmp}/out/c")], "-m", "1")
    hostile(fl, r, 1, "before the end of the chunked body", empty=(fl.tmp / "out",))
    assert "None" not in r.stderr.decode()


def test_a_stalled_body_counts_the_bytes_that_arrived(fl):
    with FaultServer() as srv:
        url = srv.add("/s", os.urandom(50000), ["stall:5000:5"] * 5, ranges=False)
        r = transfer(fl, [_t([url], f"file://{fl.tmp}/out/s")], "-m", "1", "--timeout", "1")
    hostile(fl, r, 1, "after 5000 bytes", empty=(fl.tmp / "out",))


def test_a_workdir_executable_that_cannot_run_is_not_a_stage_in_failure(fl, data):
    (data / "x").write_text("#!/bin/sh\nexit 0\n")
    job = {"executable": "./tool.d", "inputs": [{"lfn": "tool.d/x", "urls": [f"file://{data}/x"]}]}
    r = run_job(fl, job)
    hostile(fl, r, 127, "is not an executable file")
    assert _record(fl)["failed_phase"] != "stage-in"


def test_a_staged_executable_is_made_executable(fl, data):
    (data / "tool").write_text("#!/bin/sh\nexit 0\n")
    os.chmod(data / "tool", 0o644)
    job = {"executable": "tool", "inputs": [{"lfn": "tool", "urls": [f"file://{data}/tool"]}]}
    r = run_job(fl, job)
    hostile(fl, r, 0, None)


# --------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("raw_priority", ["NaN", "Infinity", "-Infinity", "1e400", "1.5",
                                          "\"50\"", "9" * 400, "true"])
def test_transfer_list_numbers_are_finite_and_bounded(fl, data, raw_priority):
    (data / "f").write_text("f")
    entry = json.dumps(_t([{"url": f"file://{data}/f", "priority": 0}],
                          f"file://{fl.tmp}/out/f"))
    raw = "[" + entry.replace('"priority": 0', f'"priority": {raw_priority}') + "]"
    r = transfer(fl, None, raw=raw)
    why = {"NaN": "is not a number JSON allows", "Infinity": "is not a number JSON allows",
           "-Infinity": "is not a number JSON allows",
           "1e400": "priority: must be a finite number"}.get(raw_priority, "priority: must be")
    hostile(fl, r, 1, why, empty=(fl.tmp / "out",))


def test_infinite_numbers_anywhere_in_a_transfer_list_are_refused(fl, data):
    (data / "f").write_text("f")
    entry = {**_t([f"file://{data}/f"], f"file://{fl.tmp}/out/f"), "id": 0}
    raw = "[" + json.dumps(entry).replace('"id": 0', '"id": 1e999') + "]"
    r = transfer(fl, None, raw=raw)
    hostile(fl, r, 1, "[0].id: must be a finite number", empty=(fl.tmp / "out",))


@pytest.mark.parametrize(("opt", "value"), [("--timeout", "nan"), ("--backoff", "inf"),
                                            ("--max-backoff", "-1"), ("-m", "0"),
                                            ("-n", "-3"), ("--timeout", "1e300")])
def test_transfer_options_are_finite_and_bounded(fl, data, opt, value):
    (data / "f").write_text("f")
    r = transfer(fl, [_t([f"file://{data}/f"], f"file://{fl.tmp}/out/f")], opt, value)
    hostile(fl, r, 2, "must be a number from", empty=(fl.tmp / "out",))


def test_a_deeply_nested_transfer_list_is_one_line(fl):
    r = transfer(fl, None, raw="[" * 100000)
    hostile(fl, r, 1, "not a JSON transfer list")


# --------------------------------------------------------------------------- devices
def _device(path: Path, minor: int) -> None:
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device needs root")
def test_records_written_into_a_device_never_replace_it(fl):
    null = fl.tmp / "null"
    _device(null, 3)  # a null device of our own, in the test's directory
    job = {**_sh("true"), "records": {"kickstart": str(null)}}
    p = fl.write_job({"workdir": {"keep": "never", "min_free_mb": 1}, **job})
    r = fl.run("run", "-q", "--json-record", str(null), str(p))
    hostile(fl, r, 0, None)
    assert stat.S_ISCHR(os.stat(null).st_mode)
    assert not list(fl.tmp.glob("null.tmp-*"))


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device needs root")
def test_a_full_device_as_record_is_one_line(fl):
    full = fl.tmp / "full"
    _device(full, 7)  # a full device of our own
    r = run_job(fl, _sh("true"), "--json-record", str(full))
    hostile(fl, r, 71, "no space left on device")
    assert stat.S_ISCHR(os.stat(full).st_mode)
    (fl.tmp / "out").mkdir()
    r = transfer(fl, [], "--json-record", str(full))
    hostile(fl, r, 1, "no space left on device")


def test_a_fifo_without_reader_as_record_is_one_line_not_a_hang(fl):
    fifo = fl.tmp / "fifo"
    os.mkfifo(fifo)
    r = run_job(fl, _sh("true"), "--json-record", str(fifo), timeout=30)
    hostile(fl, r, 71, "no such device or address")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_fifo_with_a_reader_gets_the_record(fl):
    fifo = fl.tmp / "fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    import threading

    def read() -> None:
        with open(fifo, "rb") as fh:
            got.append(fh.read())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    time.sleep(0.1)
    r = run_job(fl, _sh("true"), "--json-record", str(fifo), timeout=30)
    t.join(10)
    hostile(fl, r, 0, None)
    assert json.loads(got[0])["exit_code"] == 0


def test_kickstart_record_appended_to_a_fifo_without_reader_is_one_line(fl):
    fifo = fl.tmp / "fifo"
    os.mkfifo(fifo)
    r = fl.run("kickstart", "-l", str(fifo), "/bin/true", timeout=30)
    hostile(fl, r, 71, "no such device or address")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_credentials_never_reach_cluster_task_lines_or_records(fl):
    tasks = fl.tmp / "tasks.txt"
    tasks.write_text("/bin/echo https://alice:QSECRET1@host/x?token=FRAGTOKEN3\n")
    r = fl.run("cluster", "-q", str(tasks))
    hostile(fl, r, 0, None, secrets=SECRETS)
    assert "https://***@host/x?token=***" in r.stdout.decode()


def test_transfer_minimum_throughput_is_an_option(fl):
    with FaultServer() as srv:
        slow = srv.add("/slow", os.urandom(5000), ["trickle:1000:0.02"] * 5)
        r = transfer(fl, [_t([slow], f"file://{fl.tmp}/out/f")], "-m", "1", "--min-rate",
                     "1000", "--rate-window", "1")
    hostile(fl, r, 1, "f: http", empty=(fl.tmp / "out",))
    assert "too slow" in r.stderr.decode()


# --------------------------------------------------------------------------- small disks
def run_on_small_tmpfs(fl: Fluxlite, small: Path, job: dict[str, Any], size: str = "16m"
                       ) -> tuple[int, str, list[str]]:
    """`fluxlite run` in a private mount namespace where ``small`` is a tmpfs of ``size``;
    (exit code, stderr, what the tmpfs holds afterwards)."""
    small.mkdir()
    p = fl.write_job({"workdir": {"keep": "never", "min_free_mb": 1}, **job})
    script = ('mount -t tmpfs -o size="$1" tmpfs "$2" || exit 99; shift 2; "$@"; '
              'echo "rc=$?"; ls -A "$SMALL"')
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                        size, str(small), sys.executable, "-m", "fluxlite", "run", "-q",
                        "--kickstart-record", str(fl.tmp / "rec.yml"), "--json-record",
                        str(fl.tmp / "rec.json"), str(p)],
                       capture_output=True, timeout=60, cwd=fl.tmp,
                       env=fl.env({"SMALL": str(small)}))
    out = r.stdout.decode()
    assert "rc=" in out, (out, r.stderr.decode())
    rc_line, _, rest = out.rpartition("rc=")[2].partition("\n")
    return int(rc_line), r.stderr.decode(), rest.split()


@pytest.mark.skipif(_sandbox_ok() is not None, reason=str(_sandbox_ok()))
def test_a_30_gb_lie_on_a_small_disk_fails_that_source_and_the_mirror_is_used(fl):
    body = os.urandom(20000)
    small = fl.tmp / "small"
    with FaultServer() as srv:
        liar = srv.add("/liar", body, ["lie:30000000000"] * 10)
        good = srv.add("/good", body)
        job = {**_sh("cmp f f"), "inputs": [{"lfn": "f", "urls": [liar, good]}],
               "workdir": {"base": str(small), "keep": "never", "min_free_mb": 1}}
        rc, err, left = run_on_small_tmpfs(fl, small, job)
    assert rc == 0 and "Traceback" not in err, err
    assert _problem_lines(err.encode()) == [], err
    assert left == []  # worker directory removed (keep: never)
    atts = _record(fl)["stage_in"][0]["transfers"][0]["attempts"]
    assert "announces 30000000000 bytes" in atts[0]["error"] and atts[1]["success"]


@pytest.mark.skipif(_sandbox_ok() is not None, reason=str(_sandbox_ok()))
def test_a_full_destination_is_one_line_and_leaves_nothing(fl):
    small = fl.tmp / "small"
    job = {**_sh("head -c 40000000 /dev/urandom > big"),
           "outputs": [{"lfn": "big", "urls": [f"file://{small}/big"]}]}
    rc, err, left = run_on_small_tmpfs(fl, small, job)
    assert rc == 71 and "Traceback" not in err, err
    lines = _problem_lines(err.encode())
    assert len(lines) == 1 and "big: cannot write" in lines[0], err
    assert "no space left on device" in lines[0].lower(), err
    assert left == []  # nothing partial
    assert fl.leftover_workdirs() == []


def test_sparse_inputs_of_a_job_keep_their_holes(fl, data):
    src = data / "sparse"
    with open(src, "wb") as fh:
        fh.truncate(128 * 1024 * 1024)
        fh.write(b"head")
    if os.stat(src).st_blocks * 512 > 1024 * 1024:
        pytest.skip("this filesystem does not keep holes")
    job = {**_sh("stat -c %b sparse > blocks; cmp -n 4 sparse sparse"),
           "inputs": [{"lfn": "sparse", "urls": [f"file://{src}"]}],
           "outputs": [{"lfn": "blocks", "urls": [f"file://{fl.tmp}/out/blocks"]}]}
    r = run_job(fl, job)
    hostile(fl, r, 0, None)
    assert int((fl.tmp / "out" / "blocks").read_text()) * 512 <= 1024 * 1024


@pytest.mark.skipif(_sandbox_ok() is not None, reason=str(_sandbox_ok()))
def test_a_disk_filling_during_the_copy_is_one_line_and_leaves_nothing_partial(fl):
    small = fl.tmp / "small"
    n = 10_000_000
    job = {**_sh(f"head -c {n} /dev/urandom > a; head -c {n} /dev/urandom > b"),
           "outputs": [{"lfn": x, "urls": [f"file://{small}/{x}"]} for x in "ab"],
           "staging": {"threads": 2}}
    rc, err, left = run_on_small_tmpfs(fl, small, job)
    assert rc == 71 and "Traceback" not in err, err
    lines = _problem_lines(err.encode())
    assert len(lines) == 1 and "no space left on device" in lines[0].lower(), err
    assert left in ([], ["a"], ["b"])  # a file that is there is whole: no temporary
    assert fl.leftover_workdirs() == []


@pytest.mark.parametrize("value", [-1, "fast", True])
def test_a_bad_minimum_throughput_is_a_spec_error(fl, value):
    p = fl.write_job({**_sh("true"), "staging": {"min_rate": value}})
    r = fl.run("validate", str(p))
    assert r.returncode == 2 and "Traceback" not in r.stderr.decode()
    assert "staging.min_rate" in r.stderr.decode()
    assert fl.leftover_workdirs() == []


@pytest.mark.parametrize("url", ["file:///tmp/a\u0000b", "file:///tmp/a%00b",
                                 "file:///tmp/\ud800"])
def test_impossible_paths_in_a_transfer_list_are_one_line(fl, url):
    r = transfer(fl, None, raw=json.dumps([{"type": "remove", "target": {"url": url}}]))
    hostile(fl, r, 1, "[0].target.url:")
