"""B2 and B4: verified stage-in of one 1 GiB file, and fluxlite's memory while doing it.

B2: `fluxlite run` of a job whose one input (1 GiB, with sha256) is staged in from file://
and the task is /bin/true, against hashlib's sha256 of the same file (the floor of any
verified copy on one core), interleaved. Target: <= 1.25x.
B4: fluxlite's peak RSS during B2 (wait4 rusage of the fluxlite process). Target: <= 64 MiB.
Sizes can be lowered for a quick look with B2_MIB.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, fluxlite_env, median, report  # noqa: E402

MIB = int(os.environ.get("B2_MIB", "1024"))
ROUNDS = int(os.environ.get("B2_ROUNDS", "3"))


def hashlib_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(4 << 20)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def main() -> int:
    base = os.environ.get("BENCH_DIR") or None
    with tempfile.TemporaryDirectory(prefix="fluxlite-b2-", dir=base) as tmp:
        src = os.path.join(tmp, "big.dat")
        with open(src, "wb") as fh:
            block = os.urandom(1 << 20)
            for _ in range(MIB):
                fh.write(block)
        digest = hashlib_sha256(src)  # also warms the page cache
        wd = os.path.join(tmp, "wd")
        os.mkdir(wd)
        job = {"fluxlite": 1, "name": "b2", "executable": "/bin/true",
               "inputs": [{"lfn": "big.dat", "urls": [f"file://{src}"], "sha256": digest}],
               "records": {"kickstart": None, "json": os.path.join(tmp, "rec.json")}}
        jp = os.path.join(tmp, "job.json")
        with open(jp, "w") as fh:
            json.dump(job, fh)
        env = fluxlite_env(wd)
        t_fl: list[float] = []
        t_hash: list[float] = []
        stage: list[float] = []
        rss: list[int] = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            assert hashlib_sha256(src) == digest
            t_hash.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            proc = subprocess.Popen([PYTHON, "-m", "fluxlite", "run", "-q", jp], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, status, ru = os.wait4(proc.pid, 0)
            t_fl.append(time.perf_counter() - t0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                raise SystemExit(f"fluxlite failed: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
            rss.append(ru.ru_maxrss)  # KiB on Linux
            with open(os.path.join(tmp, "rec.json")) as fh:
                rec = json.load(fh)
            stage.append(next(p["duration"] for p in rec["phases"] if p["name"] == "stage-in"))
        gib = MIB / 1024
        ok = report(f"B2 verified stage-in, {gib:g} GiB file:// with sha256 (whole fluxlite run, "
                    f"median of {ROUNDS})", median(t_fl), median(t_hash), 1.25)
        print(f"B2 detail: stage-in phase alone {median(stage):.3f} s "
              f"({MIB / median(stage):.0f} MiB/s; ratio {median(stage) / median(t_hash):.2f}x to "
              f"hashlib {median(t_hash):.3f} s)")
        peak = max(rss) / 1024
        ok4 = peak <= 64
        print(f"B4 memory: fluxlite peak RSS during B2 {peak:.1f} MiB (target <= 64 MiB) "
              f"{'PASS' if ok4 else 'MISS'}")
        return 0 if ok and ok4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
