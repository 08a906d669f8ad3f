"""B2 and B4: verified stage-in of one 1 GiB file, and fluxlite's memory while doing it.

B2: `fluxlite run` of a job whose one input (1 GiB, with sha256) is staged in from file://
and the task is /bin/true, against hashlib's sha256 of the same file (the floor of any
verified copy on one core), interleaved. Target: <= 1.25x.
B4: fluxlite's peak RSS during B2 (wait4 rusage of the fluxlite process). Target: <= 64 MiB.
Sizes can be lowered for a quick look with B2_MIB.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, fluxlite_env, hashlib_sha256, make_file, median, report  # noqa: E402

MIB = int(os.environ.get("B2_MIB", "1024"))
ROUNDS = int(os.environ.get("B2_ROUNDS", "5"))


def kernel_copy(src: str, dst: str) -> None:
    """The cheapest copy there is (copy_file_range, no hashing): the floor of the write."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        left = os.fstat(fi.fileno()).st_size
        while left > 0:
            n = os.copy_file_range(fi.fileno(), fo.fileno(), left)
            if n == 0:
                break
            left -= n


def main() -> int:
    base = os.environ.get("BENCH_DIR") or None
    with tempfile.TemporaryDirectory(prefix="fluxlite-b2-", dir=base) as tmp:
        src = os.path.join(tmp, "big.dat")
        digest = make_file(src, MIB)
        wd = os.environ.get("B2_WORKDIR") or os.path.join(tmp, "wd")
        os.makedirs(wd, exist_ok=True)
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
        cpu: list[tuple[float, float]] = []
        cpu_hash: list[tuple[float, float]] = []
        t_copy: list[float] = []
        for _ in range(ROUNDS):
            # dirty pages left by the previous round would be written back during the next
            # one and charged to whichever side runs then: start each timing clean
            os.sync()
            r0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            assert hashlib_sha256(src) == digest
            t_hash.append(time.perf_counter() - t0)
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu_hash.append((r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime))
            os.sync()
            t0 = time.perf_counter()
            kernel_copy(src, os.path.join(wd, "copy.dat"))
            t_copy.append(time.perf_counter() - t0)
            os.unlink(os.path.join(wd, "copy.dat"))
            os.sync()
            t0 = time.perf_counter()
            proc = subprocess.Popen([PYTHON, "-m", "fluxlite", "run", "-q", jp], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, status, ru = os.wait4(proc.pid, 0)
            t_fl.append(time.perf_counter() - t0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                raise SystemExit(f"fluxlite failed: {proc.stderr.read().decode()}")  # type: ignore[union-attr]
            rss.append(ru.ru_maxrss)  # KiB on Linux
            cpu.append((ru.ru_utime, ru.ru_stime))
            with open(os.path.join(tmp, "rec.json")) as fh:
                rec = json.load(fh)
            stage.append(next(p["duration"] for p in rec["phases"] if p["name"] == "stage-in"))
        gib = MIB / 1024
        ok = report(f"B2 verified stage-in, {gib:g} GiB file:// with sha256 into a worker "
                    f"directory under {os.path.dirname(wd) if wd.endswith('/wd') else wd} "
                    f"(whole fluxlite run, median of {ROUNDS})", median(t_fl), median(t_hash),
                    1.25)
        print(f"B2 detail: stage-in phase alone {median(stage):.3f} s "
              f"({MIB / median(stage):.0f} MiB/s; ratio {median(stage) / median(t_hash):.2f}x to "
              f"hashlib {median(t_hash):.3f} s)")
        print(f"B2 best round: fluxlite {min(t_fl):.3f} s vs hashlib {min(t_hash):.3f} s: ratio "
              f"{min(t_fl) / min(t_hash):.2f}x")
        print(f"B2 floor of the write: copy_file_range of the same file into the same "
              f"directory, no hashing: median {median(t_copy):.3f} s (rounds "
              + ", ".join(f"{t:.2f}" for t in t_copy) + f"); fluxlite / max(hashlib, copy) = "
              f"{median(t_fl) / max(median(t_hash), median(t_copy)):.2f}x")
        print("B2 rounds (wall / user / system seconds of the whole fluxlite run): "
              + "; ".join(f"{w:.2f} / {u:.2f} / {s:.2f}" for w, (u, s) in zip(t_fl, cpu))
              + " — system time is the kernel writing the copy; it varies with the host's "
              "page allocation, the user time (hashing) does not")
        fl_cpu = median([u + s for u, s in cpu])
        h_cpu = median([u + s for u, s in cpu_hash])
        print(f"B2 CPU (user + system, the part the machine's load does not stretch): fluxlite "
              f"median {fl_cpu:.2f} s (user {median([u for u, _ in cpu]):.2f}, system "
              f"{min(s for _, s in cpu):.2f}–{max(s for _, s in cpu):.2f}) vs hashlib "
              f"{h_cpu:.2f} s (user {median([u for u, _ in cpu_hash]):.2f}, system "
              f"{min(s for _, s in cpu_hash):.2f}–{max(s for _, s in cpu_hash):.2f}): ratio "
              f"{fl_cpu / h_cpu:.2f}x; load {os.getloadavg()[0]:.2f}")
        peak = max(rss) / 1024
        ok4 = peak <= 64
        print(f"B4 memory: fluxlite peak RSS during B2 {peak:.1f} MiB (target <= 64 MiB) "
              f"{'PASS' if ok4 else 'MISS'}")
        return 0 if ok and ok4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
