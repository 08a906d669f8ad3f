from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path

import pytest

from fluxlite.errors import IntegrityError, StageError
from fluxlite.integrity import CHUNK
from fluxlite.staging.base import PIPELINE_MIN, Policy, Request, backoff_delay, transfer

FAST = Policy(attempts=2, backoff=0.01, max_backoff=0.02)


def make(path: Path, n: int) -> str:
    data = os.urandom(n)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17,
                                  PIPELINE_MIN - 1, PIPELINE_MIN, PIPELINE_MIN + 1])
def test_copy_hashes_while_copying(tmp_path: Path, size: int) -> None:
    digest = make(tmp_path / "src", size)
    res = transfer(Request("f", ((f"file://{tmp_path}/src", True),), str(tmp_path / "d" / "f"),
                           expected=digest), FAST)
    assert res.success and res.sha256 == digest and res.bytes == size and res.verified
    assert (tmp_path / "d" / "f").read_bytes() == (tmp_path / "src").read_bytes()
    assert os.listdir(tmp_path / "d") == ["f"]  # no temporary file left


def test_mismatch_leaves_nothing_and_is_not_retried(tmp_path: Path) -> None:
    make(tmp_path / "src", 5000)
    req = Request("f", ((f"file://{tmp_path}/src", True),), str(tmp_path / "d" / "f"),
                  expected="0" * 64)
    with pytest.raises(IntegrityError) as ei:
        transfer(req, FAST)
    assert "f: checksum mismatch: expected sha256 " + "0" * 64 in str(ei.value)
    assert len(ei.value.result.attempts) == 1  # type: ignore[attr-defined]
    assert os.listdir(tmp_path / "d") == []


def test_failover_to_the_next_source(tmp_path: Path) -> None:
    digest = make(tmp_path / "good", 100)
    make(tmp_path / "bad", 100)
    req = Request("f", ((f"file://{tmp_path}/missing", True), (f"file://{tmp_path}/bad", True),
                        (f"file://{tmp_path}/good", True)), str(tmp_path / "f"), expected=digest)
    res = transfer(req, FAST)
    assert res.success and [a.success for a in res.attempts] == [False, False, True]


def test_missing_everywhere_fails_without_pointless_retries(tmp_path: Path) -> None:
    req = Request("f", ((f"file://{tmp_path}/a", True), (f"file://{tmp_path}/b", True)),
                  str(tmp_path / "f"))
    with pytest.raises(StageError) as ei:
        transfer(req, Policy(attempts=3, backoff=5))  # a retry would take seconds
    assert len(ei.value.result.attempts) == 2  # type: ignore[attr-defined]


def test_optional_missing_is_skipped(tmp_path: Path) -> None:
    res = transfer(Request("f", ((f"file://{tmp_path}/a", True),), str(tmp_path / "f"),
                           optional=True), FAST)
    assert res.skipped and not res.success


def test_symlink_mode_links_and_verifies_once(tmp_path: Path) -> None:
    digest = make(tmp_path / "src", 1000)
    res = transfer(Request("f", ((f"file://{tmp_path}/src", True),), str(tmp_path / "f"),
                           expected=digest, symlink=True), FAST)
    assert res.linked and os.path.islink(tmp_path / "f") and res.sha256 == digest
    res = transfer(Request("g", ((f"symlink://{tmp_path}/src", True),), str(tmp_path / "g")),
                   FAST)
    assert res.linked and os.readlink(tmp_path / "g") == str(tmp_path / "src")


def test_executable_bit(tmp_path: Path) -> None:
    make(tmp_path / "src", 10)
    transfer(Request("x", ((f"file://{tmp_path}/src", True),), str(tmp_path / "x"),
                     executable=True), FAST)
    assert os.access(tmp_path / "x", os.X_OK)


def test_unwritable_destination_is_a_permanent_error(tmp_path: Path) -> None:
    make(tmp_path / "src", 10)
    (tmp_path / "plainfile").write_text("x")  # a file where a directory is needed: even root fails
    with pytest.raises(StageError) as ei:
        transfer(Request("x", ((f"file://{tmp_path}/src", True),),
                         f"file://{tmp_path}/plainfile/sub/x"), Policy(attempts=3, backoff=5))
    assert "cannot write" in str(ei.value)
    assert len(ei.value.result.attempts) == 1  # type: ignore[attr-defined]


def test_cancel_stops_a_large_copy_and_cleans_up(tmp_path: Path) -> None:
    from fluxlite.staging.base import Cancelled

    make(tmp_path / "src", 8 * CHUNK)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        transfer(Request("x", ((f"file://{tmp_path}/src", True),), str(tmp_path / "d" / "x")),
                 FAST, cancel)
    assert not (tmp_path / "d").exists() or os.listdir(tmp_path / "d") == []


def test_backoff_is_bounded() -> None:
    p = Policy(attempts=10, backoff=1, max_backoff=30)
    for r in range(1, 10):
        d = backoff_delay(r, p)
        assert 0 <= d <= 30
    assert backoff_delay(1, p) <= 1


def test_redact_hides_a_password_with_an_at_sign() -> None:
    from urllib.parse import urlsplit

    from fluxlite.urls import redact

    url = "https://user:p@ss@host.example/f?x=1"
    assert urlsplit(url).password == "p@ss"  # what a client would send
    out = redact(url)
    assert "p@ss" not in out and "ss@" not in out and "user" not in out
    assert out == "https://***@host.example/f?x=1"


def test_symlink_onto_a_directory_fails_and_leaves_no_temp(tmp_path: Path) -> None:
    make(tmp_path / "src", 10)
    src = str(tmp_path / "src")
    dst = tmp_path / "out" / "f"
    (dst / "inside").mkdir(parents=True)
    req = Request("f", ((src, True),), str(dst), symlink=True)
    with pytest.raises(StageError):
        transfer(req, Policy(attempts=2, backoff=0.01))
    assert sorted(p.name for p in dst.parent.iterdir()) == ["f"]


def test_copy_onto_a_directory_is_a_stage_error(tmp_path: Path) -> None:
    make(tmp_path / "src", 10)
    dst = tmp_path / "out" / "f"
    (dst / "inside").mkdir(parents=True)
    req = Request("f", ((str(tmp_path / "src"), True),), str(dst))
    with pytest.raises(StageError, match="cannot write"):
        transfer(req, Policy(attempts=2, backoff=0.01))
    assert sorted(p.name for p in dst.parent.iterdir()) == ["f"]


# --------------------------------------------------------------------------- redaction
@pytest.mark.parametrize(("url", "shown", "hidden"), [
    ("https://u:pa#ss/w?rd x@host/p?x=1", "https://***@host/p?x=1", "pa#ss"),
    ("https://u:p@h/a?token=T1&x=1#access_token=T2&t=b",
     "https://***@h/a?token=***&x=1#access_token=***&t=b", "T1"),
    ("http://h/p;jsessionid=J1?a=1", "http://h/p;jsessionid=***", "J1"),
    ("https://h/x?X-Amz-Signature=S1&X-Amz-Date=1", "https://h/x?X-Amz-Signature=***&X-Amz-Date=1",
     "S1"),
    ("https://h/x?PWD=P1&Auth=P2&sig=P3", "https://h/x?PWD=***&Auth=***&sig=***", "P1"),
    ("https://h/x?pass=a#b&c=d", "https://h/x?pass=***&c=d", "#b"),
    ("file:///tmp/a@b", "file:///tmp/a@b", None),
    ("/plain/path", "/plain/path", None),
])
def test_redaction_is_structural(url, shown, hidden):
    from fluxlite import redact

    assert redact.url(url) == shown
    if hidden:
        assert hidden not in redact.text(f"failed: {url} (again)")


def test_redaction_of_text_env_and_documents():
    from fluxlite import redact

    t = redact.text("e: 'https://u:p w@host/f?token=1' and http://ok/x then (https://a:b@c/d).")
    assert t == "e: 'https://***@host/f?token=***' and http://ok/x then (https://***@c/d)."
    env = redact.env({"DB_PASS": "x", "MYSQL_PWD": "y", "AWS_SECRET_ACCESS_KEY": "z",
                      "MY_COOKIE": "c", "PWD": "/w", "HOME": "/h",
                      "http_proxy": "http://u:p@proxy:3128"})
    assert env == {"AWS_SECRET_ACCESS_KEY": "***", "DB_PASS": "***", "HOME": "/h",
                   "MYSQL_PWD": "***", "MY_COOKIE": "***", "PWD": "/w",
                   "http_proxy": "http://***@proxy:3128"}
    doc = redact.deep({"a": ["https://u:p@h/"], "environment": {"X_TOKEN": "t"}})
    assert doc == {"a": ["https://***@h/"], "environment": {"X_TOKEN": "***"}}
    assert redact.split_userinfo("http://u:p#w@h:1/x") == ("u:p#w", "http://h:1/x")
    assert redact.split_userinfo("http://h:80/a@b") == (None, "http://h:80/a@b")


def test_write_atomic_writes_into_a_device_and_never_replaces_it(tmp_path):
    import stat as st

    from fluxlite.fsutil import write_atomic

    if os.geteuid() != 0:
        pytest.skip("mknod of a device needs root")
    null = tmp_path / "null"
    os.mknod(null, st.S_IFCHR | 0o666, os.makedev(1, 3))
    write_atomic(str(null), b"record")
    assert st.S_ISCHR(os.stat(null).st_mode)
    full = tmp_path / "full"
    os.mknod(full, st.S_IFCHR | 0o666, os.makedev(1, 7))
    with pytest.raises(OSError) as err:
        write_atomic(str(full), b"record")
    assert err.value.errno == errno.ENOSPC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "null"]


def test_reservation_follows_the_bytes_that_arrived(tmp_path):
    from fluxlite.staging import base

    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        w = base._LocalWriter(fd, base.Request("f", (), str(path)), str(path),
                              30 * 1024**3, None)
        w.write(memoryview(b"x" * 20000))
        w.finish(20000)
        assert w.reserved <= 20000 + base._RESERVE_STEP
        assert os.fstat(fd).st_size == 20000
    finally:
        os.close(fd)


def test_without_unnamed_files_a_failed_copy_leaves_no_temporary(tmp_path, monkeypatch):
    from fluxlite.staging import base

    monkeypatch.setattr(base, "O_TMPFILE", 0)
    src = tmp_path / "src"
    src.write_bytes(b"x" * 1000)
    dst = tmp_path / "out" / "f"
    res = transfer(Request("f", ((str(src), True),), str(dst)), Policy(attempts=1))
    assert res.success and dst.read_bytes() == b"x" * 1000
    with pytest.raises(IntegrityError):
        transfer(Request("g", ((str(src), True),), str(tmp_path / "out" / "g"),
                         expected="0" * 64), Policy(attempts=1))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f"]


class _Stop(BaseException):
    """What a stop signal's handler raises between two steps of the main thread."""


def _raise_once(real, when):  # noqa: ANN001, ANN202 - a stand-in for os.unlink/os.replace
    fired = []

    def step(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        if not fired and when(*args):
            fired.append(args)
            raise _Stop
        return real(*args, **kw)

    return step, fired


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="no O_TMPFILE on this system")
def test_a_stop_between_the_probes_link_and_unlink_leaves_no_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe of unnamed files links one under the destination's temporary name for an
    instant: a stop signal's exception in that instant still removes it."""
    from fluxlite.staging import base

    dst = tmp_path / "out" / "f.dat"
    dst.parent.mkdir()
    step, fired = _raise_once(os.unlink, lambda p, *a: ".f.dat.tmp-" in str(p))
    monkeypatch.setattr(os, "unlink", step)
    with pytest.raises(_Stop):
        base._probe_tmpfile(str(dst), -42)
    assert fired and os.listdir(dst.parent) == []


@pytest.mark.skipif(not hasattr(os, "O_TMPFILE"), reason="no O_TMPFILE on this system")
def test_a_stop_between_the_link_and_the_rename_over_a_file_leaves_no_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Publishing over an existing file links under a temporary name, then renames: a stop
    in between leaves the old file as it was and no temporary."""
    from fluxlite.staging import base

    ddir = tmp_path / "out"
    ddir.mkdir()
    (ddir / "f.dat").write_text("old")
    (ddir / ".f.dat.tmp-zzzzzzzz").write_text("another's")
    fd = os.open(ddir, os.O_TMPFILE | os.O_WRONLY, 0o600)
    try:
        os.write(fd, b"new")
        step, fired = _raise_once(os.replace, lambda src, *a: ".f.dat.tmp-" in str(src))
        monkeypatch.setattr(os, "replace", step)
        with pytest.raises(_Stop):
            base._publish(fd, None, str(ddir / "f.dat"))
    finally:
        os.close(fd)
    assert fired
    assert sorted(os.listdir(ddir)) == [".f.dat.tmp-zzzzzzzz", "f.dat"]
    assert (ddir / "f.dat").read_text() == "old"


# --------------------------------------------------------------------------- one thread or three
class _WatchedFile:
    """A real file read through the file backend's reader, noting the thread of each read;
    ``hide_size`` makes it a source of unknown size, as a server without Content-Length."""

    def __init__(self, path: Path, hide_size: bool = False) -> None:
        from fluxlite.staging.localfile import FileReader

        self.inner = FileReader(str(path))
        self.size = None if hide_size else self.inner.size
        self.reads: list[str] = []

    def readinto(self, buf: bytearray) -> int:
        self.reads.append(threading.current_thread().name)
        return self.inner.readinto(buf)

    def close(self) -> None:
        self.inner.close()


class _WatchedHash:
    """sha256, noting the thread of each update."""

    def __init__(self) -> None:
        self.inner = hashlib.sha256()
        self.updates: list[str] = []

    def update(self, data: memoryview) -> None:
        self.updates.append(threading.current_thread().name)
        self.inner.update(data)


@pytest.fixture
def threshold(monkeypatch: pytest.MonkeyPatch) -> int:
    """A lower PIPELINE_MIN (two buffers), so that these tests copy less."""
    from fluxlite.staging import base

    monkeypatch.setattr(base, "PIPELINE_MIN", 2 * CHUNK)
    return 2 * CHUNK


def _pump(path: Path, hide_size: bool = False) -> tuple[_WatchedFile, list[tuple[str, int]],
                                                       list[str]]:
    from fluxlite.staging.base import pump

    src = _WatchedFile(path, hide_size)
    writes: list[tuple[str, int]] = []
    out = bytearray()

    def write(view: memoryview) -> None:
        writes.append((threading.current_thread().name, len(view)))
        out.extend(view)

    h = _WatchedHash()
    try:
        n, _ = pump(src, write, h, threading.Event())
    finally:
        src.close()
    data = path.read_bytes()
    assert n == len(data) and bytes(out) == data
    assert h.inner.hexdigest() == hashlib.sha256(data).hexdigest()
    return src, writes, h.updates


def test_a_copy_below_the_threshold_is_one_thread_and_reads_twice(tmp_path: Path,
                                                                  threshold: int) -> None:
    make(tmp_path / "src", threshold - 1)
    src, writes, hashed = _pump(tmp_path / "src")
    me = threading.current_thread().name
    assert {t for t, _ in writes} == set(src.reads) == set(hashed) == {me}
    make(tmp_path / "small", 65536)
    src, writes, hashed = _pump(tmp_path / "small")
    # one read brings the whole file, the next finds its end: no third read, one write
    assert len(src.reads) == 2 and writes == [(me, 65536)] and hashed == [me]


_ONE_CPU = hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) < 2


@pytest.mark.skipif(_ONE_CPU, reason="this process may use one CPU only: no pipeline")
def test_a_copy_from_the_threshold_on_is_hashed_by_a_second_thread(tmp_path: Path,
                                                                   threshold: int) -> None:
    make(tmp_path / "src", threshold)
    src, writes, hashed = _pump(tmp_path / "src")
    me = threading.current_thread().name
    assert {t for t, _ in writes} == set(src.reads) == {me}
    assert set(hashed) == {"fluxlite-hasher"}


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here")
def test_a_process_bound_to_one_cpu_copies_in_one_thread(tmp_path: Path) -> None:
    import subprocess
    import sys

    make(tmp_path / "src", 2 * CHUNK + 1)
    probe = (
        "import os, threading\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from fluxlite.staging import base\n"
        f"base.PIPELINE_MIN = {2 * CHUNK}\n"
        "from fluxlite.staging.base import Policy, Request, transfer\n"
        "seen = set()\n"
        "real = threading.Thread.start\n"
        "threading.Thread.start = lambda self: (seen.add(self.name), real(self))[1]\n"
        f"res = transfer(Request('f', (({str(tmp_path / 'src')!r}, True),), "
        f"{str(tmp_path / 'f')!r}), Policy(attempts=1))\n"
        "print(res.bytes, sorted(seen))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split(" ", 1) == [str(2 * CHUNK + 1), "[]\n"]
    assert (tmp_path / "f").read_bytes() == (tmp_path / "src").read_bytes()


@pytest.mark.skipif(_ONE_CPU, reason="this process may use one CPU only: no pipeline")
def test_a_source_of_unknown_size_switches_to_threads_past_the_threshold(
        tmp_path: Path, threshold: int) -> None:
    make(tmp_path / "src", 2 * threshold + 5)
    src, writes, hashed = _pump(tmp_path / "src", hide_size=True)
    me = threading.current_thread().name
    # one thread until the threshold, then the hashing moves to the second thread
    alone = threshold // CHUNK
    assert hashed[:alone] == [me] * alone and set(hashed[alone:]) == {"fluxlite-hasher"}
    assert sum(n for _, n in writes[:alone]) == threshold
    assert {t for t, _ in writes} == set(src.reads) == {me}


def _no_hasher_left() -> bool:
    return not any(t.name == "fluxlite-hasher" for t in threading.enumerate())


@pytest.mark.skipif(_ONE_CPU, reason="this process may use one CPU only: no pipeline")
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_a_full_device_in_the_pipeline_is_its_oserror_and_no_thread_stays(
        tmp_path: Path, threshold: int) -> None:
    from fluxlite.staging.base import pump
    from fluxlite.staging.localfile import FileReader

    make(tmp_path / "src", 3 * threshold)
    src = FileReader(str(tmp_path / "src"))
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as err:
            pump(src, lambda view: os.write(fd, view), hashlib.sha256(), threading.Event())
    finally:
        os.close(fd)
        src.close()
    assert err.value.errno == errno.ENOSPC and _no_hasher_left()


@pytest.mark.skipif(_ONE_CPU, reason="this process may use one CPU only: no pipeline")
def test_a_cancel_in_the_pipeline_stops_it_and_no_thread_stays(tmp_path: Path,
                                                                threshold: int) -> None:
    from fluxlite.staging.base import Cancelled, pump
    from fluxlite.staging.localfile import FileReader

    make(tmp_path / "src", 3 * threshold)
    src = FileReader(str(tmp_path / "src"))
    cancel = threading.Event()
    wrote: list[int] = []

    def write(view: memoryview) -> None:
        wrote.append(len(view))
        cancel.set()  # a stop signal arriving during the first write

    try:
        with pytest.raises(Cancelled):
            pump(src, write, hashlib.sha256(), cancel)
    finally:
        src.close()
    assert wrote == [CHUNK] and _no_hasher_left()


# --------------------------------------------------------------------------- the job's start
_START_PROBE = r"""
import ctypes, json, sys
ctypes.CDLL(None).prctl(15, b"a) b (c ) 1 2", 0, 0, 0)  # PR_SET_NAME: a name that parses badly
import psutil
from fluxlite.staging import base
print(json.dumps([base._process_start(), psutil.Process().create_time(),
                  open("/proc/self/comm").read().strip()]))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="no /proc on this system")
def test_the_job_start_from_proc_is_psutils(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    pytest.importorskip("psutil", reason="psutil is not installed")
    out = subprocess.run([sys.executable, "-c", _START_PROBE], capture_output=True, text=True,
                         check=True, timeout=60)
    ours, theirs, comm = json.loads(out.stdout)
    assert comm == "a) b (c ) 1 2"
    # the same ticks and boot time: equal, but for a boot time the clock moved meanwhile
    assert ours == pytest.approx(theirs, abs=1.0)


def test_a_copy_imports_no_psutil(tmp_path: Path) -> None:
    """psutil (slow to import) is not on a transfer's path, stale temporaries or not."""
    import subprocess
    import sys

    make(tmp_path / "src", 1000)
    (tmp_path / "out").mkdir()
    stale = tmp_path / "out" / ".f.tmp-ab12cd34"
    stale.write_text("left by a killed run")
    os.utime(stale, (1, 1))
    probe = (
        "import sys\n"
        "from fluxlite.staging.base import Policy, Request, transfer\n"
        f"transfer(Request('g', (({str(tmp_path / 'src')!r}, True),), "
        f"{str(tmp_path / 'out' / 'g')!r}), Policy(attempts=1))\n"
        f"transfer(Request('f', (({str(tmp_path / 'src')!r}, True),), "
        f"{str(tmp_path / 'out' / 'f')!r}), Policy(attempts=1))\n"
        "print('psutil' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "False"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f", "g"]
