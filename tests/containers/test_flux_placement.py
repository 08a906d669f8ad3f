"""placement "flux": the runtime's command line is the Flux job's, so it runs inside the job.

Needs the flux tier's instance (flux on PATH and its Python bindings) and a runtime; skipped
with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import Fluxlite
from tests.containers.conftest import RuntimeEnv, container_job
from tests.flux.conftest import FluxInstance, flux_instance  # noqa: F401 - the fixture

pytestmark = pytest.mark.flux


@pytest.fixture(params=["podman", "charliecloud"])
def rt(request: pytest.FixtureRequest) -> RuntimeEnv:
    return request.getfixturevalue(request.param)


def _env(fi: FluxInstance, rt: RuntimeEnv, tmp: Path) -> dict[str, str]:
    return {**fi.env, **rt.env, "FLUXLITE_CACHE": str(tmp / "cache")}


def test_task_runs_inside_a_flux_job(flux_instance: FluxInstance,  # noqa: F811
                                     rt: RuntimeEnv, fl: Fluxlite, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("hello\n")
    job = container_job(rt, tmp_path / "cache",
                        'echo "uid=$(id -u) cwd=$(pwd) rank=$FLUX_TASK_RANK" > out.txt;'
                        " cat in.txt >> out.txt; exit 5",
                        placement="flux",
                        inputs=[{"lfn": "in.txt", "urls": [(tmp_path / "in.txt").as_uri()]}],
                        outputs=[{"lfn": "out.txt",
                                  "urls": [(tmp_path / "out.txt").as_uri()]}],
                        workdir={"base": str(tmp_path), "keep": "always"})
    p = fl.run("run", str(fl.write_job(job)), env=_env(flux_instance, rt, tmp_path))
    assert p.returncode == 5, p.stderr.decode()  # the task's own exit code, through Flux
    rec = json.loads((tmp_path / "record.json").read_text())
    tid = rec["jobids"]["flux-task"]
    assert rec["container"]["runtime"] == rt.type
    info = flux_instance.job_info(tid)
    assert info["returncode"] == 5
    wd = Path(rec["workdir"])
    # the environment inside is the spec's: FLUX_TASK_RANK stays outside
    assert (wd / "out.txt").read_text() == f"uid={os.getuid()} cwd=/srv rank=\nhello\n"
    assert rt.containers() == []


def test_term_reaches_the_task_through_flux(flux_instance: FluxInstance,  # noqa: F811
                                            rt: RuntimeEnv, fl: Fluxlite,
                                            tmp_path: Path) -> None:
    job = container_job(rt, tmp_path / "cache", "touch started; exec sleep 60",
                        placement="flux", workdir={"base": str(tmp_path)})
    proc = fl.popen("run", str(fl.write_job(job)), env=_env(flux_instance, rt, tmp_path))
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("fluxlite.*/started")):
            assert proc.poll() is None, proc.communicate()[1].decode()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode in (128 + signal.SIGTERM, 128 + signal.SIGKILL), err.decode()
    assert took < 15, f"TERM took {took:.1f} s"
    assert rt.containers() == []
