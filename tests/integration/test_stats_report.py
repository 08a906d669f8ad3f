"""fluxlite stats and fluxlite report on records made by real runs, and the live progress
line of fluxlite cluster and fluxlite transfer on a real terminal."""

from __future__ import annotations

import itertools
import json
import math
import os
import pty
import re
import select
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Fluxlite
from tests.httpserver import FaultServer
from tests.jobs import example_job
from tests.unit.test_stats import close, dist

WF = {"label": "wf", "stamp": "2026-11-22T08:00:00+00:00"}


def _job(fl: Fluxlite, name: str, **kw: Any) -> dict[str, Any]:
    return {"name": f"wf::{name}:1.0", "id": f"ID_{name}", "site": "local",
            "records": {"kickstart": f"{name}.out", "json": f"{name}.json"}, **kw}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Records of real runs: a job that stages and succeeds, one that fails (run twice, as a
    workflow retries it), one killed by a signal, one whose input is missing (71), one
    stopped by its time limit; a cluster with retries, a failure and a task left unrun; a
    cluster of jobs, one of which cannot stage its input."""
    tmp = tmp_path_factory.mktemp("runs")
    fl = Fluxlite(tmp)
    data = tmp / "data"
    data.mkdir()
    ok = example_job(data, tmp / "results")
    ok["records"] = {"kickstart": "ok.out", "json": "ok.json"}
    jobs = {
        "ok": ok,
        "fail": _job(fl, "fail", executable="/bin/sh", arguments=["-c", "exit 3"],
                     workflow=WF),
        "signal": _job(fl, "signal", executable="/bin/sh", arguments=["-c", "kill -9 $$"]),
        "infra": _job(fl, "infra", executable="/bin/true",
                      inputs=[{"lfn": "x", "urls": [f"file://{data}/missing"]}]),
        "timeout": _job(fl, "timeout", executable="/bin/sleep", arguments=["30"],
                        limits={"maxwalltime": 12, "checkpoint_time": 1}),
    }
    codes = {"ok": 0, "fail": 3, "signal": 137, "infra": 71, "timeout": 143}
    procs = {n: fl.popen("run", str(fl.write_job(j, f"{n}.job.json"))) for n, j in jobs.items()}
    for n, p in procs.items():
        p.communicate(timeout=60)
        assert p.returncode == codes[n], n
    # the workflow runs the failed job again: the second try writes new records
    (tmp / "fail.json").rename(tmp / "fail.1.json")
    (tmp / "fail.out").rename(tmp / "fail.1.out")
    assert fl.run("run", str(tmp / "fail.job.json")).returncode == 3
    (tmp / "c.dag").write_text(
        'TASK a /bin/sh -c "echo a"\n'
        'TASK flaky -t 3 /bin/sh -c "echo x >> tries; test $(wc -l < tries) -ge 3"\n'
        'TASK bad -t 2 /bin/sh -c "exit 4"\n'
        'TASK d /bin/true\n'
        'EDGE a flaky\nEDGE bad d\n')
    p = fl.run("cluster", "c.dag", "-j", "2", "-o", "c.out", "--json", "c.cluster.json",
               "--no-rescue")
    assert p.returncode == 5, p.stderr.decode()
    (data / "in.txt").write_text("payload\n")
    jl = [{"id": "copy", "name": "wf::copy:1.0", "executable": "/bin/cp",
           "arguments": ["in.txt", "o.txt"],
           "inputs": [{"lfn": "in.txt", "urls": [f"file://{data}/in.txt"]}],
           "outputs": [{"lfn": "o.txt", "urls": [f"file://{tmp}/results/o.txt"]}]},
          {"id": "lost", "name": "wf::copy:1.0", "executable": "/bin/true",
           "inputs": [{"lfn": "y", "urls": [f"file://{data}/missing"]}]}]
    (tmp / "jobs.json").write_text(json.dumps(jl))
    p = fl.run("cluster", "jobs.json", "-o", "j.out", "--json", "j.cluster.json",
               "--no-rescue")
    assert p.returncode == 5, p.stderr.decode()
    return tmp


def _attempts_from_json(tmp: Path) -> tuple[list[dict[str, Any]], int]:
    """Every attempt, straight from the JSON records; and the tasks left unrun."""
    out: list[dict[str, Any]] = []

    def job(r: dict[str, Any], key: Any, cores: int = 1, host: str | None = None
            ) -> dict[str, Any]:
        t = r["task"] or {}
        code = r["exit_code"]
        if code == 0:
            cause = "ok"
        elif t.get("timed_out"):
            cause = "timeout"
        elif r["failed_phase"] not in (None, "task"):
            cause = "infrastructure"
        elif (t.get("status") or {}).get("signal") is not None or code > 128:
            cause = "signal"
        else:
            cause = "exit"
        ru = t.get("rusage") or {}
        return {"task": key, "name": r["job"]["name"], "start": r["start_epoch"],
                "dur": r["duration"], "runtime": t.get("duration", r["duration"]),
                "cause": cause, "cpu": ru and ru["utime"] + ru["stime"], "rss": ru.get("maxrss"),
                "cores": cores, "host": host or r["host"]["hostname"],
                "in": sum(s["bytes"] for s in r["stage_in"]),
                "out": sum(s["bytes"] for s in r["stage_out"]),
                "in_s": sum(s["duration"] for s in r["stage_in"]),
                "out_s": sum(s["duration"] for s in r["stage_out"]),
                "integrity": sum(v["duration"] for v in r["integrity"])
                + sum(o["checksum_timing"] for o in r["outputs"])}

    for p in sorted(tmp.glob("*.json")):
        doc = json.loads(p.read_text())
        if isinstance(doc, dict) and doc.get("fluxlite_record"):
            wf = doc["job"]["workflow"]
            key = (wf["label"], wf["stamp"], doc["job"]["id"]) if wf["label"] else str(p)
            out.append(job(doc, key))
    not_run = 0
    for p in sorted(tmp.glob("*.cluster.json")):
        doc = json.loads(p.read_text())
        not_run += doc["summary"]["not_run"]
        for t in doc["tasks"]:
            for a in t["attempts"]:
                key = (str(p), t["id"])
                if "job_record" in a:
                    out.append(job(a["job_record"], key, t["cores"]))
                    continue
                ru = a["rusage"]
                out.append({"task": key, "name": t["name"], "start": a["start_epoch"],
                            "dur": a["duration"], "runtime": a["duration"],
                            "cause": "ok" if a["exit_code"] == 0 else
                            "signal" if a["signal"] is not None else "exit",
                            "cpu": ru["utime"] + ru["stime"], "rss": ru["maxrss"],
                            "cores": t["cores"], "host": a["host"], "in": 0, "out": 0,
                            "in_s": 0.0, "out_s": 0.0, "integrity": 0.0})
    return out, not_run


def _expected(atts: list[dict[str, Any]], not_run: int) -> dict[str, Any]:
    last: dict[Any, dict[str, Any]] = {}
    for a in sorted(atts, key=lambda a: a["start"]):
        last[a["task"]] = a
    bad_last = [a for a in last.values() if a["cause"] != "ok"]
    tx: dict[str, Any] = {}
    for name in {a["name"] for a in atts}:
        mine = [a for a in atts if a["name"] == name]
        used = [a for a in mine if a["cpu"] != {} and a["runtime"] > 0]
        rss = [a["rss"] for a in mine if a["rss"] is not None]
        wall = sum(a["runtime"] * a["cores"] for a in used)
        tx[name] = {"count": len(mine), "failed": sum(a["cause"] != "ok" for a in mine),
                    "runtime_s": dist([a["runtime"] for a in mine]),
                    "cpu_utilization": sum(a["cpu"] for a in used) / wall if wall else None,
                    "peak_rss_kb": {"max": max(rss), "median": statistics.median(rss)}
                    if rss else None}
    hosts: dict[str, Any] = {}
    for a in atts:
        if a["host"]:
            h = hosts.setdefault(a["host"], {"count": 0, "failed": 0, "busy_s": 0.0})
            h["count"] += 1
            h["failed"] += a["cause"] != "ok"
            h["busy_s"] += a["dur"]
    first = min(a["start"] for a in atts)
    last_end = max(a["start"] + a["dur"] for a in atts)
    n_in, n_out = sum(a["in"] for a in atts), sum(a["out"] for a in atts)
    s_in, s_out = math.fsum(a["in_s"] for a in atts), math.fsum(a["out_s"] for a in atts)
    return {"summary": {
        "tasks": len(last), "attempts": len(atts),
        "succeeded": len(last) - len(bad_last), "failed": len(bad_last),
        "retries": len(atts) - len(last),
        "signalled": sum(a["cause"] == "signal" for a in bad_last),
        "timed_out": sum(a["cause"] == "timeout" for a in bad_last),
        "infrastructure": sum(a["cause"] == "infrastructure" for a in bad_last),
        "exited": sum(a["cause"] == "exit" for a in bad_last),
        "failed_attempts": sum(a["cause"] != "ok" for a in atts),
        "first_start": datetime.fromtimestamp(first).astimezone().isoformat(
            timespec="milliseconds"),
        "last_end": datetime.fromtimestamp(last_end).astimezone().isoformat(
            timespec="milliseconds"),
        "wall_s": last_end - first,
        "cumulative_s": math.fsum(a["dur"] for a in atts),
        "badput_s": math.fsum(a["dur"] for a in atts if a["cause"] != "ok"),
        "bytes_in": n_in, "bytes_out": n_out, "stage_in_s": s_in, "stage_out_s": s_out,
        "throughput_in_mb_s": n_in / s_in / 1e6, "throughput_out_mb_s": n_out / s_out / 1e6,
        "integrity_s": math.fsum(a["integrity"] for a in atts), "not_run": not_run},
        "transformations": tx, "hosts": hosts}


def _stats(*args: str | Path) -> tuple[int, Any, str]:
    p = subprocess.run([sys.executable, "-m", "fluxlite", "stats", "--json", *map(str, args)],
                       capture_output=True, timeout=60)
    return p.returncode, json.loads(p.stdout) if p.returncode == 0 else None, p.stderr.decode()


def test_stats_of_real_runs_every_number(runs: Path) -> None:
    atts, not_run = _attempts_from_json(runs)
    expected = _expected(atts, not_run)
    s = expected["summary"]
    # what the runs were made to be
    assert (s["tasks"], s["attempts"], s["retries"], s["not_run"]) == (10, 14, 4, 1)
    assert (s["succeeded"], s["failed"], s["signalled"], s["timed_out"],
            s["infrastructure"]) == (4, 6, 1, 1, 2)
    assert s["bytes_in"] > 600 and s["bytes_out"] > 600
    rc, got, err = _stats(*sorted(runs.glob("*.json")))
    assert rc == 0, err
    close(got, expected)
    assert set(got["summary"]) == set(expected["summary"])  # every number of it checked
    # every record, the kickstart ones too: each attempt once, the same figures
    rc, everything, err = _stats(runs)
    assert rc == 0, err
    close(everything["summary"], expected["summary"])
    assert everything["summary"]["integrity_s"] > 0  # the checksum of the staged input
    close(everything["transformations"], expected["transformations"])
    # the cluster's attempts got their host from its kickstart output
    assert sum(h["count"] for h in everything["hosts"].values()) == s["attempts"]


def test_stats_of_the_kickstart_records_alone(runs: Path) -> None:
    atts, not_run = _attempts_from_json(runs)
    s = _expected(atts, not_run)["summary"]
    files = [p for p in runs.glob("*.out")]
    rc, got, err = _stats(*files)
    assert rc == 0, err
    g = got["summary"]
    for k in ("tasks", "attempts", "succeeded", "failed", "retries", "infrastructure",
              "bytes_in", "bytes_out", "not_run"):
        assert g[k] == s[k], k
    # a kickstart record cannot tell a time limit's TERM from any other signal
    assert g["signalled"] + g["timed_out"] == s["signalled"] + s["timed_out"]
    assert g["cumulative_s"] == pytest.approx(s["cumulative_s"], abs=0.002 * s["attempts"])


def _embedded(html: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    assert m
    return json.loads(m.group(1))


def test_report_is_one_self_contained_file(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    p = subprocess.run([sys.executable, "-m", "fluxlite", "report", str(runs), "-o", str(out)],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    html = out.read_text()
    # nothing that a browser would fetch
    assert not re.search(r"<script[^>]+src=|<link\b|<img\b|<iframe\b|@import|url\(|fetch\(|"
                         r"XMLHttpRequest|https?://(?!127\.0\.0\.1)", html.split(
                             '<script type="application/json"')[0] + html.rsplit("</script>",
                                                                                2)[-2])
    doc = _embedded(html)
    atts, _ = _attempts_from_json(runs)
    assert doc["n"] == len(atts) == len(doc["s"]) == len(doc["lane"])
    assert doc["failuresTotal"] == sum(a["cause"] != "ok" for a in atts)
    for f in doc["failures"]:  # each failure points at a record that is there
        path = re.split(r"#|:(?=\d+$)", f["record"])[0]
        assert os.path.isfile(path), f
        assert f["reason"] and f["cause"] != "ok"
    assert {f["cause"] for f in doc["failures"]} == {"exit", "signal", "timeout",
                                                    "infrastructure"}
    ok = [i for i in doc["phIdx"] if doc["txNames"][doc["tx"][i]] == "test::task:1.0"]
    assert len(ok) == 1  # the staging job has its three phases
    ph = doc["ph"][6 * doc["phIdx"].index(ok[0]):][:6]
    assert all(v >= 0 for v in ph)
    # attempts in one lane never overlap
    for lane in range(len(doc["lanes"])):
        idx = [i for i in range(doc["n"]) if doc["lane"][i] == lane]
        for a, b in itertools.pairwise(idx):
            assert doc["s"][a] + doc["d"][a] <= doc["s"][b]


def test_report_images_and_without_matplotlib(runs: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (fluxlite-runtime[plot])")
    png, svg = tmp_path / "t.png", tmp_path / "t.svg"
    p = subprocess.run([sys.executable, "-m", "fluxlite", "report", str(runs), "-o",
                        str(tmp_path / "r.html"), "--png", str(png), "--svg", str(svg),
                        "--colour", "outcome"], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert b"<svg" in svg.read_bytes()[:2000]
    # a matplotlib that cannot be imported: one line, nothing written
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib here')")
    env = {**os.environ, "PYTHONPATH": str(fake)}
    p = subprocess.run([sys.executable, "-m", "fluxlite", "report", str(runs), "-o",
                        str(tmp_path / "r2.html"), "--png", str(tmp_path / "t2.png")],
                       capture_output=True, timeout=60, env=env)
    err = p.stderr.decode()
    assert p.returncode == 2 and err.count("\n") == 1 and "matplotlib" in err, err
    assert "fluxlite-runtime[plot]" in err and not (tmp_path / "r2.html").exists()


def test_report_of_nothing_and_bad_output(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello\n")
    p = subprocess.run([sys.executable, "-m", "fluxlite", "report", str(tmp_path / "x.txt"),
                        "-o", str(tmp_path / "r.html")], capture_output=True, timeout=60)
    assert p.returncode == 1 and not (tmp_path / "r.html").exists()
    p = subprocess.run([sys.executable, "-m", "fluxlite", "report", str(tmp_path), "-o",
                        str(tmp_path / "no" / "dir" / "r.html")], capture_output=True,
                       timeout=60)
    assert p.returncode == 2 and p.stderr.decode().count("\n") == 1


# -- a newcomer's first reading ------------------------------------------------------------
def test_the_tasks_line_and_the_reports_header_add_up(runs: Path, tmp_path: Path) -> None:
    """The outcomes split the tasks as written: succeeded and failed make the tasks tried,
    and the report's header shows the ones never started among its tasks."""
    p = subprocess.run([sys.executable, "-m", "fluxlite", "stats", str(runs)],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    line = next(ln for ln in p.stdout.decode().splitlines() if ln.strip().startswith("tasks"))
    m = re.fullmatch(r"\s*tasks\s+(\d+) tried \((\d+) succeeded, (\d+) failed\), "
                     r"(\d+) not run", line)
    assert m, line
    tried, ok, failed, not_run = map(int, m.groups())
    assert tried == ok + failed and not_run == 1, line
    out = tmp_path / "r.html"
    p = subprocess.run([sys.executable, "-m", "fluxlite", "report", str(runs), "-o", str(out)],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    fig = {k: v for k, v, _ in _embedded(out.read_text())["figures"]}
    assert fig["not run"] == 1
    assert fig["tasks"] == fig["succeeded"] + fig["failed"] + fig["not run"] == tried + 1


def test_a_kickstart_time_limit_counts_as_a_time_limit(fl: Fluxlite, tmp_path: Path) -> None:
    """kickstart -k stops the task with TERM: its record alone says it was the time limit."""
    out = tmp_path / "k.out"
    with out.open("wb") as fh:
        p = subprocess.run([sys.executable, "-m", "fluxlite", "kickstart", "-k", "1",
                            "/bin/sleep", "30"], stdout=fh, stderr=subprocess.PIPE,
                           env=fl.env(), timeout=60)
    assert p.returncode == 14, p.stderr
    rc, got, err = _stats(out)
    assert rc == 0, err
    s = got["summary"]
    assert (s["failed"], s["timed_out"], s["signalled"]) == (1, 1, 0), s


def test_quiet_says_the_skips_in_one_line(runs: Path, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for i in range(30):
        (logs / f"note{i}.txt").write_text("not a record\n")
    (logs / "ok.json").write_bytes((runs / "fail.json").read_bytes())
    for command, extra in (("stats", []), ("report", ["-o", str(tmp_path / "r.html")])):
        p = subprocess.run([sys.executable, "-m", "fluxlite", command, "-q", str(logs),
                            *extra], capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr.decode()
        assert p.stderr.decode().splitlines() == [
            "fluxlite: skipped 30 files that hold no record"], command
        p = subprocess.run([sys.executable, "-m", "fluxlite", command, str(logs), *extra],
                           capture_output=True, timeout=60)
        assert len(p.stderr.decode().splitlines()) >= 21  # without -q: each named


def _srgb_to_lab(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    def lin(c: float) -> float:
        c = min(1.0, max(0.0, c))
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(c) for c in rgb)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


# Machado, Oliveira and Fernandes (2009), severity 1.0, on linear RGB
CVD = {"normal": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
       "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216),
                      (-0.003882, -0.048116, 1.051998)),
       "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413),
                        (-0.011820, 0.042940, 0.968881)),
       "tritanopia": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602),
                      (0.004733, 0.691367, 0.303900))}


def _seen(colour: str, matrix: Any) -> tuple[float, float, float]:
    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    def gamma(c: float) -> float:
        c = min(1.0, max(0.0, c))
        return 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055

    rgb = [lin(int(colour[i:i + 2], 16) / 255) for i in (1, 3, 5)]
    out = [gamma(sum(m * c for m, c in zip(row, rgb, strict=True))) for row in matrix]
    return _srgb_to_lab((out[0], out[1], out[2]))


def test_staging_colours_stand_apart_for_every_reader(runs: Path, tmp_path: Path) -> None:
    """Stage-in and stage-out, drawn over their attempt's bar, differ from every
    transformation's and outcome's colour, from each other and from the page, by a CIE76
    difference of at least 20 for normal vision and the three dichromacies."""
    out = tmp_path / "r.html"
    p = subprocess.run([sys.executable, "-m", "fluxlite", "report", str(runs), "-o", str(out)],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    colours = _embedded(out.read_text())["colours"]
    phases = list(colours["phase"].values())
    others = [*colours["palette"], *colours["outcome"].values(), colours["other"], "#ffffff"]
    for kind, matrix in CVD.items():
        for i, ph in enumerate(phases):
            for other in others + phases[i + 1:]:
                d = math.dist(_seen(ph, matrix), _seen(other, matrix))
                assert d >= 20, (kind, ph, other, d)


def test_report_of_one_job_shows_its_throughput(fl: Fluxlite, tmp_path: Path) -> None:
    """One short job: the throughput chart has a round bucket (not "per 0 ms") and its one
    attempt in it. Needs the headless browser."""
    from tests.stats_support import browser_missing, headless_chromium

    job = fl.write_job({"executable": "/bin/true",
                        "records": {"kickstart": "one.out", "json": "one.json"}})
    assert fl.run("run", str(job)).returncode == 0
    out = tmp_path / "one.html"
    p = subprocess.run([sys.executable, "-m", "fluxlite", "report", str(tmp_path / "one.json"),
                        "-o", str(out)], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    why = browser_missing()
    if why:
        pytest.skip(why)
    with headless_chromium() as driver:
        driver.get(out.as_uri())
        for _ in range(100):
            if driver.execute_script("return window.fluxliteReport.ready"):
                break
            time.sleep(0.05)
        r = driver.execute_script("return window.fluxliteReport")
        info = driver.find_element("id", "thinfo").text
    assert not r["errors"], r["errors"]
    assert r["throughput"]["ended"] == 1 and r["throughput"]["bucketMs"] >= 1, r
    assert "per 0 ms" not in info and info.startswith("attempts ended per "), info


# -- the live progress line ----------------------------------------------------------------
def _on_a_terminal(fl: Fluxlite, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run fluxlite with stderr on a pty; (exit code, what the terminal showed, stdout)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "fluxlite", *args], cwd=fl.tmp, env=fl.env(),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the pty's other end closed
                break
            if not chunk:
                break
            shown += chunk
        elif p.poll() is not None:
            break
    out = p.communicate(timeout=10)[0]
    os.close(master)
    return p.returncode, shown.decode(), out.decode()


def test_cluster_progress_updates_in_place_on_a_terminal(fl: Fluxlite) -> None:
    (fl.tmp / "p.dag").write_text("".join(f"TASK t{i} /bin/sleep 0.25\n" for i in range(8))
                                  + 'TASK bad /bin/sh -c "exit 2"\n')
    rc, shown, _ = _on_a_terminal(fl, "cluster", "p.dag", "-j", "2", "-o", "c.out",
                                  "--no-rescue")
    assert rc == 5
    updates = shown.split("\r\x1b[K")
    lines = [u for u in updates if u.startswith("fluxlite cluster: ")]
    assert len(lines) >= 3, shown  # redrawn as tasks end, on one line
    assert all("\n" not in ln for ln in lines[:-1])  # no line ends before the last
    assert lines[-1].startswith("fluxlite cluster: 8/9 done, 0 running, 1 failed")
    assert "task bad failed" in shown  # the log record got a clean line of its own
    assert "waiting (" not in shown  # not the plain lines


def test_cluster_progress_elsewhere_is_plain_and_bounded(fl: Fluxlite) -> None:
    (fl.tmp / "p.dag").write_text("".join(f"TASK t{i} /bin/sleep 0.2\n" for i in range(10)))
    t0 = time.monotonic()
    p = fl.run("cluster", "p.dag", "-j", "1", "-o", "c.out", "--no-rescue", "--progress", "0.5")
    secs = time.monotonic() - t0
    assert p.returncode == 0
    err = p.stderr.decode()
    lines = [ln for ln in err.splitlines() if ln.startswith("fluxlite cluster: ")]
    assert "\r" not in err and "\x1b" not in err
    assert 2 <= len(lines) <= secs / 0.5 + 2, lines
    assert lines[-1].startswith("fluxlite cluster: 10/10 done")


def test_transfer_progress_on_a_terminal_counts_files_and_bytes(fl: Fluxlite) -> None:
    with FaultServer() as srv:
        doc = []
        for i in range(6):
            url = srv.add(f"/f{i}", os.urandom(50_000), faults=["slow:0.3"])
            doc.append({"type": "transfer", "lfn": f"f{i}", "src_urls": [{"url": url}],
                        "dest_urls": [{"url": f"file://{fl.tmp}/out/f{i}"}]})
        (fl.tmp / "list.json").write_text(json.dumps(doc))
        rc, shown, _ = _on_a_terminal(fl, "transfer", "list.json", "-n", "2")
        # not on a terminal and quicker than the plain interval: no progress line at all
        p = fl.run("transfer", "list.json")
        assert p.returncode == 0 and "fluxlite transfer: " not in p.stderr.decode()
    assert rc == 0, shown
    lines = [u for u in shown.split("\r\x1b[K") if u.startswith("fluxlite transfer: ")]
    assert len(lines) >= 3, shown
    assert lines[-1].startswith("fluxlite transfer: 6/6 done, 0 running, 0 failed, 300.0 KB")
    final = lines[-1].split("\r\n")
    assert final[0].endswith(")") and shown.count("fluxlite transfer: 6/6") == 1
    assert "6 of 6 transfers done" in final[1]  # the log line, on a line of its own
