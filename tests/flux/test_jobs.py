"""FluxJobs against a real instance: how a job that exits, one that is killed, one Flux
refuses and one cancelled while pending end, as the launcher and the cluster read them."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from fluxlite.flux import jobspec
from fluxlite.flux.jobs import FluxJobs, Job
from tests.flux.conftest import FluxInstance


def test_jobs_end_as_flux_says(flux_instance: FluxInstance, tmp_path: Path) -> None:
    jobs = FluxJobs(flux_instance.uri)
    _, _, rl = jobspec.open_instance(flux_instance.uri, "the test")
    per_node = rl.all.ncores // rl.all.nnodes
    over: dict[int, threading.Event] = {}

    def submit(argv: list[str], **kw: object) -> Job:
        ev = threading.Event()
        job = jobs.submit(jobspec.build(argv, cwd=str(tmp_path), env=flux_instance.env,
                                        name="t", **kw), lambda j: ev.set())
        over[id(job)] = ev
        return job

    def outcome(job: Job):  # noqa: ANN202
        assert over[id(job)].wait(60), "the job never ended"
        return job.outcome()

    try:
        exits = submit(["sh", "-c", "exit 3"])
        refused = submit(["true"], cores=4096)
        hog = submit(["sleep", "60"], count=rl.all.nnodes, nodes=rl.all.nnodes,
                     cores=per_node)  # every core: the next job waits
        deadline = time.monotonic() + 60
        while hog.started is None and time.monotonic() < deadline:
            time.sleep(0.05)  # a signal reaches a job that runs: wait for it to
        pending = submit(["true"])
        jobs.wait_submitted(pending)
        assert jobs.cancel([pending], "not wanted") == 1
        o = outcome(pending)
        assert o.status.code == 127 and o.status.error == (
            f"flux job {pending.f58}: cancel: not wanted") and pending.started is None
        assert jobs.kill([hog], signal.SIGKILL) == 1
        o = outcome(hog)
        # a job shell tells a task killed by KILL as a signal, or as 128+9 over many nodes
        assert o.status.code == 128 + signal.SIGKILL and o.duration < 30 and o.f58 == hog.f58
        o = outcome(exits)
        assert o.status.exitcode == 3 and o.start == exits.started and o.exception is None
        o = outcome(refused)
        # refused at its submission, or by the scheduler before it ran
        assert o.status.code == 127 and o.status.error is not None
        assert o.status.error.startswith(("flux submit failed", f"flux job {refused.f58}: "))
        assert jobs.kill([exits], signal.SIGTERM) == 0  # over: nothing is sent
    finally:
        jobs.close()
