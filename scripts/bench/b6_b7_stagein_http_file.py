"""B6 and B7: one 1 GiB verified input through `fluxlite run`, over http and from file://.

B6: the input comes from a loopback HTTP server (started here, serving the file with
sendfile) with its sha256 given; against hashlib's sha256 of the same bytes, interleaved.
Target: <= 1.5x.
B7: the same file from file://, against hashlib. Target: <= 1.25x.
The task is /bin/true; the figure is the whole `fluxlite run` (start-up, worker directory,
stage-in with verification, records, clean-up). The stage-in phase alone is printed too.
Sizes can be lowered for a quick look with B6_MIB; rounds with B6_ROUNDS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repository, for tests/
from common import PYTHON, fluxlite_env, hashlib_sha256, make_file, median, report  # noqa: E402

MIB = int(os.environ.get("B6_MIB", "1024"))
ROUNDS = int(os.environ.get("B6_ROUNDS", "3"))


def run_job(jp: str, env: dict[str, str], rec: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([PYTHON, "-m", "fluxlite", "run", "-q", jp], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"fluxlite failed: {proc.stderr.decode()[-2000:]}")
    with open(rec) as fh:
        doc = json.load(fh)
    return took, next(p["duration"] for p in doc["phases"] if p["name"] == "stage-in")


def main() -> int:
    from tests.httpserver import FaultServer

    base = os.environ.get("BENCH_DIR") or None
    with tempfile.TemporaryDirectory(prefix="fluxlite-b6-", dir=base) as tmp:
        src = os.path.join(tmp, "big.dat")
        digest = make_file(src, MIB)
        wd = os.path.join(tmp, "wd")
        os.mkdir(wd)
        env = fluxlite_env(wd)
        rec = os.path.join(tmp, "rec.json")
        with FaultServer(max_requests=100) as srv:
            url = srv.add("/big.dat", file=src)
            jobs = {}
            for name, u in (("http", url), ("file", f"file://{src}")):
                jobs[name] = os.path.join(tmp, f"{name}.json")
                with open(jobs[name], "w") as fh:
                    json.dump({"fluxlite": 1, "name": f"b6-{name}", "executable": "/bin/true",
                               "inputs": [{"lfn": "big.dat", "urls": [u], "sha256": digest}],
                               "records": {"kickstart": None, "json": rec}}, fh)
            t_hash: list[float] = []
            t: dict[str, list[float]] = {"http": [], "file": []}
            st: dict[str, list[float]] = {"http": [], "file": []}
            for _ in range(ROUNDS):
                t0 = time.perf_counter()
                assert hashlib_sha256(src) == digest
                t_hash.append(time.perf_counter() - t0)
                for name in ("http", "file"):
                    a, b = run_job(jobs[name], env, rec)
                    t[name].append(a)
                    st[name].append(b)
        gib = MIB / 1024
        h = median(t_hash)
        ok6 = report(f"B6 {gib:g} GiB over http (loopback) with sha256, whole fluxlite run "
                     f"(median of {ROUNDS})", median(t["http"]), h, 1.5)
        print(f"B6 detail: stage-in phase alone {median(st['http']):.3f} s "
              f"({MIB / median(st['http']):.0f} MiB/s; ratio {median(st['http']) / h:.2f}x)")
        ok7 = report(f"B7 {gib:g} GiB from file:// with sha256, whole fluxlite run "
                     f"(median of {ROUNDS})", median(t["file"]), h, 1.25)
        print(f"B7 detail: stage-in phase alone {median(st['file']):.3f} s "
              f"({MIB / median(st['file']):.0f} MiB/s; ratio {median(st['file']) / h:.2f}x)")
        best_http = min(t["http"])
        print(f"B6/B7 best rounds: http {best_http:.3f} s ({best_http / min(t_hash):.2f}x), "
              f"file {min(t['file']):.3f} s ({min(t['file']) / min(t_hash):.2f}x) vs hashlib "
              f"{min(t_hash):.3f} s; stage-in alone at best: http "
              f"{min(st['http']) / min(t_hash):.2f}x, file {min(st['file']) / min(t_hash):.2f}x")
        return 0 if ok6 and ok7 else 1


if __name__ == "__main__":
    raise SystemExit(main())
