"""A job's description read into the transfer requests of its staging phases
(fluxlite.staging.job), on real files in a worker directory."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import pytest

from fluxlite.errors import SpecError, StageError
from fluxlite.spec import JobSpec
from fluxlite.staging import job as staging
from fluxlite.staging.phases import run_transfers

SHA = "a" * 64


def spec(**kw: object) -> JobSpec:
    doc: dict[str, object] = {"fluxlite": 1, "executable": "/bin/true", "inputs": [],
                              "outputs": [], "checkpoints": []}
    doc.update(kw)
    return JobSpec.from_dict(doc)


def meta(path: Path, **sums: str) -> str:
    path.write_text(json.dumps([{"_type": "file", "_id": lfn, "_attributes": {
        "checksum.type": "sha256", "checksum.value": v}} for lfn, v in sums.items()]))
    return str(path)


def test_the_policy_is_the_jobs_staging_section() -> None:
    p = staging.policy(spec(staging={"attempts": 7, "backoff": 2, "max_backoff": 9,
                                     "timeout": 11, "min_rate": 0, "rate_window": 5}))
    assert (p.attempts, p.backoff, p.max_backoff, p.timeout, p.min_rate, p.rate_window) == (
        7, 2, 9, 11, 0, 5)


def test_inputs_and_the_staged_executable_go_into_the_worker_directory(tmp_path: Path) -> None:
    s = spec(executable={"lfn": "run.sh", "urls": ["file:///src/run.sh"], "sha256": SHA},
             inputs=[{"lfn": "d/a", "urls": ["file:///src/a", "https://m/a"], "symlink": True},
                     {"lfn": "b", "urls": ["file:///src/b"], "optional": True}],
             meta=[meta(tmp_path / "in.meta", b="b" * 64)])
    wd = str(tmp_path / "wd")
    reqs = {r.lfn: r for r in staging.input_requests(s, wd, staging.expected_hashes(s))}
    assert list(reqs) == ["d/a", "b", "run.sh"]
    a, b, exe = reqs["d/a"], reqs["b"], reqs["run.sh"]
    assert a.dst == os.path.join(wd, "d/a") and a.symlink and not a.optional
    assert [u for u, _ in a.sources] == ["file:///src/a", "https://m/a"]
    assert a.expected is None and b.expected == "b" * 64 and b.optional  # from the .meta file
    assert exe.expected == SHA and exe.executable and not a.executable  # the one the task runs


def test_an_input_named_as_the_executable_is_made_executable(tmp_path: Path) -> None:
    s = spec(executable="tool", inputs=[{"lfn": "tool", "urls": ["file:///src/tool"]}])
    (req,) = staging.input_requests(s, str(tmp_path), {})
    assert req.executable


def test_inputs_no_checksum_covers_are_refused_only_when_integrity_is_required(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inputs = [{"lfn": "a", "urls": ["file:///d/a"]}, {"lfn": "b", "urls": ["file:///d/b"]},
              {"lfn": "c", "urls": ["file:///d/c"], "sha256": SHA}]
    m = meta(tmp_path / "in.meta", a=SHA)
    lax = spec(inputs=inputs, meta=[m])
    missing = staging.unverified(lax, staging.expected_hashes(lax))
    assert missing == ["b"]
    with caplog.at_level(logging.INFO, logger="fluxlite"):
        staging.check_unverified(lax, missing)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]  # .meta files were given
    strict = spec(inputs=inputs, meta=[m], integrity="required")
    with pytest.raises(SpecError, match='integrity "required": no checksum for b'):
        staging.check_unverified(strict, staging.unverified(strict, {"a": SHA}))
    staging.check_unverified(strict, [])  # nothing unverified: nothing to refuse


def test_checkpoints_come_in_when_they_exist_and_leave_when_the_task_left_them(
        tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    s = spec(checkpoints=[{"lfn": "state", "url": "file:///persist/state"},
                          {"lfn": "gone", "url": "file:///persist/gone"},
                          {"lfn": "escape", "url": "file:///persist/escape"}])
    ins = staging.checkpoint_requests(s, str(wd))
    assert [(r.lfn, r.dst, r.optional) for r in ins] == [
        ("state", str(wd / "state"), True), ("gone", str(wd / "gone"), True),
        ("escape", str(wd / "escape"), True)]
    (wd / "state").write_text("x")
    (tmp_path / "outside").write_text("secret")
    (wd / "escape").symlink_to(tmp_path / "outside")
    outs, refused = staging.checkpoint_out_requests(s, str(wd))
    assert [(r.lfn, r.dst, r.confine, r.fsync) for r in outs] == [
        ("state", "file:///persist/state", str(wd), True)]
    assert isinstance(refused, StageError) and refused.lfn == "escape"


def test_outputs_found_missing_and_refused(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    s = spec(outputs=[{"lfn": "o", "urls": ["file:///r/o", "file:///s/o"]},
                      {"lfn": "req", "urls": ["file:///r/req"]},
                      {"lfn": "opt", "urls": ["file:///r/opt"], "optional": True},
                      {"lfn": "fifo", "urls": ["file:///r/fifo"]},
                      {"lfn": "later", "urls": ["file:///r/later"]}])
    (wd / "o").write_text("out")
    os.mkfifo(wd / "fifo")
    (wd / "later").write_text("out")
    out = staging.output_requests(s, str(wd))
    assert out.found == [("o", str(wd / "o")), ("later", str(wd / "later"))]
    assert [(r.lfn, r.dst, r.fallback_dsts) for r in out.requests] == [
        ("o", "file:///r/o", ("file:///s/o",)), ("later", "file:///r/later", ())]
    assert out.missing == ["req"]  # the optional one is not missed
    assert out.refused is not None and out.refused.lfn == "fifo"


def test_verifications_of_a_phase(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"data")
    good = hashlib.sha256(b"data").hexdigest()
    s = spec(inputs=[{"lfn": "a", "urls": [src.as_uri()], "sha256": good},
                     {"lfn": "b", "urls": [src.as_uri()]}])
    wd = tmp_path / "wd"
    wd.mkdir()
    st = run_transfers("stage-in", staging.input_requests(s, str(wd), {}), staging.policy(s))
    (v,) = staging.verifications(st)  # b had no checksum to be checked against
    assert (v.lfn, v.expected, v.success) == ("a", good, True)
