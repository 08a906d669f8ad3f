"""The size from which a verified copy goes through the three-thread pipeline.

For sizes from 4 KiB to 64 MiB, the same files are copied with sha256 verification
(``fluxlite.staging.base.transfer`` from file:// into a local directory, as stage-in does)
both ways, interleaved round by round: by one thread (read, hash, write in turn) and
through the pipeline (a reader and a writer thread overlapping with the hashing). Printed
per size: the median wall time per file of each way, their ratio, and the CPU time (user +
system) per file, the resource a loaded machine is short of. The threshold is the smallest
size from which the pipeline is faster at every larger size measured; it belongs in
``PIPELINE_MIN`` in fluxlite/staging/base.py, with these figures beside it.

ROUNDS (default 5), MIB (bytes copied per size, way and round, at least two files;
default 64) and TOP_MIB (the largest size; default 64) can be changed; BENCH_DIR chooses
the filesystem (default: the system's temporary directory).
"""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
from fluxlite.staging import base  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import median  # noqa: E402

ROUNDS = int(os.environ.get("ROUNDS", "5"))
MIB = int(os.environ.get("MIB", "64"))
TOP = int(os.environ.get("TOP_MIB", "64"))  # the largest size, in MiB (a power of two)
SIZES = [4 << 10, 16 << 10, 64 << 10, 256 << 10] + [1 << (20 + k) for k in range(TOP.bit_length())]
WAYS = {"one thread": 1 << 62, "pipeline": 0}  # PIPELINE_MIN for each way


def fmt(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


def copy_all(files: list[tuple[str, str]], dst: str, policy: base.Policy) -> tuple[float, float]:
    """Copy every file into dst; (wall, cpu) seconds per file."""
    os.mkdir(dst)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    for path, digest in files:
        req = base.Request(os.path.basename(path), ((f"file://{path}", True),),
                           os.path.join(dst, os.path.basename(path)), expected=digest)
        base.transfer(req, policy)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    shutil.rmtree(dst)
    return wall / len(files), cpu / len(files)


def main() -> int:
    policy = base.Policy(attempts=1)
    top = os.environ.get("BENCH_DIR") or None
    saved = base.PIPELINE_MIN
    with tempfile.TemporaryDirectory(prefix="fluxlite-b5t-", dir=top) as tmp:
        sources: dict[int, list[tuple[str, str]]] = {}
        for size in SIZES:
            d = os.path.join(tmp, f"src-{size}")
            os.mkdir(d)
            files = []
            for i in range(max(2, min(256, (MIB << 20) // size))):
                body = os.urandom(size)
                path = os.path.join(d, f"f{i:03d}")
                with open(path, "wb") as fh:
                    fh.write(body)
                files.append((path, hashlib.sha256(body).hexdigest()))
            sources[size] = files
        times: dict[tuple[int, str], list[tuple[float, float]]] = {}
        try:
            for r in range(ROUNDS):
                for size in SIZES:
                    ways = list(WAYS) if r % 2 == 0 else list(reversed(WAYS))
                    for way in ways:
                        base.PIPELINE_MIN = WAYS[way]
                        os.sync()  # the previous copy's dirty pages are not charged here
                        times.setdefault((size, way), []).append(
                            copy_all(sources[size], os.path.join(tmp, "dst"), policy))
        finally:
            base.PIPELINE_MIN = saved
    print(f"B5t verified copy per file, one thread vs pipeline (median of {ROUNDS} rounds, "
          f"{MIB} MiB per size, way and round; load {os.getloadavg()[0]:.2f})")
    print(f"{'size':>8} {'one thread':>12} {'pipeline':>12} {'ratio':>7} "
          f"{'cpu one':>10} {'cpu pipe':>10}")
    faster: list[bool] = []
    for size in SIZES:
        one = times[(size, "one thread")]
        pipe = times[(size, "pipeline")]
        w1, w2 = median([w for w, _ in one]), median([w for w, _ in pipe])
        c1, c2 = median([c for _, c in one]), median([c for _, c in pipe])
        faster.append(w2 < w1)
        print(f"{fmt(size):>8} {w1 * 1e3:9.3f} ms {w2 * 1e3:9.3f} ms {w2 / w1:6.2f}x "
              f"{c1 * 1e3:7.3f} ms {c2 * 1e3:7.3f} ms")
    threshold = next((s for i, s in enumerate(SIZES) if all(faster[i:])), None)
    print("B5t threshold: " + (f"the pipeline is faster from {fmt(threshold)} on"
                               if threshold is not None else "the pipeline is never faster")
          + f" (PIPELINE_MIN is {fmt(saved)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
