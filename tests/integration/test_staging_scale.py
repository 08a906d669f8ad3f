"""Staging at scale: many files, odd names, other filesystems, short-circuit of a mostly
failing set, and no partial file ever visible at a destination."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from fluxlite.errors import StageError
from fluxlite.staging.base import Policy, Request, transfer
from fluxlite.staging.phases import SHORT_CIRCUIT_MIN, run_transfers
from tests.conftest import sha256_of
from tests.httpserver import FaultServer


@pytest.fixture
def srv():
    with FaultServer(max_requests=3000) as s:
        yield s


def test_thousand_inputs_verified(fl, data, tmp_path):
    inputs = []
    for i in range(1000):
        b = os.urandom(100 + i % 7) if i % 10 else b""  # every tenth file is empty
        (data / f"in{i:04d}").write_bytes(b)
        inputs.append({"lfn": f"d{i % 10}/in{i:04d}", "urls": [f"file://{data}/in{i:04d}"],
                       "sha256": hashlib.sha256(b).hexdigest()})
    job = fl.write_job({
        "executable": "/bin/sh", "arguments": ["-c", "find d0 d1 d2 d3 d4 d5 d6 d7 d8 d9 "
                                               "-type f | wc -l > count"],
        "inputs": inputs, "outputs": [{"lfn": "count", "urls": [f"file://{tmp_path}/count"]}],
        "records": {"kickstart": None, "json": str(tmp_path / "rec.json")}})
    t0 = time.monotonic()
    r = fl.run("run", str(job))
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert (tmp_path / "count").read_text().strip() == "1000"
    rec = json.loads((tmp_path / "rec.json").read_text())
    st = rec["stage_in"][0]
    assert st["succeeded"] == 1000 and all(t["verified"] for t in st["transfers"])
    assert took < 60, took  # generous: a shared 2-core machine


def test_zero_byte_unicode_and_spaces(fl, data, srv, tmp_path):
    names = ["zero bytes.dat", "ünïcødé ñame.txt", "日本語 ファイル", "sp ace/inner file"]
    inputs = []
    for i, name in enumerate(names):
        body = b"" if i == 0 else name.encode() * 10
        p = data / name.replace("/", "_")
        p.write_bytes(body)
        sha = hashlib.sha256(body).hexdigest()
        inputs.append({"lfn": name, "urls": [f"file://{p}"], "sha256": sha})
        url = srv.add("/" + name, body)
        inputs.append({"lfn": "http/" + name,
                       "urls": [srv.base + "/" + quote(name)], "sha256": sha})
        assert url  # registered under the unquoted path
    outs = [{"lfn": n, "urls": [f"file://{tmp_path}/out/{n}"]} for n in names]
    job = fl.write_job({"executable": "/bin/true", "inputs": inputs, "outputs": outs,
                        "records": {"kickstart": str(tmp_path / "ks.out")}})
    r = fl.run("run", str(job))
    assert r.returncode == 0, r.stderr.decode()
    for i, n in enumerate(names):
        assert (tmp_path / "out" / n).read_bytes() == (b"" if i == 0 else n.encode() * 10)
    assert "ünïcødé" in (tmp_path / "ks.out").read_text(encoding="utf-8")


@pytest.mark.skipif(not os.path.isdir("/dev/shm") or not os.access("/dev/shm", os.W_OK),
                    reason="no writable /dev/shm to serve as another filesystem")
def test_destination_on_another_filesystem(fl, data, tmp_path):
    shm = Path("/dev/shm") / f"fluxlite-test-{os.getpid()}-{tmp_path.name}"
    assert os.stat("/dev/shm").st_dev != os.stat(fl.wdbase).st_dev or pytest.skip(
        "/dev/shm is on the same filesystem as the worker directory")
    shm.mkdir()
    try:
        src = shm / "input.bin"
        src.write_bytes(os.urandom(5 * 1024 * 1024 + 3))  # more than one copy buffer
        job = fl.write_job({
            "executable": "/bin/cp", "arguments": ["input.bin", "output.bin"],
            "inputs": [{"lfn": "input.bin", "urls": [f"file://{src}"],
                        "sha256": sha256_of(src)}],
            "outputs": [{"lfn": "output.bin", "urls": [f"file://{shm}/out/output.bin"]}],
            "records": {"kickstart": None}})
        r = fl.run("run", str(job))
        assert r.returncode == 0, r.stderr.decode()
        assert sha256_of(shm / "out" / "output.bin") == sha256_of(src)
        assert os.listdir(shm / "out") == ["output.bin"]
    finally:
        import shutil

        shutil.rmtree(shm, ignore_errors=True)


# ---------------------------------------------------------------------------- short-circuit
def test_mostly_failing_set_short_circuits(fl, srv, tmp_path):
    inputs = [{"lfn": f"f{i}", "urls": [srv.add(f"/f{i}", b"x", status=503)]}
              for i in range(40)]
    job = fl.write_job({
        "executable": "/bin/true", "inputs": inputs,
        "staging": {"attempts": 5, "backoff": 5, "max_backoff": 30, "threads": 4},
        "records": {"kickstart": None, "json": str(tmp_path / "rec.json")}})
    t0 = time.monotonic()
    r = fl.run("run", str(job))
    took = time.monotonic() - t0
    assert r.returncode == 71
    # without the short-circuit: 5 rounds with waits of 5, 10, 20, 30 s
    assert took < 5, took
    rec = json.loads((tmp_path / "rec.json").read_text())
    assert "stopped early" in rec["error"] and "HTTP 503" in rec["error"]
    assert sum(srv.hits(f"/f{i}") for i in range(40)) < 40  # the rest was never asked


def _reqs(tmp_path: Path, srv: FaultServer, good: int, bad: int) -> list[Request]:
    """good + bad requests, the failing ones spread evenly among the others."""
    n = good + bad
    bad_at = {round(k * n / bad) for k in range(bad)} if bad else set()
    reqs = []
    for i in range(n):
        url = srv.add(f"/r{i}", b"data", status=500 if i in bad_at else None)
        reqs.append(Request(f"r{i}", ((url, True),), str(tmp_path / "o" / f"r{i}")))
    return reqs


def test_short_circuit_without_stop_on_error(tmp_path, srv):
    reqs = _reqs(tmp_path, srv, good=5, bad=25)
    pol = Policy(attempts=4, backoff=3, max_backoff=3)
    t0 = time.monotonic()
    with pytest.raises(StageError) as ei:
        run_transfers("stage-in", reqs, pol, threads=2, stop_on_error=False)
    assert time.monotonic() - t0 < 3
    assert "stopped early" in str(ei.value)
    assert sum(srv.hits(f"/r{i}") for i in range(30)) < 30
    st = ei.value.stage
    assert st.interrupted and st.error == str(ei.value)


def test_a_few_failures_do_not_short_circuit(tmp_path, srv):
    reqs = _reqs(tmp_path, srv, good=17, bad=3)
    pol = Policy(attempts=2, backoff=0.05, max_backoff=0.05)
    with pytest.raises(StageError) as ei:
        run_transfers("stage-in", reqs, pol, threads=4, stop_on_error=False)
    assert "stopped early" not in str(ei.value)
    st = ei.value.stage
    assert st.files == 17
    failed = [r for r in st.results if not r.success]
    assert len(failed) == 3 and all(len(r.attempts) == 2 for r in failed)


def test_small_sets_never_short_circuit(tmp_path, srv):
    reqs = _reqs(tmp_path, srv, good=0, bad=SHORT_CIRCUIT_MIN - 1)
    pol = Policy(attempts=2, backoff=0.05, max_backoff=0.05)
    with pytest.raises(StageError) as ei:
        run_transfers("stage-in", reqs, pol, threads=4, stop_on_error=False)
    assert "stopped early" not in str(ei.value)
    assert all(len(r.attempts) == 2 for r in ei.value.stage.results)


# ---------------------------------------------------------------- nothing partial, ever
BIG = os.urandom(6 * 1024 * 1024 + 17)


@pytest.mark.parametrize("fault", ["drop:3000000", "badlen:1000", "corrupt", "stall:2000000:1",
                                   "503", "slow:1.5"])
def test_nothing_partial_is_ever_visible(tmp_path, srv, fault):
    url = srv.add("/big", BIG, [fault] * 2, ranges=False)
    dst = tmp_path / "dst" / "big.dat"
    dst.parent.mkdir()
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                seen.append(dst.stat().st_size)
            except FileNotFoundError:
                pass

    w = threading.Thread(target=watch)
    w.start()
    try:
        with pytest.raises(StageError):
            transfer(Request("big", ((url, True),), str(dst),
                             expected=hashlib.sha256(BIG).hexdigest()),
                     Policy(attempts=2, backoff=0.01, max_backoff=0.01, timeout=0.5))
    finally:
        stop.set()
        w.join()
    assert seen == [] and os.listdir(dst.parent) == []
    srv.routes["/big"].faults.clear()  # without faults, the same transfer lands whole
    res = transfer(Request("big", ((url, True),), str(dst),
                           expected=hashlib.sha256(BIG).hexdigest()), Policy(attempts=1))
    assert res.success and dst.read_bytes() == BIG and os.listdir(dst.parent) == ["big.dat"]
