"""Small helpers shared by the benchmarks: timing, medians, and one printed line per figure.

Benchmarks print ratios against a baseline measured in the same run: these machines are
shared and noisy, so absolute times mislead.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

PYTHON = sys.executable


def fresh_bytecode() -> None:
    """fluxlite's modules compiled as an install leaves them: a tree edited since its
    bytecode was written (or run with PYTHONDONTWRITEBYTECODE) would otherwise compile
    them again in every process a benchmark starts, a pool's workers included."""
    import fluxlite

    subprocess.run([PYTHON, "-m", "compileall", "-q", os.path.dirname(fluxlite.__file__)],
                   check=True, stdout=subprocess.DEVNULL)


fresh_bytecode()


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_quiet(cmd: Sequence[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(cmd)}\n"
                         + proc.stderr.decode(errors="replace")[-2000:])
    return proc


def interleaved(a: Callable[[], object], b: Callable[[], object], rounds: int
                ) -> tuple[list[float], list[float]]:
    """Time a and b alternately so that both see the same machine load."""
    ta: list[float] = []
    tb: list[float] = []
    for _ in range(rounds):
        ta.append(timed(a))
        tb.append(timed(b))
    return ta, tb


def bare_loop(n: int, width: int) -> None:
    """posix_spawn /bin/true n times, ``width`` at a time, each reaped by wait: the floor
    of any launcher."""
    argv = ["/bin/true"]
    env = dict(os.environ)
    running = started = 0
    while started < n or running:
        while running < width and started < n:
            os.posix_spawn(argv[0], argv, env)
            started += 1
            running += 1
        os.wait()
        running -= 1


def make_file(path: str, mib: int) -> str:
    """Write ``mib`` MiB of random bytes to path; return their sha256 (the read warms the
    page cache, as the benchmarks want for their baseline)."""
    with open(path, "wb") as fh:
        block = os.urandom(1 << 20)
        for _ in range(mib):
            fh.write(block)
    return hashlib_sha256(path)


def hashlib_sha256(path: str) -> str:
    """The baseline of verified staging: hashlib's sha256 of a file, read once in 4 MiB."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(4 << 20)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def report(name: str, value: float, baseline: float, target: float, lower_is_better: bool = True,
           unit: str = "s", extra: str = "") -> bool:
    ratio = value / baseline if baseline else float("inf")
    ok = ratio <= target if lower_is_better else ratio >= target
    sign = "<=" if lower_is_better else ">="
    print(f"{name}: {value:.4f} {unit} vs baseline {baseline:.4f} {unit}: ratio {ratio:.2f}x "
          f"(target {sign} {target:g}x) {'PASS' if ok else 'MISS'}{(' ' + extra) if extra else ''}")
    return ok


def fluxlite_env(tmpdir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
    env["TMPDIR"] = tmpdir
    return env


def main_inside_flux(name: str, script: str, inside: Callable[[str], int], size: int) -> int:
    """A benchmark's main(): re-run ``script`` with ``--inside TMP`` under a fresh
    ``flux start --test-size=size`` (with no FLUX_ variables of an enclosing instance), and
    call ``inside(TMP)`` there; skipped, saying so, without flux."""
    import shutil
    import tempfile

    if len(sys.argv) > 2 and sys.argv[1] == "--inside":
        return inside(sys.argv[2])
    if shutil.which("flux") is None:
        print(f"{name} skipped: flux is not on PATH")
        return 0
    with tempfile.TemporaryDirectory(prefix=f"fluxlite-{name.lower()}-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
        p = subprocess.run(["flux", "start", f"--test-size={size}", PYTHON,
                            os.path.abspath(script), "--inside", tmp], env=env, cwd=tmp)
        return p.returncode


def instance_result(script: str, tmp: str, mode: str, size: int) -> dict:
    """Run ``script --inside TMP MODE SIZE OUT`` under a fresh ``flux start
    --test-size=SIZE`` (no FLUX_ variables of an enclosing instance) and return the JSON
    it wrote to OUT."""
    import json

    out = os.path.join(tmp, f"res-{mode}-{size}.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
    subprocess.run(["flux", "start", f"--test-size={size}", PYTHON, os.path.abspath(script),
                    "--inside", tmp, mode, str(size), out], env=env, cwd=tmp, check=True)
    with open(out, encoding="utf-8") as fh:
        return json.load(fh)


def trivial_job(tmp: str) -> str:
    """B1's job in tmp: one 1 KiB file:// input, /bin/true, one output, a kickstart record;
    the path of its job.json."""
    import json

    src = os.path.join(tmp, "in.dat")
    with open(src, "wb") as fh:
        fh.write(os.urandom(1024))
    os.makedirs(os.path.join(tmp, "out"), exist_ok=True)
    job = {"fluxlite": 1, "name": "b1", "executable": "/bin/true",
           "inputs": [{"lfn": "in.dat", "urls": [f"file://{src}"]}],
           "outputs": [{"lfn": "in.dat", "urls": [f"file://{tmp}/out/in.dat"]}],
           "records": {"kickstart": os.path.join(tmp, "job.out")}}
    jp = os.path.join(tmp, "job.json")
    with open(jp, "w") as fh:
        json.dump(job, fh)
    return jp
