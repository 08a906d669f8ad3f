"""fluxlite stats on records whose figures are known: pegasus-kickstart's own records, and
cluster records written by the cluster's record functions."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from fluxlite.record.host import iso
from tests.conftest import SAMPLES
from tests.stats_support import cluster_output, synthetic_cluster


def stats(*args: str | Path, cwd: Path | None = None) -> tuple[int, Any, str]:
    p = subprocess.run([sys.executable, "-m", "fluxlite", "stats", "--json", *map(str, args)],
                       capture_output=True, timeout=60, cwd=cwd)
    out = json.loads(p.stdout) if p.returncode == 0 else None
    return p.returncode, out, p.stderr.decode()


def close(a: Any, b: Any, path: str = "") -> None:
    """Every number of a equals that of b (floats to 1e-9 relative), and no key is missing."""
    if isinstance(b, dict):
        assert isinstance(a, dict) and set(a) >= set(b), (path, a, b)
        for k, v in b.items():
            close(a[k], v, f"{path}.{k}")
    elif isinstance(b, float) and not isinstance(a, str):
        assert a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (path, a, b)
    else:
        assert a == b, (path, a, b)


def nearest_rank(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[max(0, math.ceil(q * len(v)) - 1)]


def dist(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values),
            "mean": sum(values) / len(values), "p95": nearest_rank(values, 0.95),
            "max": max(values)}


def _load_sample(path: Path) -> tuple[dict[str, Any], list[str]]:
    text = path.read_text()
    before, _, rest = text.partition("- invocation:")
    return yaml.safe_load("- invocation:" + rest)[0], before.splitlines()


def test_the_kickstart_samples_every_number() -> None:
    rc, got, err = stats(SAMPLES)
    assert rc == 0, err
    recs = {p.name: _load_sample(p) for p in sorted(SAMPLES.glob("*.yml"))}

    def epoch(v: Any) -> float:
        # a string once Pegasus's parser was imported in this process: it changes PyYAML's
        # timestamps
        return (v if isinstance(v, datetime) else datetime.fromisoformat(v)).timestamp()

    starts = [epoch(r["start"]) for r, _ in recs.values()]
    ends = [epoch(r["start"]) + float(r["duration"]) for r, _ in recs.values()]
    failed = {n: r for n, (r, _) in recs.items() if r["mainjob"]["status"]["raw"] != 0}
    # the record killed by the -k timeout says so before it (pegasus-kickstart's line)
    timed_out = [n for n, (_, before) in recs.items() if any("timed out" in b for b in before)]
    assert timed_out == ["timeout.yml"]
    exp_summary = {
        "tasks": 3, "attempts": 3, "succeeded": 3 - len(failed), "failed": len(failed),
        "retries": 0, "signalled": 0, "timed_out": 1, "infrastructure": 0,
        "wall_s": max(ends) - min(starts),
        "cumulative_s": sum(float(r["duration"]) for r, _ in recs.values()),
        "badput_s": sum(float(r["duration"]) for r in failed.values()),
        "bytes_in": 0, "bytes_out": 0, "exited": 1, "failed_attempts": len(failed),
        "first_start": "2026-11-22T07:57:49.850+00:00",
        "last_end": "2026-11-22T07:57:50.868+00:00", "stage_in_s": 0.0, "stage_out_s": 0.0,
        "throughput_in_mb_s": None, "throughput_out_mb_s": None, "not_run": 0,
        # sha256 of the output file in ok.yml
        "integrity_s": sum(float(f.get("checksum_timing", 0)) for r, _ in recs.values()
                           for f in (r.get("files") or {}).values())}
    close(got["summary"], exp_summary)
    assert set(got["summary"]) == set(exp_summary)  # every number of it checked
    exp_tx = {}
    for r, _ in recs.values():
        mj = r["mainjob"]
        u = mj["usage"]
        runtime = float(mj["duration"])
        exp_tx[r["transformation"]] = {
            "count": 1, "failed": int(mj["status"]["raw"] != 0),
            "runtime_s": dist([runtime]),
            "cpu_utilization": (float(u["utime"]) + float(u["stime"])) / runtime,
            "peak_rss_kb": {"max": u["maxrss"], "median": u["maxrss"]}}
    close(got["transformations"], exp_tx)
    assert set(got["transformations"]) == set(exp_tx)
    # no hostname in these records: the machine's node name is the host
    assert got["hosts"] == {"node01": {"count": 3, "failed": 2, "busy_s": pytest.approx(
        exp_summary["cumulative_s"])}}


def test_text_and_csv_say_the_same(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "fluxlite", "stats", str(SAMPLES)],
                       capture_output=True, timeout=60)
    assert p.returncode == 0
    text = p.stdout.decode()
    assert "tasks" in text and "3 (1 succeeded, 2 failed)" in text
    assert "diamond::findrange:4.0" in text and "node01" in text
    p = subprocess.run([sys.executable, "-m", "fluxlite", "stats", "--csv", str(SAMPLES)],
                       capture_output=True, timeout=60)
    blocks = p.stdout.decode().split("\n\n")
    import csv

    summary = dict(csv.reader(blocks[0].splitlines()))
    assert summary["tasks"] == "3" and summary["timed_out"] == "1"
    rows = list(csv.DictReader(blocks[1].splitlines()))
    assert {r["transformation"] for r in rows} == {"diamond::findrange:4.0",
                                                   "diamond::analyze:4.0",
                                                   "diamond::preprocess:4.0"}
    assert list(csv.reader(blocks[2].splitlines()))[1][:3] == ["node01", "3", "2"]


def _expected_cluster(doc: dict[str, Any]) -> dict[str, Any]:
    """The figures of a cluster's JSON record, computed from it directly."""
    atts = [(t, a) for t in doc["tasks"] for a in t["attempts"]]
    last = [t["attempts"][-1] for t in doc["tasks"] if t["attempts"]]
    bad = [a for _, a in atts if a["exit_code"] != 0]
    starts = [a["start_epoch"] for _, a in atts]
    ends = [a["start_epoch"] + a["duration"] for _, a in atts]
    tx: dict[str, Any] = {}
    for name in {t["name"] for t, _ in atts}:
        mine = [a for t, a in atts if t["name"] == name]
        rss = [a["rusage"]["maxrss"] for a in mine]
        tx[name] = {"count": len(mine), "failed": sum(a["exit_code"] != 0 for a in mine),
                    "runtime_s": dist([a["duration"] for a in mine]),
                    "cpu_utilization": sum(a["rusage"]["utime"] + a["rusage"]["stime"]
                                           for a in mine) / sum(a["duration"] for a in mine),
                    "peak_rss_kb": {"max": max(rss), "median": statistics.median(rss)}}
    hosts: dict[str, Any] = {}
    for _, a in atts:
        h = hosts.setdefault(a["host"], {"count": 0, "failed": 0, "busy_s": 0.0})
        h["count"] += 1
        h["failed"] += a["exit_code"] != 0
        h["busy_s"] += a["duration"]
    return {"summary": {
        "tasks": len(last), "attempts": len(atts),
        "succeeded": sum(a["exit_code"] == 0 for a in last),
        "failed": sum(a["exit_code"] != 0 for a in last), "retries": len(atts) - len(last),
        "signalled": 0, "timed_out": 0, "infrastructure": 0,
        "wall_s": max(ends) - min(starts), "cumulative_s": sum(a["duration"] for _, a in atts),
        "badput_s": sum(a["duration"] for a in bad), "bytes_in": 0, "bytes_out": 0,
        "exited": sum(a["exit_code"] != 0 for a in last), "failed_attempts": len(bad),
        "first_start": iso(min(starts)), "last_end": iso(max(ends)), "stage_in_s": 0.0,
        "stage_out_s": 0.0, "throughput_in_mb_s": None, "throughput_out_mb_s": None,
        "integrity_s": 0.0, "not_run": doc["summary"]["not_run"]},
        "transformations": tx, "hosts": hosts}


def test_a_cluster_record_every_number_and_its_output_counts_once(tmp_path: Path) -> None:
    doc, attempts = synthetic_cluster(300, hosts=3, slots=4, fail_every=7)
    (tmp_path / "c.json").write_bytes(orjson.dumps(doc))
    (tmp_path / "c.out").write_text(cluster_output(doc, attempts))
    expected = _expected_cluster(doc)
    rc, got, err = stats(tmp_path / "c.json")
    assert rc == 0, err
    close(got, expected)
    assert set(got["summary"]) == set(expected["summary"])
    # the cluster's output and its JSON record, the directory and a file in it, a glob:
    # each attempt once, the JSON record's figures (the output rounds to milliseconds)
    rc, both, err = stats(tmp_path, tmp_path / "c.out", str(tmp_path / "*.json"))
    assert rc == 0, err
    close(both, expected)
    rc, out_only, _ = stats(tmp_path / "c.out")
    for k in ("tasks", "attempts", "succeeded", "failed", "retries"):
        assert out_only["summary"][k] == expected["summary"][k], k
    assert out_only["summary"]["cumulative_s"] == pytest.approx(
        expected["summary"]["cumulative_s"], abs=0.001 * len(attempts))


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("empty.yml", b"", "empty file"),
    ("blank.out", b"\n\n  \n", "empty file"),
    ("truncated.yml", None, "truncated or malformed YAML"),
    ("other.json", b'{"name": "not a record", "tasks": 3}', "not a fluxlite record"),
    ("list.json", b"[1, 2, 3]", "not a record"),
    ("broken.json", b'{"fluxlite_record": 1, "job":', "malformed JSON"),
    ("hollow.json", b'{"fluxlite_record": 1}', "not a fluxlite record"),
    ("binary.bin", bytes(range(256)) * 10, "not a record"),
])
def test_a_file_that_is_not_a_record_is_one_line(tmp_path: Path, name: str,
                                                 content: bytes | None, reason: str) -> None:
    if content is None:  # cut inside a quoted string: the YAML cannot be parsed
        text = (SAMPLES / "ok.yml").read_bytes()
        content = text[: text.index(b"findrange") + 3]
    (tmp_path / name).write_bytes(content)
    rc, _, err = stats(tmp_path / name)
    assert rc == 1
    lines = err.splitlines()
    assert len(lines) == 2, err  # the file's line, then that nothing was read
    assert lines[0].startswith(f"fluxlite: skipped {tmp_path / name}: ") and reason in lines[0]
    assert lines[1].startswith("fluxlite: error: no record found")
    assert "Traceback" not in err
    # next to a record, it is skipped and the record is read
    rc, got, err = stats(tmp_path / name, SAMPLES / "ok.yml")
    assert rc == 0 and got["summary"]["tasks"] == 1
    assert err.count("\n") == 1 and reason in err


def test_a_truncated_second_record_loses_only_itself(tmp_path: Path) -> None:
    ok = (SAMPLES / "ok.yml").read_text()
    fail = (SAMPLES / "fail.yml").read_text()
    (tmp_path / "two.out").write_text(ok + fail[: fail.index("analyze") + 2])
    rc, got, err = stats(tmp_path / "two.out")
    assert rc == 0 and got["summary"]["attempts"] == 1
    assert "1 of 2 kickstart records unreadable" in err and err.count("\n") == 1


def test_a_directory_of_ten_thousand_other_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    for d in range(10):
        sub = junk / f"d{d}"
        sub.mkdir(parents=True)
        for i in range(1000):
            (sub / f"f{i}.txt").write_bytes(b"x" * (i % 7) + (b"{" if i % 3 == 0 else b"a"))
    (junk / "d3" / "real.yml").write_bytes((SAMPLES / "fail.yml").read_bytes())
    rc, got, err = stats(junk)
    assert rc == 0 and got["summary"]["tasks"] == 1 and got["summary"]["failed"] == 1
    lines = err.splitlines()
    assert len(lines) == 21 and lines[-1] == "fluxlite: skipped 9980 more files that hold no record"


def test_usage_and_nothing_found(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "fluxlite", "stats"], capture_output=True)
    assert p.returncode == 2
    p = subprocess.run([sys.executable, "-m", "fluxlite", "stats", "--json", "--csv", "x"],
                       capture_output=True)
    assert p.returncode == 2
    rc, _, err = stats(tmp_path / "nothing-here")
    assert rc == 1 and "no such file or directory" in err
    rc, _, err = stats(str(tmp_path / "*.yml"))
    assert rc == 1 and "no file matches" in err
    os.mkfifo(tmp_path / "fifo")  # never opened: nothing would ever be written to it
    rc, _, err = stats(tmp_path / "fifo")
    assert rc == 1 and "not a regular file" in err


def test_tries_of_a_workflow_job_are_one_task(tmp_path: Path) -> None:
    # the same derivation of the same workflow, run twice (a retry by the workflow engine)
    text = (SAMPLES / "ok.yml").read_text()
    first = text.replace("2026-11-22T07:57:49.8", "2026-11-22T07:50:49.8").replace(
        "raw: 0\n      regular_exitcode: 0", "raw: 256\n      regular_exitcode: 1").replace(
        "pid: 15645", "pid: 15600")
    (tmp_path / "job.out.000").write_text(first)
    (tmp_path / "job.out.001").write_text(text)
    rc, got, err = stats(tmp_path)
    assert rc == 0, err
    s = got["summary"]
    assert (s["tasks"], s["attempts"], s["succeeded"], s["failed"], s["retries"]) == (
        1, 2, 1, 0, 1)
    assert s["badput_s"] == pytest.approx(0.004)


def test_tasks_that_never_started_in_one_millisecond_are_each_counted(tmp_path: Path) -> None:
    from fluxlite.cluster.formats import Task
    from fluxlite.cluster.records import Attempt, attempt_dict
    from fluxlite.execute.base import ExitStatus

    doc, attempts = synthetic_cluster(3, hosts=1, slots=1, fail_every=0)
    for i, t in enumerate(doc["tasks"]):  # exec failed: no pid, the same millisecond
        a = Attempt(task=Task(id=t["id"], argv=["/no/such"]), number=1, start=1796000000.0,
                    pid=0, status=ExitStatus.failed_to_start("executable '/no/such' not found"))
        t["attempts"] = [attempt_dict(a)]
        attempts[i] = a
    (tmp_path / "c.json").write_bytes(orjson.dumps(doc))
    (tmp_path / "c.out").write_text(cluster_output(doc, attempts))
    for args in ([tmp_path / "c.json"], [tmp_path / "c.out"], [tmp_path]):
        rc, got, err = stats(*args)
        assert rc == 0, err
        s = got["summary"]
        assert (s["tasks"], s["attempts"], s["failed"], s["exited"]) == (3, 3, 3, 3), args
