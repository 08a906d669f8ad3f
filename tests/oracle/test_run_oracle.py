"""Records of `fluxlite run` judged by Pegasus's own parsers (pegasus-monitord, pegasus-exitcode)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Fluxlite, judge, parse_records, sha256_of
from tests.jobs import example_job, script


def run_to_files(fl: Fluxlite, job: dict, tmp_path: Path, name: str = "job") -> tuple[int, Path]:
    """Run as a batch system would: stdout to NAME.out, stderr to NAME.err."""
    out, err = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
    p = fl.run("run", str(fl.write_job(job)))
    out.write_bytes(p.stdout)
    err.write_bytes(p.stderr)
    return p.returncode, out


def invocations(out: Path) -> list[dict]:
    recs = parse_records(out)
    assert recs, "the parser rejected the file"
    return [r for r in recs if r.get("invocation")]


def test_success_is_accepted_with_outputs_and_checksums(fl: Fluxlite, data: Path,
                                                        tmp_path: Path) -> None:
    res = tmp_path / "res"
    rc, out = run_to_files(fl, example_job(data, res), tmp_path)
    assert rc == 0
    judge(out)  # raises JobFailed otherwise
    (inv,) = invocations(out)
    assert inv["exitcode"] == 0 and inv["raw"] == 0
    assert inv["transformation"] == "test::task:1.0" and inv["derivation"] == "ID0000001"
    outs = inv["outputs"]
    assert set(outs) == {"f.c", "f.d"}
    for lfn in ("f.c", "f.d"):
        attrs = outs[lfn]._attributes
        assert attrs["checksum.type"] == "sha256"
        assert attrs["checksum.value"] == sha256_of(res / lfn)
    multipart = [r for r in parse_records(out) if r.get("multipart")]
    assert any("transfer_attempts" in r for r in multipart)
    assert any("integrity_summary" in r for r in multipart)


def test_failing_task_is_judged_failed(fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    script(data / "fail.sh", "#!/bin/sh\nexit 3\n")
    rc, out = run_to_files(fl, {"executable": str(data / "fail.sh")}, tmp_path)
    assert rc == 3
    (inv,) = invocations(out)
    assert inv["exitcode"] == 3 and inv["raw"] == 3 << 8
    from Pegasus.exitcode import JobFailed

    with pytest.raises(JobFailed):
        judge(out)


def test_killed_task_is_judged_failed(fl: Fluxlite, tmp_path: Path) -> None:
    rc, out = run_to_files(fl, {"executable": "/bin/sh", "arguments": ["-c", "kill -TERM $$"]},
                           tmp_path)
    assert rc == 128 + 15
    (inv,) = invocations(out)
    assert inv["signal"] == 15 and inv["raw"] == 15
    from Pegasus.exitcode import JobFailed

    with pytest.raises(JobFailed):
        judge(out)


def test_infrastructure_failure_is_judged_failed(fl: Fluxlite, data: Path, tmp_path: Path) -> None:
    job = {"executable": "/bin/true", "inputs": [{"lfn": "x", "urls": [f"file://{data}/none"]}]}
    rc, out = run_to_files(fl, job, tmp_path)
    assert rc == 71
    (inv,) = invocations(out)  # still a parseable record, with the failure in it
    from Pegasus.exitcode import JobFailed

    with pytest.raises(JobFailed):
        judge(out)
    assert "PegasusLite: exitcode 71" in (tmp_path / "job.err").read_text()


def test_control_characters_and_invalid_utf8_still_parse(fl: Fluxlite, data: Path,
                                                         tmp_path: Path) -> None:
    noise = data / "noise.py"
    noise.write_text(
        "import sys\n"
        "sys.stdout.buffer.write(bytes(range(256)) * 3 + b'\\xff\\xfe\\xc3(\\n\\x1b[31m\\r\\n')\n"
        "sys.stdout.buffer.write('---------------pegasus-multipart\\n- invocation: x\\n'.encode())\n"
        "sys.stderr.buffer.write(b'\\x00\\x85 \\xe2\\x80\\xa8 \\xef\\xbb\\xbf tail\\n')\n")
    import sys

    rc, out = run_to_files(fl, {"executable": sys.executable, "arguments": [str(noise)]},
                           tmp_path)
    assert rc == 0
    (inv,) = invocations(out)
    assert inv["exitcode"] == 0
    assert "pegasus-multipart" in inv["stdout"]
    judge(out)


def test_large_output_is_bounded(fl: Fluxlite, tmp_path: Path) -> None:
    job = {"executable": "/bin/sh", "arguments": ["-c", "yes line | head -c 3000000"],
           "records": {"stdio_bytes": 1000}}
    rc, out = run_to_files(fl, job, tmp_path)
    assert rc == 0
    assert out.stat().st_size < 60_000
    assert "data_truncated: true" in out.read_text()
    judge(out)


def test_outputs_named_like_parser_keys_keep_the_record_parseable(
        fl: Fluxlite, tmp_path: Path) -> None:
    """Pegasus's parser passes `files` as keyword arguments and shares it with stdio."""
    res = tmp_path / "res"
    res.mkdir()
    job = {"executable": "/bin/sh", "arguments": ["-c", "echo a > self; echo b > stdout; "
                                                  "echo c > f.c"],
           "outputs": [{"lfn": n, "urls": [f"file://{res}/{n}"]} for n in ("self", "stdout",
                                                                            "f.c")]}
    rc, out = run_to_files(fl, job, tmp_path)
    assert rc == 0
    (inv,) = invocations(out)
    assert set(inv["outputs"]) == {"f.c"}
    assert (res / "self").read_text() == "a\n" and (res / "stdout").read_text() == "b\n"
    judge(out)
