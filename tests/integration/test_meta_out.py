"""A .meta file that cannot be written fails the job cleanly."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Fluxlite


def test_unwritable_meta_file(fl: Fluxlite, tmp_path: Path) -> None:
    # the task puts a file where the directory should be: known only after the task ran
    # (validate and run refuse a blocker that is there before, see tests/integration/hostile)
    job = {"executable": "/bin/sh",
           "arguments": ["-c", f"echo x > out; echo blocker > {tmp_path}/blocker"],
           "outputs": [{"lfn": "out", "urls": [f"file://{tmp_path}/res/out"]}],
           "write_meta": str(tmp_path / "blocker" / "job.meta")}
    p = fl.run("run", str(fl.write_job(job)))
    err = p.stderr.decode()
    assert p.returncode == 71, err
    assert "cannot write the .meta file" in err and "Traceback" not in err
    assert fl.leftover_workdirs() == []


def test_meta_file_written(fl: Fluxlite, tmp_path: Path) -> None:
    import json

    job = {"executable": "/bin/sh", "arguments": ["-c", "echo x > out"],
           "outputs": [{"lfn": "out", "urls": [f"file://{tmp_path}/res/out"]}],
           "write_meta": str(tmp_path / "job.meta")}
    p = fl.run("run", str(fl.write_job(job)))
    assert p.returncode == 0, p.stderr.decode()
    (entry,) = json.loads((tmp_path / "job.meta").read_text())
    assert entry["_id"] == "out" and entry["_attributes"]["checksum.type"] == "sha256"
    assert [f.name for f in tmp_path.iterdir() if ".tmp-" in f.name] == []
