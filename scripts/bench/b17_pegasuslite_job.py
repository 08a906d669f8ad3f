"""B17: one whole PegasusLite job (the 5.1 shape of the pegasuslite test tier: stage-in of
four inputs and the executable, integrity check, kickstart, stage-out) on a worker package
made by `fluxlite pegasus-home`, against the same script on pegasus-wms.worker's own
pegasus-transfer and pegasus-integrity (from PyPI), same run, interleaved. Both sides use
fluxlite's pegasus-kickstart (pegasus-kickstart is C and not on PyPI).

pegasus-wms.worker goes into its own virtualenv (B17_WORKER_VENV, default
/tmp/pegasus-worker-venv, created with pip when missing), never into the project's.
Needs PEGASUS_LITE_COMMON (Pegasus's pegasus-lite-common.sh). Target: <= 1.0x.
Sizes: B17_MIB (total input MiB, default 256), B17_ROUNDS.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repository, for tests/
from common import median, report  # noqa: E402

MIB = int(os.environ.get("B17_MIB", "256"))
ROUNDS = int(os.environ.get("B17_ROUNDS", "3"))
WORKER_VERSION = "5.1.3"
VENV = Path(os.environ.get("B17_WORKER_VENV", "/tmp/pegasus-worker-venv"))


def worker_venv() -> Path:
    py = VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run([str(py), "-c", "import Pegasus.transfer"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(py), "-m", "pip", "install", "-q",
                        f"pegasus-wms.worker=={WORKER_VERSION}"], check=True)
    return py


def pegasus_tools_home(tmp: Path, fluxlite_home: Path, py: Path) -> Path:
    """fluxlite's package with pegasus-transfer and pegasus-integrity replaced by
    pegasus-wms.worker's (which installs no launchers of its own)."""
    cli = subprocess.run([str(py), "-c", "import Pegasus, os; print(os.path.dirname("
                          "Pegasus.__file__))"], capture_output=True, text=True,
                         check=True).stdout.strip() + "/cli"
    home = tmp / "pegasus-tools-home"
    (home / "bin").mkdir(parents=True)
    for name in ("pegasus-kickstart", "pegasus-config"):
        (home / "bin" / name).write_bytes((fluxlite_home / "bin" / name).read_bytes())
    for tool in ("pegasus-transfer", "pegasus-integrity"):
        (home / "bin" / tool).write_text(f'#!/bin/sh\nexec {py} {cli}/{tool}.py "$@"\n')
    for p in (home / "bin").iterdir():
        p.chmod(0o755)
    return home


def main() -> int:
    if not os.environ.get("PEGASUS_LITE_COMMON"):
        plc = "/opt/pegasus-src/pegasus-lite-common.sh"
        if not os.path.isfile(plc):
            raise SystemExit("B17 needs PEGASUS_LITE_COMMON (Pegasus's pegasus-lite-common.sh)")
        os.environ["PEGASUS_LITE_COMMON"] = plc
    from tests.pegasuslite.conftest import LiteJob, make_home

    py = worker_venv()
    base = os.environ.get("BENCH_DIR") or None
    with tempfile.TemporaryDirectory(prefix="fluxlite-b17-", dir=base) as tmpname:
        tmp = Path(tmpname)
        lfns = ("f.a", "f.b", "f.c", "f.d")
        job = LiteJob(tmp, version=WORKER_VERSION, lfns=lfns, size=(MIB << 20) // len(lfns))
        ours = make_home(tmp, WORKER_VERSION)
        theirs = pegasus_tools_home(tmp, ours, py)

        def one(home: Path) -> float:
            os.sync()
            t0 = time.perf_counter()
            rc, _out, err = job.run(home, timeout=900)
            secs = time.perf_counter() - t0
            if rc != 0 or "PegasusLite: exitcode 0" not in err:
                raise SystemExit(f"B17 job failed on {home} ({rc}):\n{err[-3000:]}")
            return secs

        t_fl, t_pg = [], []
        for _ in range(ROUNDS):
            t_fl.append(one(ours))
            t_pg.append(one(theirs))
        ok = report(f"B17 PegasusLite job ({MIB} MiB in, {MIB // len(lfns)} MiB out) on "
                    "fluxlite's tools vs pegasus-wms.worker 5.1.3's pegasus-transfer and "
                    "pegasus-integrity", median(t_fl), median(t_pg), 1.0,
                    extra=f"(rounds: fluxlite {', '.join(f'{t:.2f}' for t in t_fl)}; "
                          f"pegasus {', '.join(f'{t:.2f}' for t in t_pg)})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
