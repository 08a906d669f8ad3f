"""s3:// stage-in and stage-out against a real S3-compatible server on loopback (moto)."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from tests.conftest import sha256_of
from tests.httpserver import FaultServer

pytestmark = pytest.mark.s3

boto3 = pytest.importorskip("boto3", reason="boto3 is not installed (the s3 extra)")
moto_server = pytest.importorskip("moto.server",
                                  reason="moto[server] is not installed (the test extra)")

BUCKET = "fluxlite-test"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
         "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {**CREDS, "FLUXLITE_S3_ENDPOINT_URL": f"http://{host}:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import fluxlite.staging as staging

    staging._INSTANCES.pop("s3", None)  # a client made for another endpoint
    client = boto3.client("s3", endpoint_url=env["FLUXLITE_S3_ENDPOINT_URL"])
    client.create_bucket(Bucket=BUCKET)
    try:
        yield client, env
    finally:
        staging._INSTANCES.pop("s3", None)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def _get(client, key: str) -> bytes | None:
    try:
        return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    except client.exceptions.NoSuchKey:
        return None


def test_job_stages_in_and_out_through_s3(s3, fl, tmp_path):
    client, env = s3
    body = os.urandom(300_000)
    client.put_object(Bucket=BUCKET, Key="in/data with space.bin", Body=body)
    job = fl.write_job({
        "executable": "/bin/cp", "arguments": ["in.bin", "out.bin"],
        "inputs": [{"lfn": "in.bin", "urls": [f"s3://{BUCKET}/in/data%20with%20space.bin"],
                    "sha256": hashlib.sha256(body).hexdigest()}],
        "outputs": [{"lfn": "out.bin", "urls": [f"s3://{BUCKET}/out/out.bin"]}],
        "records": {"kickstart": None, "json": str(tmp_path / "rec.json")},
    })
    r = fl.run("run", str(job), env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert _get(client, "out/out.bin") == body
    rec = json.loads((tmp_path / "rec.json").read_text())
    assert rec["stage_out"][0]["transfers"][0]["sha256"] == hashlib.sha256(body).hexdigest()


def test_pegasus_style_url_with_profile_part(s3, tmp_path):
    from fluxlite.staging.base import Policy, Request, transfer

    client, _env = s3
    client.put_object(Bucket=BUCKET, Key="peg/x", Body=b"pegasus")
    os.environ["AWS_CONFIG_FILE"] = str(tmp_path / "config")
    (tmp_path / "config").write_text("[profile alice]\nregion = us-east-1\n"
                                      "aws_access_key_id = testing\n"
                                      "aws_secret_access_key = testing\n")
    try:
        res = transfer(Request("x", ((f"s3://alice@amazon/{BUCKET}/peg/x", True),),
                               str(tmp_path / "x")), Policy(attempts=1))
    finally:
        os.environ.pop("AWS_CONFIG_FILE")
    assert res.success and (tmp_path / "x").read_bytes() == b"pegasus"


def test_missing_object_is_permanent(s3, tmp_path):
    from fluxlite.errors import StageError
    from fluxlite.staging.base import Policy, Request, transfer

    req = Request("m", ((f"s3://{BUCKET}/no/such/key", True),), str(tmp_path / "m"))
    with pytest.raises(StageError) as ei:
        transfer(req, Policy(attempts=3, backoff=5))
    assert len(ei.value.result.attempts) == 1 and "NoSuchKey" in str(ei.value)
    res = transfer(Request("m", req.sources, req.dst, optional=True), Policy(attempts=3))
    assert res.skipped


def test_multipart_upload_is_aborted_on_failure_then_completed(s3, tmp_path):
    """A source that drops mid-way after a part was uploaded: nothing visible, no upload
    left behind; the retry then uploads the whole object."""
    from fluxlite.staging import s3 as s3mod
    from fluxlite.staging.base import Policy, Request, transfer

    client, _env = s3
    body = os.urandom(2 * s3mod.PART_SIZE + 12345)
    key = "big/object.bin"
    seen_during: list[object] = []
    with FaultServer(max_requests=20) as srv:
        url = srv.add("/big", body, [f"drop:{s3mod.PART_SIZE + 4 * 1024 * 1024}"],
                      ranges=False)
        real_abort = s3mod._S3Writer.abort

        def abort(self):  # look at the store at the moment of failure, then really abort
            seen_during.append(self._upload_id is not None)
            seen_during.append(_get(client, key))
            real_abort(self)

        s3mod._S3Writer.abort = abort
        try:
            res = transfer(Request("big", ((url, True),), f"s3://{BUCKET}/{key}"),
                           Policy(attempts=2, backoff=0.01, max_backoff=0.01))
        finally:
            s3mod._S3Writer.abort = real_abort
    assert seen_during == [True, None]  # a multipart upload existed; the object did not
    assert [a.success for a in res.attempts] == [False, True]
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
    assert _get(client, key) == body


def test_transfer_command_to_s3_and_remove(s3, fl, data):
    client, env = s3
    src = data / "a.txt"
    src.write_bytes(b"hello s3")
    lst = [{"type": "transfer", "lfn": "a.txt", "src_urls": [{"url": f"file://{src}"}],
            "dest_urls": [{"url": f"s3://{BUCKET}/cmd/a.txt"}]}]
    p = fl.tmp / "list.json"
    p.write_text(json.dumps(lst))
    r = fl.run("transfer", str(p), env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert _get(client, "cmd/a.txt") == b"hello s3"
    p.write_text(json.dumps([{"type": "remove", "target": {"url": f"s3://{BUCKET}/cmd",
                                                           "recursive": True}}]))
    r = fl.run("transfer", str(p), env=env)
    assert r.returncode == 0, r.stderr.decode()
    assert _get(client, "cmd/a.txt") is None
    assert sha256_of(src)  # the source is untouched


def test_a_trickling_s3_source_fails_its_attempt(fl, tmp_path):
    # the S3 endpoint is the fault-injecting server: one byte at a time, far below min_rate
    with FaultServer() as srv:
        srv.add(f"/{BUCKET}/slow.bin", os.urandom(5000), ["trickle:1000:0.02"] * 5)
        job = fl.write_job({
            "executable": "/bin/true", "inputs": [{"lfn": "f", "urls": [f"s3://{BUCKET}/slow.bin"]}],
            "staging": {"min_rate": 1000, "rate_window": 1, "attempts": 1},
            "records": {"kickstart": None, "json": str(tmp_path / "rec.json")}})
        p = fl.run("run", str(job), env={**CREDS, "FLUXLITE_S3_ENDPOINT_URL": srv.base})
    err = p.stderr.decode()
    assert p.returncode == 71, err
    assert "too slow" in err and "Traceback" not in err
    att = json.loads((tmp_path / "rec.json").read_text())["stage_in"][0]["transfers"][0]
    assert "too slow" in att["attempts"][0]["error"]
