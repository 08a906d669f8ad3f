"""`fluxlite run` staging from a real loopback HTTP server with injected faults, and
Pegasus .meta files in and out."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time

import pytest

from tests.conftest import parse_records, require_oracle, sha256_of
from tests.httpserver import FaultServer

FAST = {"attempts": 3, "backoff": 0.05, "max_backoff": 0.1, "timeout": 5}


@pytest.fixture
def srv():
    with FaultServer(max_requests=500) as s:
        yield s


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _job(fl, tmp_path, inputs, **kw):
    return fl.write_job({
        "executable": "/bin/true", "inputs": inputs, "staging": FAST,
        "records": {"kickstart": str(tmp_path / "ks.out"), "json": str(tmp_path / "rec.json")},
        **kw})


def test_every_fault_recovered_in_one_job(fl, srv, tmp_path):
    bodies = {k: os.urandom(200_000 + i) for i, k in enumerate("abcdef")}
    srv.add("/real-c", bodies["c"])
    inputs = [
        {"lfn": "a", "urls": [srv.add("/a", bodies["a"], ["503"])]},
        {"lfn": "b", "urls": [srv.add("/b", bodies["b"], ["drop:70000"])]},
        {"lfn": "c", "urls": [srv.add("/c", redirect="/real-c")]},
        {"lfn": "d", "urls": [srv.add("/d0", status=404), srv.add("/d", bodies["d"])]},
        {"lfn": "e", "urls": [srv.add("/e0", bodies["e"], ["corrupt"]),
                              srv.add("/e", bodies["e"])]},
        {"lfn": "f", "urls": [srv.add("/f", bodies["f"], ["slow:0.3"])]},
    ]
    for x in inputs:
        x["sha256"] = _sha(bodies[x["lfn"]])
    r = fl.run("run", str(_job(fl, tmp_path, inputs)))
    assert r.returncode == 0, r.stderr.decode()
    rec = json.loads((tmp_path / "rec.json").read_text())
    files = {t["lfn"]: t for t in rec["stage_in"][0]["transfers"]}
    assert all(files[k]["verified"] and files[k]["sha256"] == _sha(bodies[k]) for k in files)
    assert [a["success"] for a in files["a"]["attempts"]] == [False, True]
    assert len(files["b"]["attempts"]) == 1  # resumed with a range request
    assert srv.ranges("/b") == [None, "bytes=70000-"]
    assert [a["success"] for a in files["d"]["attempts"]] == [False, True]
    assert "checksum mismatch" in files["e"]["attempts"][0]["error"]
    ks = (tmp_path / "ks.out").read_text()
    assert "- transfer_attempts" in ks and "HTTP 404" in ks
    assert fl.leftover_workdirs() == []
    require_oracle()
    assert len(parse_records(tmp_path / "ks.out")) >= 1


def test_missing_everywhere_fails_with_71_before_the_task(fl, srv, tmp_path):
    job = _job(fl, tmp_path, [{"lfn": "x", "urls": [srv.add("/x", status=404),
                                                    srv.add("/y", status=410)]}],
               executable="/bin/sh", arguments=["-c", "touch ran"])
    t0 = time.monotonic()
    r = fl.run("run", str(job))
    assert r.returncode == 71
    assert time.monotonic() - t0 < 10
    assert b"PegasusLite: exitcode 71" in r.stderr
    assert srv.hits("/x") == 1 and srv.hits("/y") == 1  # permanent: not retried
    rec = json.loads((tmp_path / "rec.json").read_text())
    assert rec["failed_phase"] == "stage-in" and rec["task"] is None
    assert fl.leftover_workdirs() == []


def test_wrong_content_everywhere_is_an_integrity_failure(fl, srv, tmp_path):
    body = os.urandom(10_000)
    job = _job(fl, tmp_path, [{"lfn": "x", "sha256": _sha(body),
                               "urls": [srv.add("/x", body, ["corrupt"] * 9)]}])
    r = fl.run("run", str(job))
    assert r.returncode == 71
    rec = json.loads((tmp_path / "rec.json").read_text())
    assert "checksum mismatch" in rec["error"]
    assert rec["integrity"] and not rec["integrity"][0]["success"]


def test_credentials_never_reach_the_records(fl, srv, tmp_path):
    body = b"secret data"
    url = srv.add("/s", body, ["503"]).replace("http://", "http://user:pa55word@")
    job = _job(fl, tmp_path, [{"lfn": "s", "urls": [url + "?sig=xyz"]}])
    r = fl.run("run", str(job))
    assert r.returncode == 0, r.stderr.decode()
    for f in ("ks.out", "rec.json"):
        text = (tmp_path / f).read_text()
        assert "pa55word" not in text and "xyz" not in text, f
    assert b"pa55word" not in r.stderr


def test_term_during_a_stalled_download_ends_promptly(fl, srv, tmp_path):
    job = _job(fl, tmp_path, [{"lfn": "x", "urls": [srv.add("/x", b"x" * 1000, ["slow:30"])]}],
               staging={"timeout": 60})
    p = fl.popen("run", str(job))
    deadline = time.monotonic() + 10
    while srv.hits("/x") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=20)
    assert time.monotonic() - t0 < 3
    assert p.returncode == 128 + signal.SIGTERM
    assert json.loads((tmp_path / "rec.json").read_text())["failed_phase"] == "stage-in"
    assert fl.leftover_workdirs() == []


def test_unknown_scheme_is_a_validation_error(fl, tmp_path):
    job = _job(fl, tmp_path, [{"lfn": "x", "urls": ["gsiftp://host/x"]}])
    r = fl.run("run", str(job))
    assert r.returncode == 2
    assert b"inputs[0].urls[0]: unsupported scheme 'gsiftp'" in r.stderr


# ------------------------------------------------------------------------- .meta files
def _meta(path, entries: dict[str, str]) -> None:
    path.write_text(json.dumps([
        {"_type": "file", "_id": lfn,
         "_attributes": {"checksum.type": "sha256", "checksum.value": sha,
                         "checksum.timing": "0.0"}} for lfn, sha in entries.items()]))


def test_meta_file_gives_expected_checksums(fl, srv, tmp_path):
    body = os.urandom(5000)
    url = srv.add("/m", body)
    meta = tmp_path / "job.in.meta"
    _meta(meta, {"m": _sha(body)})
    job = _job(fl, tmp_path, [{"lfn": "m", "urls": [url]}], meta=[str(meta)])
    r = fl.run("run", str(job))
    assert r.returncode == 0, r.stderr.decode()
    rec = json.loads((tmp_path / "rec.json").read_text())
    assert rec["stage_in"][0]["transfers"][0]["verified"] is True

    _meta(meta, {"m": "0" * 64})
    r = fl.run("run", str(job))
    assert r.returncode == 71
    err = r.stderr.decode()
    assert "checksum mismatch" in err and "0" * 64 in err and _sha(body) in err


def test_write_meta_lets_a_downstream_job_verify(fl, data, tmp_path):
    out_dir = tmp_path / "storage"
    meta = tmp_path / "up.out.meta"
    up = fl.write_job({
        "executable": "/bin/sh", "arguments": ["-c", "head -c 70000 /dev/urandom > result.dat"],
        "outputs": [{"lfn": "result.dat", "urls": [f"file://{out_dir}/result.dat"]}],
        "write_meta": str(meta), "records": {"kickstart": None}}, name="up.json")
    r = fl.run("run", str(up))
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(meta.read_text())
    (entry,) = doc
    assert entry["_id"] == "result.dat" and entry["_type"] == "file"
    attrs = entry["_attributes"]
    assert attrs["checksum.type"] == "sha256"
    assert attrs["checksum.value"] == sha256_of(out_dir / "result.dat")
    assert attrs["size"] == "70000"
    assert all(isinstance(v, str) for v in attrs.values())  # Pegasus keeps strings

    down = fl.write_job({
        "executable": "/bin/true", "meta": [str(meta)],
        "inputs": [{"lfn": "result.dat", "urls": [f"file://{out_dir}/result.dat"]}],
        "records": {"kickstart": None}}, name="down.json")
    r = fl.run("run", str(down))
    assert r.returncode == 0, r.stderr.decode()
    with open(out_dir / "result.dat", "r+b") as fh:  # corrupted in storage
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    r = fl.run("run", str(down))
    assert r.returncode == 71 and b"checksum mismatch" in r.stderr
