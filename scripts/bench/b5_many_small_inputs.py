"""B5: 1000 x 64 KiB file:// inputs with sha256 verification.

fluxlite: one `fluxlite run` of a job whose 1000 inputs carry their sha256 (task /bin/true,
kickstart record with its transfer and integrity sections written to a file).
Pegasus: what PegasusLite runs for the same stage-in: pegasus-transfer -n 1 on a JSON list
of the 1000 files, then pegasus-integrity --verify with a .meta file, both from
pegasus-wms.worker 5.1.3 installed from PyPI into this benchmark's own virtualenv
(FLUXLITE_BENCH_PEGASUS_VENV, default /tmp/fluxlite-bench-pegasus; created when missing).
Target: fluxlite >= 10x faster. Files per second are printed for both.
FILES, KIB and ROUNDS (fluxlite runs; Pegasus runs once) can be lowered for a quick look.
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
from common import PYTHON, fluxlite_env, median  # noqa: E402

FILES = int(os.environ.get("FILES", "1000"))
KIB = int(os.environ.get("KIB", "64"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
VENV = os.environ.get("FLUXLITE_BENCH_PEGASUS_VENV", "/tmp/fluxlite-bench-pegasus")
PEGASUS = "pegasus-wms.worker==5.1.3"


def pegasus_tools() -> tuple[str, str, str]:
    """(python, pegasus-transfer.py, pegasus-integrity.py) of the benchmark's virtualenv."""
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    probe = [py, "-c", "import Pegasus, os; print(os.path.dirname(Pegasus.__file__))"]
    found = subprocess.run(probe, capture_output=True, text=True)
    if found.returncode != 0:
        subprocess.run([py, "-m", "pip", "install", "-q", PEGASUS], check=True)
        found = subprocess.run(probe, capture_output=True, text=True, check=True)
    cli = os.path.join(found.stdout.strip(), "cli")
    return py, os.path.join(cli, "pegasus-transfer.py"), os.path.join(cli, "pegasus-integrity.py")


def main() -> int:
    py, ptransfer, pintegrity = pegasus_tools()
    base = os.environ.get("BENCH_DIR") or None
    with tempfile.TemporaryDirectory(prefix="fluxlite-b5-", dir=base) as tmp:
        src = os.path.join(tmp, "src")
        os.mkdir(src)
        names, shas = [], []
        for i in range(FILES):
            body = os.urandom(KIB * 1024)
            name = f"in{i:04d}.dat"
            with open(os.path.join(src, name), "wb") as fh:
                fh.write(body)
            names.append(name)
            shas.append(hashlib.sha256(body).hexdigest())

        # fluxlite
        wd = os.path.join(tmp, "wd")
        os.mkdir(wd)
        job = {"fluxlite": 1, "name": "b5", "executable": "/bin/true",
               "inputs": [{"lfn": n, "urls": [f"file://{src}/{n}"], "sha256": s}
                          for n, s in zip(names, shas)],
               "records": {"kickstart": os.path.join(tmp, "b5.ks"), "json": None}}
        jp = os.path.join(tmp, "job.json")
        with open(jp, "w") as fh:
            json.dump(job, fh)
        env = fluxlite_env(wd)
        t_fl = []
        for _ in range(ROUNDS):
            t0 = time.perf_counter()
            proc = subprocess.run([PYTHON, "-m", "fluxlite", "run", "-q", jp], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            t_fl.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise SystemExit(f"fluxlite failed: {proc.stderr.decode()[-2000:]}")

        # Pegasus, as PegasusLite would run it, in a directory of its own
        pwd = os.path.join(tmp, "pegasus-wd")
        mp = os.path.join(tmp, "multipart")
        os.mkdir(pwd)
        os.mkdir(mp)
        lst = [{"type": "transfer", "linkage": "input", "lfn": n, "id": i + 1,
                "src_urls": [{"site_label": "local", "url": f"file://{src}/{n}",
                              "priority": 100}],
                "dest_urls": [{"site_label": "condorpool", "url": f"file://{pwd}/{n}"}]}
               for i, n in enumerate(names)]
        with open(os.path.join(tmp, "transfer.json"), "w") as fh:
            json.dump(lst, fh)
        with open(os.path.join(pwd, "job.meta"), "w") as fh:
            json.dump([{"_type": "file", "_id": n,
                        "_attributes": {"checksum.type": "sha256", "checksum.value": s,
                                        "checksum.timing": "0.0"}}
                       for n, s in zip(names, shas)], fh)
        penv = {**os.environ, "PEGASUS_MULTIPART_DIR": mp}
        t0 = time.perf_counter()
        subprocess.run([py, ptransfer, "-n", "1", "-f", os.path.join(tmp, "transfer.json")],
                       cwd=pwd, env=penv, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        t_xfer = time.perf_counter() - t0
        subprocess.run([py, pintegrity, "--print-timings", "--verify=stdin"], cwd=pwd, env=penv,
                       check=True, input=";;;".join(names).encode(),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t_peg = time.perf_counter() - t0
        for n in names[:: max(1, FILES // 10)]:  # both really copied the data
            assert os.path.getsize(os.path.join(pwd, n)) == KIB * 1024

        fl = median(t_fl)
        speedup = t_peg / fl
        ok = speedup >= 10
        print(f"B5 {FILES} x {KIB} KiB file:// inputs with sha256: fluxlite run {fl:.3f} s "
              f"(median of {ROUNDS}, {FILES / fl:.0f} files/s) vs pegasus-transfer -n 1 + "
              f"pegasus-integrity {t_peg:.3f} s ({FILES / t_peg:.0f} files/s; transfer "
              f"{t_xfer:.3f} s, integrity {t_peg - t_xfer:.3f} s): {speedup:.1f}x faster "
              f"(target >= 10x) {'PASS' if ok else 'MISS'}")
        return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
