"""The Flux front ends where there is no Flux: one clear line, or a local run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Fluxlite


def _path_without_flux() -> str:
    flux = shutil.which("flux")
    dirs = os.environ.get("PATH", os.defpath).split(os.pathsep)
    if flux:
        dirs = [d for d in dirs if os.path.realpath(d) != os.path.dirname(os.path.realpath(flux))]
    return os.pathsep.join(dirs)


@pytest.fixture
def no_bindings(tmp_path: Path) -> str:
    """A PYTHONPATH on which `import flux` fails, as where the bindings are not installed."""
    d = tmp_path / "nobindings"
    d.mkdir()
    (d / "flux.py").write_text("raise ImportError(\"No module named 'flux'\")\n")
    return str(d)


def _job(fl: Fluxlite, data: Path) -> Path:
    task = data / "task.sh"
    task.write_text("#!/bin/sh\necho ran > out.txt\n")
    task.chmod(0o755)
    return fl.write_job({"executable": str(task), "name": "noflux",
                         "records": {"kickstart": str(fl.tmp / "ks.yml")},
                         "outputs": [{"lfn": "out.txt", "urls": [f"file://{data}/out.txt"]}]})


def test_submit_without_flux_fails_with_one_line(fl: Fluxlite, data: Path) -> None:
    job = _job(fl, data)
    p = fl.run("submit", str(job), env={"PATH": _path_without_flux()})
    assert p.returncode != 0
    err = p.stderr.decode().strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("fluxlite: error: ") and "flux" in err[0][16:]
    assert p.stdout == b""


def test_submit_without_bindings_says_how_to_install(fl: Fluxlite, data: Path,
                                                     no_bindings: str) -> None:
    job = _job(fl, data)
    p = fl.run("submit", str(job), env={"FLUX_URI": "local:///nonexistent/local-0",
                                        "PYTHONPATH": no_bindings})
    assert p.returncode != 0
    err = p.stderr.decode().strip().splitlines()
    assert len(err) == 1, err
    assert "flux-python" in err[0]


def test_run_with_flux_uri_but_no_bindings_runs_locally(fl: Fluxlite, data: Path,
                                                        no_bindings: str) -> None:
    job = _job(fl, data)
    p = fl.run("run", str(job), env={"FLUX_URI": "local:///nonexistent/local-0",
                                     "PYTHONPATH": no_bindings})
    assert p.returncode == 0, p.stderr.decode()
    err = p.stderr.decode()
    warnings = [ln for ln in err.splitlines() if "FLUX_URI is set" in ln]
    assert len(warnings) == 1, err
    assert "flux-python" in warnings[0] and "running locally" in warnings[0]
    assert (data / "out.txt").read_text() == "ran\n"
    assert "jobids:" in (fl.tmp / "ks.yml").read_text()


def test_batch_script_needs_no_flux(fl: Fluxlite, data: Path) -> None:
    task = data / "task.sh"
    task.write_text("#!/bin/sh\ntrue\n")
    task.chmod(0o755)
    weird = "it's a \"job\" $(rm -rf /)"
    job = fl.write_job({"executable": str(task), "name": weird,
                        "resources": {"nodes": 2, "tasks": 4, "cores_per_task": 2,
                                      "gpus_per_task": 1, "time_limit": 3600,
                                      "queue": "pbatch", "bank": "proj"}},
                       name="my job.json")
    p = fl.run("batch-script", str(job), "--env", "A=x y;z",
               env={"PATH": _path_without_flux()})
    assert p.returncode == 0, p.stderr.decode()
    script = p.stdout.decode()
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    flux_lines = [ln for ln in lines if ln.startswith("#FLUX: ")]
    # every directive before the first line that is not a comment (flux batch's rule)
    first_code = next(i for i, ln in enumerate(lines) if ln and not ln.startswith("#"))
    assert all(lines.index(ln) < first_code for ln in flux_lines)
    for d in ("--bank=proj", "--time-limit=60m",
              "--queue=pbatch", "--exclusive", "--nodes=2", "--nslots=4",
              "--cores-per-slot=2", "--gpus-per-slot=1", "--signal=SIGUSR1@6m"):
        assert f"#FLUX: {d}" in lines, (d, flux_lines)
    assert "export A='x y;z'" in lines
    assert any(ln.startswith("cd ") for ln in lines)
    assert lines[-1] == "exit $user_retcode"
    assert "'" + str(job) + "'" in script  # the path with a space, quoted
    assert subprocess.run(["bash", "-n"], input=script.encode()).returncode == 0


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("5m", 300), ("2h", 7200),
                                               ("1d", 86400), ("10", 10), ("1.5m", 90),
                                               ("1h30m", 5400)])
def test_time_limit_durations(text: str, seconds: float) -> None:
    from fluxlite.flux.submit import parse_duration

    assert parse_duration(text) == seconds


def test_bad_time_limit_is_one_line(fl: Fluxlite, data: Path) -> None:
    p = fl.run("batch-script", str(_job(fl, data)), "--time-limit=soon")
    assert p.returncode == 2
    assert p.stderr.decode().strip() == ("fluxlite: error: --time-limit: 'soon' is not a "
                                         "duration (e.g. 90s, 30m, 2h, 1h30m)")


def test_warning_comes_before_the_term() -> None:
    from fluxlite.execute.timelimit import from_limits
    from fluxlite.flux.submit import warning_lead
    from fluxlite.spec import JobSpec

    spec = JobSpec.from_dict({"fluxlite": 1, "executable": "/bin/true"})
    for limit in (20.0, 60.0, 600.0, 7200.0):
        lead = warning_lead(spec, limit)
        term = from_limits(checkpoint_time=spec.limits.checkpoint_time,
                           kill_grace=spec.limits.kill_grace, timeleft=limit).term_after
        assert lead is not None and term is not None
        assert limit - lead < term < limit  # USR1 first, then fluxlite's TERM, then the limit


def test_batch_script_newline_in_a_value_cannot_inject(fl: Fluxlite, data: Path) -> None:
    # a queue with a quote and a newline would end the directive line and start a command
    marker = fl.tmp / "injected"
    task = data / "task.sh"
    task.write_text("#!/bin/sh\ntrue\n")
    task.chmod(0o755)
    job = fl.write_job({"executable": str(task), "name": "inj"})
    p = fl.run("batch-script", str(job), "--queue", f"q'\ntouch {marker} #",
               env={"PATH": _path_without_flux()})
    if p.returncode == 0:
        script = p.stdout.decode()
        # whatever was printed, no line of it runs the value as a command
        subprocess.run(["bash", "-c", script.split("set -m", 1)[0]], cwd=fl.tmp, timeout=30)
        assert not marker.exists()
    else:
        err = p.stderr.decode().strip().splitlines()
        assert len(err) == 1 and "--queue" in err[0], err
    assert not marker.exists()
