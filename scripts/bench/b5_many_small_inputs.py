"""B5 and B5': 1000 x 64 KiB file:// inputs with sha256 verification.

B5': fluxlite's stage-in of a job (`fluxlite run` of /bin/true with 1000 file:// inputs
that carry their sha256; the stage-in phase's duration from the JSON record) against what a
shell script would do for the same files: `sha256sum -c` over the sources, then one `cp` of
them into a directory. Both are run with argument lists, never through a shell, round by
round interleaved, each round into a new directory. Target: <= 1.1x. The whole
`fluxlite run` (interpreter start, imports, records) and the CPU time of both sides are
printed beside it. Nothing is deleted until the last round: ext4 without a journal skips
the inodes freed in the last 30 seconds when it allocates new ones, so that a round after
a deletion of thousands of files pays for it in each file it creates (whichever side runs
then). fluxlite's worker directories are kept ("keep": "always") for the same reason.

B5: fluxlite against what PegasusLite runs for the same stage-in: pegasus-transfer -n 1 on a
JSON list of the 1000 files, then pegasus-integrity --verify with a .meta file, both from
pegasus-wms.worker 5.1.3 installed from PyPI into this benchmark's own virtualenv
(FLUXLITE_BENCH_PEGASUS_VENV, default /tmp/fluxlite-bench-pegasus; created when missing).
Target: fluxlite >= 10x faster. B5_PEGASUS=0 leaves it out.
FILES, KIB and ROUNDS (rounds of B5'; Pegasus runs once) can be lowered for a quick look.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import PYTHON, fluxlite_env, median, report  # noqa: E402

FILES = int(os.environ.get("FILES", "1000"))
KIB = int(os.environ.get("KIB", "64"))
ROUNDS = int(os.environ.get("ROUNDS", "7"))
PEGASUS_TOO = os.environ.get("B5_PEGASUS", "1") != "0"
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


def shell_baseline(src: str, names: list[str], sums: str, dst: str) -> tuple[float, float]:
    """`sha256sum -c SUMS && cp SRC... DST`, as a script would stage in verified files:
    (wall, CPU) seconds."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(["sha256sum", "--quiet", "-c", sums], cwd=src, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["cp", "--", *(os.path.join(src, n) for n in names), dst], check=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def fluxlite_run(jp: str, rec: str, env: dict[str, str]) -> tuple[float, float, float]:
    """(whole run, its stage-in phase, CPU seconds) of one `fluxlite run`."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([PYTHON, "-m", "fluxlite", "run", "-q", jp], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"fluxlite failed: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    with open(rec) as fh:
        phases = json.load(fh)["phases"]
    return wall, next(p["duration"] for p in phases if p["name"] == "stage-in"), \
        ru.ru_utime + ru.ru_stime


def main() -> int:
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
        sums = os.path.join(tmp, "SHA256SUMS")
        with open(sums, "w") as fh:
            fh.writelines(f"{s}  {n}\n" for n, s in zip(names, shas))

        wd = os.path.join(tmp, "wd")
        os.mkdir(wd)
        rec = os.path.join(tmp, "b5.json")
        job = {"fluxlite": 1, "name": "b5", "executable": "/bin/true",
               "inputs": [{"lfn": n, "urls": [f"file://{src}/{n}"], "sha256": s}
                          for n, s in zip(names, shas)],
               "records": {"kickstart": os.path.join(tmp, "b5.ks"), "json": rec},
               "workdir": {"keep": "always"}}
        jp = os.path.join(tmp, "job.json")
        with open(jp, "w") as fh:
            json.dump(job, fh)
        env = fluxlite_env(wd)

        fluxlite_run(jp, rec, env)  # warm: byte code, page cache of the sources
        t_fl: list[float] = []
        t_stage: list[float] = []
        t_sh: list[float] = []
        cpu_fl: list[float] = []
        cpu_sh: list[float] = []
        for r in range(ROUNDS):
            dst = os.path.join(tmp, f"cp{r}")
            os.mkdir(dst)
            # the previous round's dirty pages are written back now, not during the next
            os.sync()
            wall, cpu = shell_baseline(src, names, sums, dst)
            t_sh.append(wall)
            cpu_sh.append(cpu)
            os.sync()
            wall, stage, cpu = fluxlite_run(jp, rec, env)
            t_fl.append(wall)
            t_stage.append(stage)
            cpu_fl.append(cpu)
        ok = report(f"B5' {FILES} x {KIB} KiB file:// inputs with sha256: fluxlite stage-in "
                    f"phase vs sha256sum -c && cp (median of {ROUNDS}, interleaved)",
                    median(t_stage), median(t_sh), 1.1)
        whole = median(t_fl)
        print(f"B5' detail: whole fluxlite run {whole:.3f} s ({whole / median(t_sh):.2f}x"
              f" the shell), CPU {median(cpu_fl):.3f} s against the shell's "
              f"{median(cpu_sh):.3f} s; load {os.getloadavg()[0]:.2f}; stage-in "
              f"{FILES / median(t_stage):.0f} files/s; rounds "
              f"(stage-in / shell): "
              + ", ".join(f"{a:.3f}/{b:.3f}" for a, b in zip(t_stage, t_sh)))
        if not PEGASUS_TOO:
            return 0 if ok else 1

        py, ptransfer, pintegrity = pegasus_tools()
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
        ok5 = speedup >= 10
        print(f"B5 {FILES} x {KIB} KiB file:// inputs with sha256: fluxlite run {fl:.3f} s "
              f"(median of {ROUNDS}, {FILES / fl:.0f} files/s) vs pegasus-transfer -n 1 + "
              f"pegasus-integrity {t_peg:.3f} s ({FILES / t_peg:.0f} files/s; transfer "
              f"{t_xfer:.3f} s, integrity {t_peg - t_xfer:.3f} s): {speedup:.1f}x faster "
              f"(target >= 10x) {'PASS' if ok5 else 'MISS'}")
        return 0 if ok and ok5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
