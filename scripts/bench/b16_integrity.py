"""B16: `fluxlite integrity --verify` of 1 GiB against sha256sum and hashlib, same run.

The file is verified as PegasusLite asks for it (`--print-timings --verify=stdin`, the
expected sha256 in a .meta file of the current directory, a multipart directory), against
`sha256sum FILE` and hashlib's sha256 read in 4 MiB (the floor on one core), interleaved.
Also 8 files of 128 MiB in one list, where fluxlite hashes several files at once.
Target: <= 1.10x hashlib for the one file. Sizes: B16_MIB, B16_ROUNDS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    PYTHON,
    hashlib_sha256,
    make_file,
    median,
    report,
    run_quiet,
    timed,
)

MIB = int(os.environ.get("B16_MIB", "1024"))
ROUNDS = int(os.environ.get("B16_ROUNDS", "5"))
PARTS = 8


def _meta(tmp: str, digests: dict[str, str]) -> None:
    doc = [{"_type": "file", "_id": lfn,
            "_attributes": {"checksum.type": "sha256", "checksum.value": d}}
           for lfn, d in digests.items()]
    with open(os.path.join(tmp, "job.in.meta"), "w") as fh:
        json.dump(doc, fh)


def _verify(tmp: str, listing: str) -> None:
    mp = os.path.join(tmp, "mp")
    os.makedirs(mp, exist_ok=True)
    p = subprocess.run([PYTHON, "-m", "fluxlite", "integrity", "--print-timings",
                        "--verify=stdin"], input=listing.encode(), cwd=tmp,
                       env={**os.environ, "PEGASUS_MULTIPART_DIR": mp},
                       capture_output=True)
    if p.returncode != 0:
        raise SystemExit(f"fluxlite integrity failed: {p.stderr.decode()[-2000:]}")


def main() -> int:
    base = os.environ.get("BENCH_DIR") or None
    with tempfile.TemporaryDirectory(prefix="fluxlite-b16-", dir=base) as tmp:
        big = os.path.join(tmp, "big.dat")
        digests = {"big.dat": make_file(big, MIB)}
        parts = []
        for i in range(PARTS):
            name = f"part{i}.dat"
            digests[name] = make_file(os.path.join(tmp, name), max(MIB // PARTS, 1))
            parts.append(name)
        _meta(tmp, digests)
        t_fl, t_sum, t_hash = [], [], []
        for _ in range(ROUNDS):
            t_fl.append(timed(lambda: _verify(tmp, "big.dat")))
            t_sum.append(timed(lambda: run_quiet(["sha256sum", big])))
            t_hash.append(timed(lambda: hashlib_sha256(big)))
        ok = report(f"B16 fluxlite integrity --verify {MIB} MiB vs hashlib", median(t_fl),
                    median(t_hash), 1.10)
        report(f"B16 fluxlite integrity --verify {MIB} MiB vs sha256sum", median(t_fl),
               median(t_sum), 1.10)
        print(f"B16 throughput: fluxlite {MIB / median(t_fl):.0f} MiB/s, sha256sum "
              f"{MIB / median(t_sum):.0f} MiB/s, hashlib {MIB / median(t_hash):.0f} MiB/s")
        listing = ";;;".join(parts)
        t_many, t_many_sum = [], []
        for _ in range(ROUNDS):
            t_many.append(timed(lambda: _verify(tmp, listing)))
            t_many_sum.append(timed(lambda: run_quiet(
                ["sha256sum", *(os.path.join(tmp, p) for p in parts)])))
        report(f"B16 fluxlite integrity --verify {PARTS} files of {MIB // PARTS} MiB vs "
               "sha256sum of the same files", median(t_many), median(t_many_sum), 1.0,
               extra=f"({os.cpu_count()} cores)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
