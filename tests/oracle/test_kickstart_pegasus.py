"""pegasus-kickstart's behaviours around the task: its -k/-K clock, its stderr messages,
records for what could not start, KICKSTART_METADATA and KICKSTART_INTEGRITY_DATA. Each
compared with pegasus-kickstart's C source and judged by Pegasus's parsers."""

from __future__ import annotations

import os
import sys
import time

from tests.conftest import Fluxlite, sha256_of
from tests.oracle.test_kickstart import SH, ks, script

IGNORE_TERM = "trap '' TERM; sleep 10"


def test_k_and_K_say_what_they_send(fl: Fluxlite) -> None:
    r = ks(fl, "-n", "tr", "-k", "1", "-K", "1", SH, "-c", IGNORE_TERM)
    assert r.rc == 14, r.stderr
    lines = r.stderr.splitlines()
    assert "Job timed out, sending SIGTERM" in lines
    assert "Job still running, sending SIGKILL" in lines
    assert lines.index("Job timed out, sending SIGTERM") < lines.index(
        "Job still running, sending SIGKILL")
    assert r.yaml()["mainjob"]["status"]["signalled_signal"] == 9
    r.rejected()
    r2 = ks(fl, "-k", "1", "-K", "5", SH, "-c", "sleep 10", name="term")
    assert r2.rc == 14
    assert "Job timed out, sending SIGTERM" in r2.stderr
    assert "sending SIGKILL" not in r2.stderr  # the TERM was enough
    r3 = ks(fl, "/bin/true", name="quiet")
    assert r3.rc == 0 and r3.stderr == ""


def test_the_clock_spans_the_prejob_and_cleanup_still_runs(fl: Fluxlite) -> None:
    env = {"KICKSTART_PREJOB": "/bin/sleep 30",
           "KICKSTART_CLEANUP": f"/bin/touch {fl.tmp / 'cleanup.done'}"}
    t0 = time.monotonic()
    r = ks(fl, "-n", "tr", "-k", "1", "-K", "1", SH, "-c", f"touch {fl.tmp / 'main.ran'}",
           env=env)
    assert time.monotonic() - t0 < 10
    assert r.rc == 14, r.stderr
    assert "Job timed out, sending SIGTERM" in r.stderr
    assert not (fl.tmp / "main.ran").exists(), "the main job must not run after the alarm"
    assert (fl.tmp / "cleanup.done").exists()
    doc = r.yaml()
    assert doc["prejob"]["status"]["signalled_signal"] == 15
    assert doc["cleanup"]["status"]["regular_exitcode"] == 0
    r.rejected()


def test_a_prejob_stopped_by_k_leaves_no_mainjob_entry(fl: Fluxlite) -> None:
    """The main job never started: the record has no mainjob (pegasus-kickstart's
    test_timeout_pre), and Pegasus's parser still reads it as one failed invocation."""
    r = ks(fl, "-k", "1", "/bin/echo", "Main job", env={"KICKSTART_PREJOB": "/bin/sleep 5"})
    assert r.rc == 14, r.stderr
    assert "sending SIGTERM" in r.stderr
    assert "  mainjob:" not in r.out.read_text()
    doc = r.yaml()
    assert "mainjob" not in doc
    assert doc["prejob"]["status"]["signalled_signal"] == 15
    inv = r.inv()
    assert inv["hostname"] and inv["invocation"]
    r.rejected()


def test_a_main_job_that_was_never_tried_has_no_mainjob_entry(fl: Fluxlite) -> None:
    failed = ks(fl, "/bin/echo", "Main job", env={"KICKSTART_PREJOB": "/bin/false"},
                name="false")
    assert failed.rc == 1
    assert "mainjob" not in failed.yaml() and failed.yaml()["prejob"]
    failed.rejected()
    late = ks(fl, "-k", "1", "/bin/echo", "Main job", name="setup",
              env={"KICKSTART_SETUP": "/bin/sleep 5", "KICKSTART_PREJOB": "/bin/echo Pre"})
    assert late.rc == 14
    assert "mainjob" not in late.yaml() and "prejob" not in late.yaml()
    late.rejected()
    missing = ks(fl, str(fl.tmp / "no-such-program"), name="missing")  # tried: it is reported
    assert missing.rc == 127
    assert "No such file or directory" in missing.yaml()["mainjob"]["status"]["failure_error"]


def test_the_clock_starts_with_kickstart_not_with_the_main_job(fl: Fluxlite) -> None:
    # setup takes 1.5 s of a 2 s limit: the main job has 0.5 s left, not 2
    env = {"KICKSTART_SETUP": "/bin/sleep 1.5"}
    t0 = time.monotonic()
    r = ks(fl, "-k", "2", "-K", "1", SH, "-c", "sleep 10", env=env)
    elapsed = time.monotonic() - t0
    assert r.rc == 14, r.stderr
    assert elapsed < 4.5, elapsed
    assert r.yaml()["mainjob"]["duration"] < 1.5


def test_a_postjob_is_skipped_after_the_alarm(fl: Fluxlite) -> None:
    env = {"KICKSTART_POSTJOB": f"/bin/touch {fl.tmp / 'post.ran'}"}
    r = ks(fl, "-k", "1", "-K", "1", SH, "-c", "sleep 10", env=env)
    assert r.rc == 14
    assert not (fl.tmp / "post.ran").exists()


def test_a_workdir_that_cannot_be_entered_still_gives_a_record(fl: Fluxlite) -> None:
    r = ks(fl, "-n", "tr", "-w", str(fl.tmp / "no" / "such"), "/bin/true")
    assert r.rc == 127
    assert "cannot change to directory" in r.stderr and "No such file or directory" in r.stderr
    doc = r.yaml()
    assert doc["transformation"] == "tr"
    assert "environment" in doc and "limits" in doc
    r.rejected()
    (fl.tmp / "afile").write_text("x")
    r3 = ks(fl, "-w", str(fl.tmp / "no" / "such"), "-o", "out.txt", "/bin/true", name="named")
    assert r3.rc == 127
    assert not (fl.tmp / "out.txt").exists(), "-o is relative to a directory never entered"
    r2 = ks(fl, "-w", str(fl.tmp / "afile"), "/bin/true", name="notdir")
    assert r2.rc == 127 and "Not a directory" in r2.stderr
    r2.rejected()


def test_W_creates_the_directory(fl: Fluxlite) -> None:
    r = ks(fl, "-W", "made/here", SH, "-c", "pwd")
    assert r.rc == 0, r.stderr
    assert r.inv()["stdout"].strip() == str(fl.tmp / "made" / "here")


def test_w_resolves_a_relative_executable_in_the_directory(fl: Fluxlite) -> None:
    (fl.tmp / "sub").mkdir()
    script(fl.tmp / "sub" / "app.sh", "#!/bin/sh\necho in $(pwd)\n")
    r = ks(fl, "-n", "tr", "-w", "sub", "./app.sh")
    assert r.rc == 0, r.stderr
    assert r.inv()["stdout"] == f"in {fl.tmp / 'sub'}\n"
    assert r.yaml()["mainjob"]["executable"]["file_name"] == str(fl.tmp / "sub" / "app.sh")
    r.accepted()


def test_kickstart_metadata_lines_are_in_the_record(fl: Fluxlite) -> None:
    r = ks(fl, "-n", "tr", SH, "-c",
           'echo "user=me" >> "$KICKSTART_METADATA"; echo "foo=bar" >> "$KICKSTART_METADATA"')
    assert r.rc == 0, r.stderr
    meta = r.yaml()["files"]["metadata"]
    assert meta["data"] == "user=me\nfoo=bar\n"
    assert meta["size"] == len("user=me\nfoo=bar\n")
    assert os.path.basename(meta["temporary_name"]).startswith("ks.meta.")
    assert not os.path.exists(meta["temporary_name"]), "the side file is removed"
    r.accepted()
    assert "metadata" not in r.inv()["outputs"]


def test_kickstart_integrity_data_goes_into_files(fl: Fluxlite) -> None:
    integrity = f"{sys.executable} -m fluxlite integrity --generate-fullstat-yaml"
    body = ("echo one > a.dat; echo two > b.dat; "
            f"{integrity}='out.a=a.dat;;;out.b=b.dat'")
    r = ks(fl, "-n", "tr", "-s", "out.a=a.dat", SH, "-c", body)
    assert r.rc == 0, r.stderr
    files = r.yaml()["files"]
    assert list(files).count("out.a") == 1
    assert files["out.b"]["sha256"] == sha256_of(fl.tmp / "b.dat")
    assert files["out.b"]["output"] is True
    outputs = r.inv()["outputs"]
    for lfn, name in (("out.a", "a.dat"), ("out.b", "b.dat")):
        assert outputs[lfn].get_attribute_value("checksum.value") == sha256_of(fl.tmp / name)
    r.accepted()
    assert list(fl.wdbase.glob("ks.*")) == [], "side files are removed ($TMPDIR)"


def test_transfers_marked_generate_checksum_land_in_the_record(fl: Fluxlite) -> None:
    """A stage-in job as the planner writes it: pegasus-kickstart running pegasus-transfer
    with generate_checksum entries; their checksums reach the record (and so the .meta)."""
    import json

    src = fl.tmp / "src"
    src.mkdir()
    (src / "raw.dat").write_bytes(os.urandom(50_000))
    (src / "other.dat").write_bytes(b"no checksum asked")
    entries = [{"type": "transfer", "linkage": "input", "lfn": lfn, "id": i,
                "generate_checksum": gen,
                "src_urls": [{"site_label": "local", "url": f"file://{src}/{lfn}"}],
                "dest_urls": [{"site_label": "staging", "url": f"file://{fl.tmp}/{lfn}"}]}
               for i, (lfn, gen) in enumerate((("raw.dat", True), ("other.dat", False)), 1)]
    (fl.tmp / "stage_in.in").write_text(json.dumps(entries))
    r = ks(fl, "-n", "pegasus::transfer", "-N", "stage_in_1", sys.executable, "-m",
           "fluxlite", "transfer", "--threads", "2", "-f", "stage_in.in")
    assert r.rc == 0, r.stderr
    outputs = r.inv()["outputs"]
    assert sorted(outputs) == ["raw.dat"]
    assert outputs["raw.dat"].get_attribute_value("checksum.value") == sha256_of(
        src / "raw.dat")
    assert r.yaml()["files"]["raw.dat"]["size"] == 50_000
    r.accepted()


def test_files_that_cannot_be_stated_are_recorded_with_their_errno(fl: Fluxlite) -> None:
    """-S and -s name files that are not there: pegasus-kickstart records each with
    ``error: <errno>``, its lfn and its name, and Pegasus's parser reads the record."""
    r = ks(fl, "-n", "tr", "-S", "in.x=missing-in", "-s", "out.x=missing-out", "/bin/true")
    assert r.rc == 0, r.stderr
    files = r.yaml()["files"]
    for lfn, name in (("in.x", "missing-in"), ("out.x", "missing-out")):
        assert files[lfn]["error"] == 2 and files[lfn]["lfn"] == lfn
        assert files[lfn]["file_name"].endswith(name)
        assert "output" not in files[lfn]
    r.inv()
    r.accepted()
