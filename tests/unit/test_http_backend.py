"""The http backend through the managed transfer, against a real loopback server."""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fluxlite.errors import IntegrityError, StageError
from fluxlite.staging.base import Cancelled, Policy, Request, transfer
from tests.httpserver import FaultServer

FAST = Policy(attempts=3, backoff=0.05, max_backoff=0.1, timeout=5.0)
BODY = os.urandom(3 * 1024 * 1024 + 123)  # spans more than one pump buffer once resumed
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def srv():
    with FaultServer(max_requests=500) as s:
        yield s


def _req(tmp_path: Path, *urls: str, expected: str | None = SHA, name: str = "f.dat",
         **kw) -> Request:
    tls = kw.pop("tls", True)
    return Request(lfn=name, sources=tuple((u, tls) for u in urls),
                   dst=str(tmp_path / "dst" / name), expected=expected, **kw)


def _clean(tmp_path: Path, name: str = "f.dat") -> None:
    """Nothing but the finished file may ever be in the destination directory."""
    d = tmp_path / "dst"
    left = sorted(p.name for p in d.iterdir()) if d.exists() else []
    assert left in ([], [name]), left


def test_plain_get(srv, tmp_path):
    res = transfer(_req(tmp_path, srv.add("/a", BODY)), FAST)
    assert res.success and res.verified and res.sha256 == SHA and res.bytes == len(BODY)
    assert (tmp_path / "dst" / "f.dat").read_bytes() == BODY
    assert len(res.attempts) == 1 and res.attempts[0].bytes == len(BODY)
    _clean(tmp_path)


def test_zero_byte(srv, tmp_path):
    res = transfer(_req(tmp_path, srv.add("/empty", b""), expected=hashlib.sha256().hexdigest()),
                   FAST)
    assert res.success and (tmp_path / "dst" / "f.dat").stat().st_size == 0


def test_503_then_200(srv, tmp_path):
    res = transfer(_req(tmp_path, srv.add("/a", BODY, ["503"])), FAST)
    assert res.success
    assert [a.success for a in res.attempts] == [False, True]
    assert "HTTP 503" in (res.attempts[0].error or "")
    assert srv.outcomes("/a") == ["503", "ok"]


def test_drop_mid_body_resumes_with_range(srv, tmp_path):
    res = transfer(_req(tmp_path, srv.add("/a", BODY, ["drop:1000000"])), FAST)
    assert res.success and res.sha256 == SHA
    assert len(res.attempts) == 1  # resumed inside the attempt, nothing read twice
    assert srv.ranges("/a") == [None, "bytes=1000000-"]
    _clean(tmp_path)


def test_drop_without_ranges_retries_from_the_start(srv, tmp_path):
    res = transfer(_req(tmp_path, srv.add("/a", BODY, ["drop:5000"], ranges=False)), FAST)
    assert res.success and res.sha256 == SHA
    assert [a.success for a in res.attempts] == [False, True]
    assert "does not offer byte ranges" in (res.attempts[0].error or "")
    assert srv.ranges("/a") == [None, None]


def test_wrong_content_length_fails_that_source(srv, tmp_path):
    bad = srv.add("/bad", BODY, ["badlen:100"] * 10)
    good = srv.add("/good", BODY)
    res = transfer(_req(tmp_path, bad, good), FAST)
    assert res.success and res.sha256 == SHA
    assert res.attempts[0].src == bad and not res.attempts[0].success
    assert res.attempts[1].src == good and res.attempts[1].success
    _clean(tmp_path)


def test_wrong_content_length_alone_fails_and_leaves_nothing(srv, tmp_path):
    bad = srv.add("/bad", BODY, ["badlen:100"] * 10)
    with pytest.raises(StageError) as ei:
        transfer(_req(tmp_path, bad), Policy(attempts=2, backoff=0.01, max_backoff=0.01))
    assert len(ei.value.result.attempts) == 2
    _clean(tmp_path)
    assert not (tmp_path / "dst" / "f.dat").exists()


def test_wrong_content_checksum_fails_that_source_only(srv, tmp_path):
    bad = srv.add("/bad", BODY, ["corrupt"] * 5)
    good = srv.add("/good", BODY)
    res = transfer(_req(tmp_path, bad, good), FAST)
    assert res.success and res.verified
    assert "checksum mismatch" in (res.attempts[0].error or "")
    assert srv.hits("/bad") == 1  # a mismatch is permanent for that source
    _clean(tmp_path)


def test_checksum_mismatch_everywhere_is_an_integrity_error(srv, tmp_path):
    urls = [srv.add(f"/c{i}", BODY, ["corrupt"] * 5) for i in range(2)]
    t0 = time.monotonic()
    with pytest.raises(IntegrityError):
        transfer(_req(tmp_path, *urls), Policy(attempts=3, backoff=5, max_backoff=5))
    assert time.monotonic() - t0 < 3  # permanent: no waiting for rounds that cannot help
    assert [srv.hits(f"/c{i}") for i in range(2)] == [1, 1]
    _clean(tmp_path)


def test_slow_first_byte_within_timeout(srv, tmp_path):
    res = transfer(_req(tmp_path, srv.add("/a", BODY, ["slow:0.5"])), FAST)
    assert res.success and len(res.attempts) == 1


def test_slow_first_byte_beyond_timeout_moves_on(srv, tmp_path):
    slow = srv.add("/slow", BODY, ["slow:3"])
    good = srv.add("/good", BODY)
    pol = Policy(attempts=1, backoff=0.01, max_backoff=0.01, timeout=0.4)
    t0 = time.monotonic()
    res = transfer(_req(tmp_path, slow, good), pol)
    assert time.monotonic() - t0 < 2.5
    assert res.success and "no response within 0.4 s" in (res.attempts[0].error or "")


def test_stall_mid_body_times_out(srv, tmp_path):
    stall = srv.add("/stall", BODY, ["stall:100000:3"], ranges=False)
    pol = Policy(attempts=1, backoff=0.01, max_backoff=0.01, timeout=0.4)
    with pytest.raises(StageError) as ei:
        transfer(_req(tmp_path, stall), pol)
    assert "no data for 0.4 s" in str(ei.value)
    _clean(tmp_path)


def test_redirect(srv, tmp_path):
    srv.add("/real", BODY)
    res = transfer(_req(tmp_path, srv.add("/moved", redirect="/real")), FAST)
    assert res.success and res.sha256 == SHA
    assert srv.hits("/moved") == 1 and srv.hits("/real") == 1


def test_redirect_loop_is_permanent_and_bounded(srv, tmp_path):
    url = srv.add("/loop", redirect="/loop")
    with pytest.raises(StageError) as ei:
        transfer(_req(tmp_path, url), Policy(attempts=3, backoff=5, max_backoff=5))
    assert "more than 5 redirects" in str(ei.value)
    assert srv.hits("/loop") == 6 and len(ei.value.result.attempts) == 1


def test_404_first_200_second(srv, tmp_path):
    missing = srv.add("/missing", status=404)
    good = srv.add("/good", BODY, ["503"])
    res = transfer(_req(tmp_path, missing, good), FAST)
    assert res.success
    # round 1: 404 (never asked again), 503; round 2: only the second source
    assert [(a.src.rsplit("/", 1)[1], a.round) for a in res.attempts] == [
        ("missing", 1), ("good", 1), ("good", 2)]
    assert srv.hits("/missing") == 1


@pytest.mark.parametrize("status", [403, 404, 410])
def test_permanent_statuses_are_not_retried(srv, tmp_path, status):
    url = srv.add("/x", status=status)
    t0 = time.monotonic()
    with pytest.raises(StageError) as ei:
        transfer(_req(tmp_path, url), Policy(attempts=5, backoff=10, max_backoff=10))
    assert time.monotonic() - t0 < 2
    assert srv.hits("/x") == 1 and f"HTTP {status}" in str(ei.value)


def test_missing_optional_file_is_skipped(srv, tmp_path):
    res = transfer(_req(tmp_path, srv.add("/x", status=404), optional=True), FAST)
    assert res.skipped and not res.success


def test_failover_across_three_sources(srv, tmp_path):
    a = srv.add("/a", BODY, ["500"] * 9)
    b = srv.add("/b", BODY, ["drop:10"] * 9, ranges=False)
    c = srv.add("/c", BODY)
    res = transfer(_req(tmp_path, a, b, c), FAST)
    assert res.success and [x.src for x in res.attempts] == [a, b, c]
    _clean(tmp_path)


def test_retries_bounded_in_count_and_time(srv, tmp_path):
    url = srv.add("/busy", status=503)
    pol = Policy(attempts=4, backoff=0.2, max_backoff=0.3)
    t0 = time.monotonic()
    with pytest.raises(StageError) as ei:
        transfer(_req(tmp_path, url), pol)
    took = time.monotonic() - t0
    assert srv.hits("/busy") == 4 and len(ei.value.result.attempts) == 4
    # waits: 0.2, 0.3, 0.3 at most (bounded by max_backoff), at least half of each
    assert 0.35 <= took < 0.8 + 1.0, took
    assert "after 4 attempts" in str(ei.value)


def _cancelled_after(delay: float, req: Request) -> float:
    """Transfer ``req`` with its cancel event set after ``delay`` seconds: the seconds until
    the transfer stopped with Cancelled."""
    cancel = threading.Event()
    threading.Timer(delay, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        transfer(req, Policy(timeout=30), cancel)
    return time.monotonic() - t0


def test_cancel_interrupts_a_blocked_read(srv, tmp_path):
    url = srv.add("/slow", BODY, ["slow:20"])
    assert _cancelled_after(0.3, _req(tmp_path, url)) < 1.5
    _clean(tmp_path)


def test_credentials_are_sent_but_never_recorded(srv, tmp_path):
    url = srv.add("/auth", BODY).replace("http://", "http://alice:s3cret@")
    # a token with letters past 'f': it cannot turn up by chance inside a hex digest
    res = transfer(_req(tmp_path, url + "?token=tok-qwxyz"), FAST)
    assert res.success
    text = repr(res)
    assert "s3cret" not in text and "qwxyz" not in text and "***" in res.attempts[0].src


def test_credentials_in_errors_are_redacted(srv, tmp_path):
    url = srv.add("/gone", status=404).replace("http://", "http://bob:hunter2@")
    with pytest.raises(StageError) as ei:
        transfer(_req(tmp_path, url), FAST)
    assert "hunter2" not in str(ei.value) and "hunter2" not in repr(ei.value.result)


def test_connection_refused_is_transient(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(StageError) as ei:
        transfer(_req(tmp_path, f"http://127.0.0.1:{port}/x"),
                 Policy(attempts=2, backoff=0.01, max_backoff=0.01))
    assert len(ei.value.result.attempts) == 2 and "refused" in str(ei.value)


# ------------------------------------------------------------------------------- https
@pytest.fixture
def tls_srv(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the https server")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    s = FaultServer(max_requests=50)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    s.httpd.socket = ctx.wrap_socket(s.httpd.socket, server_side=True)
    s.base = s.base.replace("http://", "https://")
    with s:
        yield s


def test_https_verifies_certificates_by_default(tls_srv, tmp_path):
    url = tls_srv.add("/a", BODY)
    with pytest.raises(StageError) as ei:
        transfer(_req(tmp_path, url), Policy(attempts=3, backoff=5, max_backoff=5))
    assert "certificate verification failed" in str(ei.value)
    assert len(ei.value.result.attempts) == 1  # permanent


def test_https_without_verification_when_asked(tls_srv, tmp_path):
    url = tls_srv.add("/a", BODY)
    res = transfer(_req(tmp_path, url, tls=False), FAST)
    assert res.success and res.sha256 == SHA


# ------------------------------------------------------------ large bodies (the pipeline)
LARGE = os.urandom(13 * 1024 * 1024 + 5)  # several copy buffers: reader/hasher/writer overlap


def test_large_body_with_two_drops_resumes(srv, tmp_path):
    url = srv.add("/L", LARGE, ["drop:6000000", "drop:3000000"])
    res = transfer(_req(tmp_path, url, expected=hashlib.sha256(LARGE).hexdigest()), FAST)
    assert res.success and (tmp_path / "dst" / "f.dat").read_bytes() == LARGE
    assert srv.ranges("/L") == [None, "bytes=6000000-", "bytes=9000000-"]
    _clean(tmp_path)


def test_cancel_during_a_large_stalled_body(srv, tmp_path):
    url = srv.add("/L", LARGE, ["stall:9000000:20"])
    assert _cancelled_after(0.5, _req(tmp_path, url, expected=None)) < 2
    _clean(tmp_path)
    assert not (tmp_path / "dst" / "f.dat").exists()


def test_destination_error_is_not_blamed_on_the_source(srv, tmp_path):
    (tmp_path / "dst").write_text("a file where a directory should be")
    a, b = srv.add("/L", LARGE), srv.add("/M", LARGE)
    with pytest.raises(StageError) as ei:
        transfer(_req(tmp_path, a, b, expected=None), Policy(attempts=3, backoff=5))
    assert "cannot write" in str(ei.value)
    # permanent and not the source's fault: no other source, no other round
    assert srv.hits("/L") == 1 and srv.hits("/M") == 0


def test_a_truncated_gzip_body_is_an_error_not_a_file(tmp_path):
    import gzip as _gzip

    body = os.urandom(200000)
    with FaultServer() as srv:
        url = srv.add("/g", body, ["encoding:gzip"] * 3)
        srv.routes["/g"].data = _gzip.compress(body)[:5000]  # cut inside the stream
        with pytest.raises(StageError) as err:
            transfer(Request("g", ((url, True),), str(tmp_path / "g")), Policy(attempts=1))
    assert "gzip body is cut short after 5000 bytes" in str(err.value)
    assert list(tmp_path.iterdir()) == []
