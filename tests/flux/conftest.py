"""The flux tier: tests against a real Flux instance started with `flux start --test-size=2`.

One instance serves the whole session (its startup costs about 1.5 s); each test gets the
environment to run commands inside it. Without flux on PATH or the Python bindings, every
test of the tier is skipped with the reason, those that need no instance too (the bindings'
own parsers): a test module imports ``flux`` only inside its tests.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import flux_available

TEST_SIZE = int(os.environ.get("FLUXLITE_TEST_FLUX_SIZE", "2"))


def pytest_collection_modifyitems(config, items):  # noqa: ANN001, ANN201
    here = Path(__file__).parent
    tier = [item for item in items if item.path.is_relative_to(here)]
    why = flux_available() if tier else None
    if why:
        skip = pytest.mark.skip(reason=f"flux tier skipped: {why}")
        for item in tier:
            item.add_marker(skip)


@dataclass
class FluxInstance:
    """A running test instance: ``env`` runs a command inside it (FLUX_URI, PATH,
    LD_LIBRARY_PATH), as its own jobs see it."""

    uri: str
    size: int
    env: dict[str, str]
    tmp: Path

    def run(self, *args: str, timeout: float = 60, check: bool = True,
            env: dict[str, str] | None = None,
            cwd: str | os.PathLike[str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command (e.g. ``flux jobs ...``) inside the instance."""
        full = {**self.env, **(env or {})}
        p = subprocess.run(list(args), env=full, capture_output=True, text=True,
                           timeout=timeout, cwd=cwd)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {p.returncode}:\n{p.stderr}")
        return p

    def flux(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("flux", *args, **kw)

    def job_info(self, jobid: str) -> dict[str, Any]:
        return json.loads(self.flux("jobs", "--json", jobid).stdout)

    def wait_job(self, jobid: str, timeout: float = 120) -> dict[str, Any]:
        """Wait for a job to end; its `flux jobs --json` record."""
        self.flux("job", "wait-event", "-t", str(timeout), jobid, "clean", timeout=timeout + 5)
        return self.job_info(jobid)


def _start(tmp: Path, size: int = TEST_SIZE) -> tuple[subprocess.Popen[bytes], str]:
    urifile = tmp / "uri"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
    # the initial program writes the instance's URI, then lives until its stdin closes:
    # closing it at the end of the session shuts the instance down cleanly
    prog = f'echo "$FLUX_URI" > {urifile}.tmp && mv {urifile}.tmp {urifile} && exec cat'
    proc = subprocess.Popen(["flux", "start", f"--test-size={size}", "sh", "-c", prog],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=open(tmp / "broker.log", "wb"), env=env, cwd=tmp)
    deadline = time.monotonic() + 60
    while not urifile.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            log = (tmp / "broker.log").read_text(errors="replace")[-2000:]
            proc.kill()
            raise RuntimeError(f"flux start --test-size={size} failed:\n{log}")
        time.sleep(0.05)
    return proc, urifile.read_text().strip()


@pytest.fixture(scope="session")
def flux_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FluxInstance]:
    yield from instance(tmp_path_factory, TEST_SIZE)


def instance(tmp_path_factory: pytest.TempPathFactory, size: int) -> Iterator[FluxInstance]:
    """A test instance of ``size`` brokers, for a fixture to yield from."""
    why = flux_available()
    if why:
        pytest.skip(f"flux tier skipped: {why}")
    tmp = tmp_path_factory.mktemp("flux-instance")
    proc, uri = _start(tmp, size)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
    env["FLUX_URI"] = uri
    flux_bin = shutil.which("flux")
    assert flux_bin is not None
    # a job inside finds flux where this session found it, and the PyPI bindings find
    # libflux-core beside it
    env["PATH"] = os.pathsep.join([os.path.dirname(flux_bin), os.path.dirname(sys.executable),
                                   env.get("PATH", os.defpath)])
    lib = os.path.join(os.path.dirname(os.path.dirname(flux_bin)), "lib")
    if os.path.isdir(lib) and lib not in env.get("LD_LIBRARY_PATH", "").split(":"):
        env["LD_LIBRARY_PATH"] = ":".join(x for x in (lib, env.get("LD_LIBRARY_PATH")) if x)
    inst = FluxInstance(uri=uri, size=size, env=env, tmp=tmp)
    try:
        yield inst
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def flux_env(flux_instance: FluxInstance) -> dict[str, str]:
    """The environment of a command run inside the instance (for ``fl.run(env=...)``)."""
    return dict(flux_instance.env)
