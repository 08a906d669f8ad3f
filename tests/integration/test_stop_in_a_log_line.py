"""A stop signal that lands while a log line is being written still stops the job.

The runner's policy raises where the main thread is; logging's ``emit`` catches every
``Exception`` (and prints "--- Logging error ---"), so a stop raised as an ordinary error
there was lost: the stage-in then ended as if nothing had happened and the task ran without
its input. Here the signal is sent from inside the log stream's ``write``, at the line that
announces a retry: deterministic, with a real signal, a real job and a loopback server."""

from __future__ import annotations

import http.server
import io
import logging
import os
import signal
import threading
import time
from pathlib import Path

from fluxlite.runner import RunOptions, Runner
from fluxlite.spec import JobSpec


class _Always503(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class _SignalOnRetry(io.StringIO):
    """A log stream that sends this process SIGTERM as it writes the retry line."""

    def write(self, text: str) -> int:
        if "retrying in" in text:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().write(text)


def test_a_stop_signal_inside_a_log_line_stops_the_stage_in(tmp_path: Path) -> None:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Always503)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    marker = tmp_path / "task-ran"
    spec = JobSpec.from_dict({
        "fluxlite": 1, "executable": "/bin/touch", "arguments": [str(marker)],
        "inputs": [{"lfn": "f", "urls": [f"http://127.0.0.1:{srv.server_address[1]}/f"]}],
        "staging": {"attempts": 5, "backoff": 10, "max_backoff": 10},
        "workdir": {"base": str(tmp_path), "keep": "never", "min_free_mb": 0}})
    log = logging.getLogger("fluxlite")
    handler = logging.StreamHandler(_SignalOnRetry())
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        runner = Runner(spec, RunOptions(kickstart=None, json=None, use_flux=False))
        t0 = time.monotonic()
        rc = runner.run()
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        srv.shutdown()
    assert time.monotonic() - t0 < 5  # not the 10 s backoffs
    rec = runner.record
    assert rc == 128 + signal.SIGTERM, rec.error
    assert rec.failed_phase == "stage-in" and rec.error == "interrupted by SIGTERM during stage-in"
    assert rec.task is None and not marker.exists()
    assert [p.error for p in rec.phases if p.name == "stage-in"] == [rec.error]
