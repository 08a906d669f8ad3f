"""fluxlite.lazylog: a module's logger that imports logging at its first use."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

import fluxlite
from fluxlite.lazylog import get_logger


def test_a_lazy_logger_is_the_real_one_once_used(caplog: pytest.LogCaptureFixture) -> None:
    """Its records are the named logger's, at the levels that logger is set to."""
    log = get_logger("fluxlite.test_lazylog")
    real = logging.getLogger("fluxlite.test_lazylog")
    with caplog.at_level(logging.INFO, logger="fluxlite.test_lazylog"):
        log.info("one %d", 1)
        log.debug("not at INFO")
        log.warning("two")
    got = [(r.name, r.levelname, r.getMessage()) for r in caplog.records
           if r.name == "fluxlite.test_lazylog"]
    assert got == [("fluxlite.test_lazylog", "INFO", "one 1"),
                   ("fluxlite.test_lazylog", "WARNING", "two")]
    assert log.isEnabledFor(logging.WARNING)
    assert log.level == real.level and log.name == real.name


_CHILD = """
import sys
sys.path[:0] = {paths!r}
from fluxlite.lazylog import get_logger
log = get_logger("fluxlite.x")
print("logging" in sys.modules, flush=True)
log.info("quiet")
print("logging" in sys.modules, flush=True)
log.warning("pool worker %d: a warning", 3)
log.error("error: and an error")
"""


def test_an_unconfigured_process_gets_the_message_alone_on_stderr() -> None:
    """A pool worker sets no logging up: no logging module until its first call, then the
    message alone on stderr from WARNING up (what basicConfig at WARNING gave)."""
    paths = [os.path.dirname(os.path.dirname(os.path.abspath(fluxlite.__file__)))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run([sys.executable, "-S", "-c", _CHILD.format(paths=paths)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "False\nTrue\n"  # the info call imported it, and logged nothing
    assert proc.stderr == "pool worker 3: a warning\nerror: and an error\n"
