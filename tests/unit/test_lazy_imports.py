"""A trivial `fluxlite run` imports only what it uses.

Most of a short job's time is the interpreter's start and fluxlite's imports, so a module
imported at the top of a file for a use that a plain run never reaches is paid by every
job. The run below (one 1 KiB file:// input, /bin/true, one output, a kickstart record)
goes through the command line's ``main`` in a fresh interpreter started with ``-S``: no
site hooks (an editable install's finder imports pathlib and urllib.parse on its own), so
that every module the run leaves in ``sys.modules`` is one fluxlite's code imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fluxlite

# Modules a trivial run does not need, with what each costs to import on top of what the
# run imports anyway (-X importtime in a fresh `python -S`, min-median of 11 on a 2-core
# machine, what each imports in turn included). A module here that a run starts to import
# needs a function-level import where it is used, or a lighter way to do the same.
HEAVY: dict[str, str] = {
    "psutil": "21-33 ms; the task monitor reads /proc",
    "yaml": "13-15 ms; reading kickstart records (stats, report), not writing one",
    "jsonschema": "62-66 ms; the schema's tests only",
    "orjson": "5.5-5.8 ms with uuid, platform and datetime; the JSON record and .meta files",
    "uuid": "1.9-2.1 ms with platform (orjson imports it)",
    "platform": "1.5-1.8 ms",
    "secrets": "1.8-2.8 ms with hmac, base64 and random; a temporary name's hex digits are "
               "os.urandom's",
    "random": "0.7-0.8 ms; the jitter of a retry",
    "tempfile": "3.8-5.1 ms with shutil and random; fluxlite.fsutil makes the names",
    "shutil": "2.7-3.6 ms with zlib, bz2 and lzma; the worker directory is emptied by "
              "descriptor, argparse is given its width",
    "bz2": "0.7-0.9 ms (shutil imports it)",
    "lzma": "0.8-1.0 ms (shutil imports it)",
    "datetime": "1.1-1.2 ms; a record's times are made from time.localtime",
    "socket": "2.0-2.4 ms with selectors and its enums; the host's name and address come "
              "from _socket",
    "subprocess": "1.6-1.7 ms; the task is spawned by fluxlite's supervisor",
    "http": "14-16 ms (http.client); the http backend only",
    "urllib.request": "20-23 ms",
    "ssl": "7 ms",
    "email": "9.5-12 ms",
    "asyncio": "24-29 ms",
    "concurrent.futures.process": "13-16 ms with multiprocessing",
    "multiprocessing": "6-9 ms",
    "boto3": "300-760 ms; the s3 backend only",
    "botocore": "with boto3",
    "flux": "65-330 ms with flux.job (the Flux bindings): only when Flux is asked for",
    "typing": "3-4 ms, 13-16 ms under python -S (a pool worker); annotations only: every "
              "module reads its names under `TYPE_CHECKING = False`",
}


def _heavy(name: str) -> str | None:
    for h in HEAVY:
        if name == h or name.startswith(h + "."):
            return h
    return None


# Run in the child: fluxlite's own import path and the site-packages the tests see, then
# the run; the modules it imported go to a file.
_CHILD = """
import sys
sys.path[:0] = {paths!r}
start = set(sys.modules)
from fluxlite.cli import main
rc = main(["run", "-q", {job!r}])
new = sorted(set(sys.modules) - start)
with open({out!r}, "w") as fh:
    fh.write(str(rc) + "\\n")
    fh.writelines(m + "\\n" for m in new)
"""

# what the JSON record's writer needs (orjson, and what orjson imports)
_JSON_RECORD = {"orjson", "uuid", "platform", "datetime"}


@pytest.mark.parametrize("task", ["/bin/true", "/bin/sleep 0.3"])
def test_a_trivial_run_imports_nothing_heavy(tmp_path: Path, task: str) -> None:
    """/bin/true ends before the task monitor's first sample; a task of 0.3 s is sampled
    (its JSON record says so), from /proc, without psutil."""
    exe, *args = task.split()
    src = tmp_path / "in.dat"
    src.write_bytes(os.urandom(1024))
    (tmp_path / "out").mkdir()
    (tmp_path / "wd").mkdir()
    records = {"kickstart": f"{tmp_path}/job.out"}
    if args:
        records["json"] = f"{tmp_path}/job.json.out"
    job = tmp_path / "job.json"
    job.write_text(json.dumps({
        "fluxlite": 1, "name": "trivial", "executable": exe, "arguments": args,
        "inputs": [{"lfn": "in.dat", "urls": [f"file://{src}"]}],
        "outputs": [{"lfn": "in.dat", "urls": [f"file://{tmp_path}/out/in.dat"]}],
        "records": records}))
    out = tmp_path / "modules.txt"
    paths = [os.path.dirname(os.path.dirname(os.path.abspath(fluxlite.__file__)))]
    paths += [p for p in sys.path if p.endswith("-packages")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUX_", "PYTHON"))}
    env["TMPDIR"] = str(tmp_path / "wd")
    code = _CHILD.format(paths=paths, job=str(job), out=str(out))
    proc = subprocess.run([sys.executable, "-S", "-c", code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rc, *imported = out.read_text().splitlines()
    assert rc == "0", proc.stderr
    assert (tmp_path / "out" / "in.dat").read_bytes() == src.read_bytes()
    assert (tmp_path / "job.out").stat().st_size > 0
    assert "fluxlite.runner" in imported  # the run went through the whole job
    allowed = _JSON_RECORD if args else set()
    found = sorted(f"{m} (as {_heavy(m)}: {HEAVY[_heavy(m)]})" for m in imported
                   if _heavy(m) and _heavy(m) not in allowed)
    assert not found, "a trivial run imported:\n" + "\n".join(found)
    if args:
        monitor = json.loads((tmp_path / "job.json.out").read_text())["task"]["monitor"]
        assert monitor["samples"] >= 1 and monitor["peak_procs"] >= 1


_GC_CHILD = """
import gc, sys
sys.path[:0] = {paths!r}
gc.disable()  # as python -m fluxlite starts
from fluxlite.cli import main
rc = main(["validate", {job!r}], program=True)
print(rc, gc.isenabled(), gc.get_freeze_count() > 1000)
gc.unfreeze()
gc.disable()
rc = main(["validate", {job!r}])  # a library caller's collector is left as it was
print(rc, gc.isenabled(), gc.get_freeze_count())
"""


def test_the_collector_runs_again_once_the_command_runs(tmp_path: Path) -> None:
    """The start's objects are frozen out of the cyclic collector and the collector is
    started again before the command runs (a cluster runs for days); a caller of main() in
    its own process keeps its collector as it was."""
    job = tmp_path / "job.json"
    job.write_text('{"fluxlite": 1, "executable": "/bin/true"}')
    paths = [os.path.dirname(os.path.dirname(os.path.abspath(fluxlite.__file__)))]
    paths += [p for p in sys.path if p.endswith("-packages")]
    code = _GC_CHILD.format(paths=paths, job=str(job))
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [ln for ln in proc.stdout.splitlines() if ln[:2] == "0 "] == ["0 True True",
                                                                       "0 False 0"]


# A pool worker's process: what it imports before its fork (the guard's) and after it
# (the local launcher), on the path its command line gives it, without site processing.
_WORKER_CHILD = """
import sys
a = sys.argv; i = a.index('--path'); sys.path[:] = a[i + 1:]
start = set(sys.modules)
import fluxlite.cluster.pool.worker, fluxlite.cluster.pool.guard
from fluxlite.cluster import executors
from fluxlite.flux import lean
print("\\n".join(sorted(set(sys.modules) - start)))
"""

# the pool's messages are orjson's (and what orjson imports); the worker's Flux handle is
# the C module's alone (fluxlite.flux.lean), never the flux package
_WORKER_ALLOWED = _JSON_RECORD


def test_a_pool_worker_imports_nothing_heavy() -> None:
    """Every node of a pool pays its worker's imports before its first task: no Flux
    package, no job description or record renderers, no tempfile or shutil."""
    from fluxlite.cluster.pool import worker

    cmd = worker.command(None, ["svc", "0", "1024", "ns"])
    argv = [sys.executable, "-S", "-P", "-c", _WORKER_CHILD, *cmd[cmd.index("--path"):]]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUX_", "PYTHON"))}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    imported = proc.stdout.split()
    assert "fluxlite.cluster.pool.worker" in imported
    found = sorted(f"{m} (as {_heavy(m)}: {HEAVY[_heavy(m)]})" for m in imported
                   if _heavy(m) and _heavy(m) not in _WORKER_ALLOWED)
    assert not found, "a pool worker imported:\n" + "\n".join(found)
    mine = [m for m in imported if m.startswith(("fluxlite.spec", "fluxlite.record"))]
    assert mine == [], "a pool worker imported the job description or the record writers"
    # its modules' loggers are fluxlite.lazylog's: logging (with traceback) waits for a
    # warning
    assert "logging" not in imported and "traceback" not in imported


def test_a_pool_workers_command_line_starts_it_without_site() -> None:
    """The coordinator's command line for a worker: this interpreter with -S -P and the
    coordinator's import path (fluxlite's root first), the module's name before its
    arguments; it reaches the worker's main (here: a usage error, exit 2) from any
    directory. Another interpreter gets ``-m`` and its own site."""
    from fluxlite.cluster.pool import worker

    args = ["svc", "0", "1024", "ns"]
    assert worker.command("/opt/py/bin/python3", args) == [
        "/opt/py/bin/python3", "-m", "fluxlite.cluster.pool.worker", *args]
    cmd = worker.command(None, args)
    assert cmd[:4] == [sys.executable, "-S", "-P", "-c"]
    name = cmd.index("fluxlite.cluster.pool.worker")
    assert cmd[name + 1:name + 5] == args and cmd[name + 5] == "--path"
    root = os.path.dirname(os.path.dirname(os.path.abspath(fluxlite.__file__)))
    assert cmd[name + 6] == root
    short = worker.command(None, ["only-one"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUX_", "PYTHON"))}
    proc = subprocess.run(short, env=env, capture_output=True, text=True, timeout=60,
                          cwd="/")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("usage: python -m fluxlite.cluster.pool.worker SERVICE"), (
        proc.stderr)


_CLUSTER_CHILD = """
import sys
sys.path[:0] = {paths!r}
start = set(sys.modules)
from fluxlite.cli import main
rc = main(["cluster", "-q", {dag!r}, "-o", {out!r}, "--tmpdir", {tmp!r}])
new = sorted(set(sys.modules) - start)
print(rc)
print("\\n".join(new))
"""


def test_a_dag_cluster_imports_no_job_description(tmp_path: Path) -> None:
    """A DAG of commands, run locally with its kickstart records, reads no job.json: the
    job description (fluxlite.spec) is imported only for a JSON job list, and no YAML
    reader, psutil or Flux package is imported either."""
    dag = tmp_path / "d.dag"
    dag.write_text("TASK a /bin/true\nTASK b /bin/echo hi\nEDGE a b\n")
    paths = [os.path.dirname(os.path.dirname(os.path.abspath(fluxlite.__file__)))]
    paths += [p for p in sys.path if p.endswith("-packages")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUX_", "PYTHON"))}
    code = _CLUSTER_CHILD.format(paths=paths, dag=str(dag), out=str(tmp_path / "d.out"),
                                 tmp=str(tmp_path))
    proc = subprocess.run([sys.executable, "-S", "-c", code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rc, *imported = proc.stdout.split()
    assert rc == "0", proc.stderr
    assert "fluxlite.cluster.scheduler" in imported and "fluxlite.record.kickstart" in imported
    assert "hi" in (tmp_path / "d.out").read_text()
    found = sorted(m for m in imported if m.startswith("fluxlite.spec")
                   or _heavy(m) in ("yaml", "psutil", "flux"))
    assert not found, "a DAG cluster imported:\n" + "\n".join(found)
