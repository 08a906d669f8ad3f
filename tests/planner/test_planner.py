"""Pegasus's planner output for a Flux site, run to the end on both worker packages.

For each data configuration the workflow of write_workflow.py is planned for the Flux site
that ``fluxlite pegasus-home DIR --site-catalog`` prints, and every planned job runs as
HTCondor would run it (dagrun.py): local jobs here, grid jobs through BLAHP's
flux_submit.sh into a real Flux instance, each judged by its own pegasus-exitcode. The
same submit directory shape runs with Pegasus's own worker package (from the same
``ant dist``), which proves the harness.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from tests.planner.conftest import (
    CONDORIO_PLANNER_ENV,
    blahp_scripts,
    flux_job_env,
    planner_home,
)
from tests.planner.dagrun import Gridmanager, Submit, run_dag

pytestmark = pytest.mark.planner

HERE = Path(__file__).resolve().parent
GUIDE = HERE.parents[1] / "docs" / "pegasus-on-flux.md"
SYSTEM_PATH = "/usr/bin:/bin"
# HTCondor is not needed to plan: the planner's last step runs `condor_submit_dag
# -no_submit` only to write <dag>.condor.sub, which this stand-in writes
CONDOR_SUBMIT_DAG = """#!/bin/sh
for a; do dag=$a; done
printf 'universe = scheduler\\nexecutable = /bin/true\\nqueue\\n' > "$dag.condor.sub"
"""
WALL: dict[str, float] = {}


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)  # type: ignore[call-overload]


def _version(planner: Path) -> str:
    return _run([str(planner / "bin" / "pegasus-version")],
                env={"PATH": SYSTEM_PATH}).stdout.strip()


def _pegasus_worker(planner: Path, tmp: Path) -> Path:
    """Pegasus's own worker package, untarred as PegasusLite would."""
    (tarball,) = (planner / "share" / "pegasus" / "worker-packages").glob("pegasus-worker-*.tar.gz")
    with tarfile.open(tarball) as tf:
        tf.extractall(tmp / "pegasus-worker", filter="tar")
    (home,) = (tmp / "pegasus-worker").iterdir()
    return home


def _flux_site(tmp: Path, version: str, config: str) -> dict[str, object]:
    """The Flux site, as `fluxlite pegasus-home --site-catalog` prints it."""
    cmd = [sys.executable, "-m", "fluxlite", "pegasus-home", str(tmp / "fluxlite-home"),
           "--pegasus-version", version, "--site-catalog", "--data-configuration", config]
    if config == "sharedfs":
        cmd += ["--shared-scratch", str(tmp / "flux-scratch")]
    p = _run(cmd)
    assert p.returncode == 0, p.stderr
    (site,) = yaml.safe_load(p.stdout)["sites"]
    return site


def _site_catalog(tmp: Path, flux_site: dict[str, object]) -> Path:
    def dirs(kind: str, path: Path) -> dict[str, object]:
        return {"type": kind, "path": str(path),
                "fileServers": [{"url": path.as_uri(), "operation": "all"}]}
    local = {"name": "local", "arch": "x86_64", "os.type": "linux",
             "directories": [dirs("sharedScratch", tmp / "local-scratch"),
                             dirs("localStorage", tmp / "outputs")]}
    p = tmp / "sites.yml"
    p.write_text(yaml.safe_dump({"pegasus": "5.0", "sites": [local, flux_site]},
                                sort_keys=False))
    return p


def _guide(name: str) -> str:
    """A block of docs/pegasus-on-flux.md marked for this tier."""
    from tests.integration.test_docs_examples import blocks

    (block,) = [b for b in blocks(GUIDE) if b.action == "skip" and
                b.options.get("reason", "").startswith(f"planner tier: {name} ")]
    return block.text


def _plan(planner: Path, tmp: Path, config: str) -> subprocess.CompletedProcess[str]:
    """Plan as the guide says: its properties and its pegasus-plan command line."""
    stub = tmp / "stub-bin"
    stub.mkdir()
    (stub / "condor_submit_dag").write_text(CONDOR_SUBMIT_DAG)
    (stub / "condor_submit_dag").chmod(0o755)
    (tmp / "pegasus.properties").write_text(
        _guide("pegasus.properties").replace("nonsharedfs", config))
    cmd = shlex.split(_guide("pegasus-plan"), comments=True)
    assert cmd[0] == "pegasus-plan"
    cmd[0] = str(planner / "bin" / "pegasus-plan")
    if config != "nonsharedfs":
        i = cmd.index("--staging-site")
        del cmd[i:i + 2]
    cmd[-1:-1] = ["--relative-submit-dir", "run"]
    env = {"PATH": f"{stub}:{planner / 'bin'}:{SYSTEM_PATH}", "HOME": str(tmp / "home"),
           "PEGASUS_PYTHON": "/usr/bin/python3", "LANG": "C.UTF-8"}
    return _run(cmd, cwd=tmp, env=env)


def _seed_checkpoint(submit: Path) -> bool:
    """A checkpoint from an earlier run where the planner stages it in from: the job
    resumes from it. Without one, Pegasus's own pegasus-transfer retries the missing file
    for minutes (its 5**(n+2) s back-off) before it lets the job go on (nonsharedfs), and
    HTCondor's file transfer holds the job (condorio: the checkpoint is one of its
    transfer_input_files)."""
    job = submit / "00" / "00" / "keg_checkpointed"
    sh = job.with_suffix(".sh")
    m = sh.exists() and re.search(r'"url": "file://([^"]*/state\.ckpt)", "checkpoint": "true"',
                                  sh.read_text())
    if m:
        ckpt = Path(m.group(1))
    else:
        sub = Submit.read(job.with_suffix(".sub"), 0)
        found = [f for f in sub.get("transfer_input_files").split(",")
                 if Path(f).name == "state.ckpt"]
        if not found:
            return False
        ckpt = sub.iwd(submit) / found[0]
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.write_text("1\n")
    return True


def _stderr(out: Path | None) -> str:
    err = out and out.with_name(out.name.replace(".out", ".err"))
    return err.read_text(errors="replace") if err and err.exists() else ""


def _blah_config(tmp: Path, scripts: Path, flux_env: dict[str, str]) -> Path:
    """The guide's blah.config with this machine's directories: the submit directory and
    the sandboxes are on a filesystem the Flux jobs see, so every transfer_input_files
    entry (the .meta files too) is copied into the job's directory."""
    ours = {"supported_lrms": "flux", "flux_binpath": flux_env["PATH"].split(":")[0],
            "blah_shared_directories": str(tmp), "blah_libexec_directory": str(scripts)}
    keys = [line.split("=", 1)[0] for line in _guide("blah.config").splitlines()
            if "=" in line and not line.startswith("#")]
    assert sorted(keys) == sorted(ours), keys
    cfg = tmp / "blah.config"
    cfg.write_text("".join(f"{k}={ours[k]}\n" for k in keys))
    return cfg


@pytest.mark.parametrize("config", ["nonsharedfs", "sharedfs", "condorio"])
@pytest.mark.parametrize("worker", ["fluxlite", "pegasus"])
def test_planned_workflow_runs_into_flux(tmp_path: Path, flux_uri: str, worker: str,
                                         config: str) -> None:
    from Pegasus.tools import kickstart_parser

    planner = planner_home()
    if config == "condorio":
        planner = planner_home(CONDORIO_PLANNER_ENV) or planner
    scripts = blahp_scripts()
    assert planner is not None and scripts is not None
    version = _version(planner)
    site = _flux_site(tmp_path, version, config)
    if worker == "pegasus":
        site["profiles"]["env"]["PEGASUS_HOME"] = str(  # type: ignore[index]
            _pegasus_worker(planner, tmp_path))
    _site_catalog(tmp_path, site)
    py = _run([str(planner / "bin" / "pegasus-config"), "--python"],
              env={"PATH": SYSTEM_PATH}).stdout.strip()
    p = _run([sys.executable, str(HERE / "write_workflow.py"), str(tmp_path)],
             env={"PYTHONPATH": py, "PATH": SYSTEM_PATH})
    assert p.returncode == 0, p.stderr

    p = _plan(planner, tmp_path, config)
    if p.returncode != 0 and config == "condorio" and "glite" in p.stdout + p.stderr:
        pytest.skip(f"the planner {version} refuses condorio for a glite site "
                    f"(set ${CONDORIO_PLANNER_ENV} to a 5.1 branch build)")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    submit = tmp_path / "submit" / "run"
    (dag,) = submit.glob("*.dag")

    seeded = _seed_checkpoint(submit)
    home = tmp_path / "home"
    fenv = {**flux_job_env(home), "FLUX_URI": flux_uri}
    grid = Gridmanager(scripts, _blah_config(tmp_path, scripts, fenv),
                       tmp_path / "sandboxes", fenv)
    post_env = {"PATH": f"{planner / 'bin'}:{SYSTEM_PATH}", "HOME": str(home),
                "PEGASUS_PYTHON": "/usr/bin/python3"}
    t0 = time.monotonic()
    results = run_dag(dag, grid, post_env)
    wall = time.monotonic() - t0
    WALL[f"{config}/{worker}"] = wall
    print(f"\nplanner {version} {config} on the {worker} worker package: "
          f"{len(results)} jobs in {wall:.1f} s")

    n_jobs = sum(1 for line in dag.read_text().splitlines() if line.startswith("JOB "))
    for r in results:
        assert r.job_exit == 0 and r.post_exit == 0, (
            f"{r.name} ({r.universe}): exit {r.job_exit}, pegasus-exitcode {r.post_exit}\n"
            f"{r.post_output}\n{_stderr(r.out)[-4000:]}")
    assert len(results) == n_jobs
    assert any(r.universe == "grid" for r in results)
    # each Flux job used the site's worker package: PegasusLite says where it found its
    # tools, a sharedfs job runs the package's pegasus-kickstart itself
    tools = f"{site['profiles']['env']['PEGASUS_HOME']}/bin"  # type: ignore[index]
    for r in results:
        if r.universe == "grid":
            assert (f"Using existing Pegasus binaries in {tools}\n" in _stderr(r.out)
                    or f"executable = {tools}/pegasus-kickstart\n"
                    in (submit / "00" / "00" / f"{r.name}.sub").read_text()), r.name

    # every job's record parses with Pegasus's own kickstart parser
    for r in results:
        assert r.out is not None
        recs = kickstart_parser.Parser(str(r.out)).parse_stampede()
        inv = [x for x in recs if x.get("invocation")]
        assert inv, f"{r.name}: {r.out} has no invocation record Pegasus can parse"
        assert all(x.get("exitcode") == 0 for x in inv), (r.name, inv)

    out = tmp_path / "outputs"
    assert (out / "f.d").read_text() == ("f.d by analyze\nf.c1 by findrange1\n"
                                         "f.b1 by preprocess\nalpha\n"
                                         "f.c2 by findrange2\nf.b2 by preprocess\nalpha\n")
    run = "run 2" if seeded else "run 1"
    assert (out / "f.e").read_text() == f"f.e by checkpointed ({run})\n" + (out / "f.d").read_text()
    if config == "nonsharedfs":
        # the planner's .in.meta of the first job names its input as data, and the
        # worker package verified it
        metas = list(submit.glob("**/*preprocess*.in.meta"))
        assert metas and '"_type": "data"' in metas[0].read_text()
