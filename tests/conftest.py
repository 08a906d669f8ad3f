"""Shared fixtures. Tiers are pytest markers; a test's tier comes from its folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
# records written by pegasus-kickstart itself, for comparison with ours
SAMPLES = ROOT / "tests" / "data" / "kickstart-samples"

_TIERS = {"unit": "unit", "integration": "integration", "oracle": "oracle", "flux": "flux",
          "pegasuslite": "pegasuslite", "browser": "browser",
          "containers": "containers"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in _TIERS:
            item.add_marker(getattr(pytest.mark, _TIERS[parts[0]]))


def sha256_of(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def writing_into(pid: int, directory: str, min_size: int = 0) -> bool:
    """Whether process pid has a file open inside directory (a destination being written,
    named or not) that holds at least ``min_size`` bytes."""
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith(directory + "/")
                   and os.stat(f"/proc/{pid}/fd/{fd}").st_size >= min_size
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


class Fluxlite:
    """Runs the real command line in a subprocess, as a user or a batch script would."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.wdbase = tmp / "wd"
        self.wdbase.mkdir(exist_ok=True)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")}
        env["TMPDIR"] = str(self.wdbase)  # worker directories land where tests can see them
        env.update(extra or {})
        return env

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: str | os.PathLike[str] | None = None,
            input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([sys.executable, "-m", "fluxlite", *args], env=self.env(env),
                              cwd=cwd or self.tmp, capture_output=True, timeout=timeout,
                              input=input)

    def popen(self, *args: str, env: dict[str, str] | None = None,
              **kw: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "fluxlite", *args], env=self.env(env),
                                cwd=kw.pop("cwd", self.tmp), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **kw)

    def leftover_workdirs(self) -> list[str]:
        return sorted(p.name for p in self.wdbase.iterdir() if p.name.startswith("fluxlite."))

    def write_job(self, job: dict[str, Any], name: str = "job.json") -> Path:
        doc = {"fluxlite": 1, **job}
        p = self.tmp / name
        p.write_text(json.dumps(doc, indent=1))
        return p


@pytest.fixture
def fl(tmp_path: Path) -> Fluxlite:
    return Fluxlite(tmp_path)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


def oracle_available() -> bool:
    try:
        from Pegasus import exitcode  # noqa: F401
        from Pegasus.tools import kickstart_parser  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


ORACLE_MISSING = ("Pegasus's parsers are not installed "
                  "(scripts/test.sh installs pegasus-wms 5.1.3)")


def require_oracle() -> None:
    """Skip the rest of a test, saying why, when Pegasus's own parsers are absent: the
    checks made so far count, the ones after this line are reported as not run."""
    if not oracle_available():
        pytest.skip(ORACLE_MISSING)


def pegasus_cluster_parser() -> Any:
    """Pegasus's parser of ``[cluster-task ...]`` lines; the test is skipped without it."""
    return pytest.importorskip("Pegasus.cluster", reason=ORACLE_MISSING).RecordParser


def parse_records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Records as pegasus-monitord sees them ([] when any record is bad)."""
    from Pegasus.tools import kickstart_parser as kp

    return kp.Parser(str(path)).parse_stampede()


def judge(out: str | os.PathLike[str], message: str | None = "PegasusLite: exitcode 0") -> None:
    """pegasus-exitcode's verdict: returns on success, raises JobFailed otherwise."""
    from Pegasus import exitcode

    exitcode.exitcode(str(out), rename=False, generate_meta=False,
                      success_messages=[message] if message else [])


def flux_available() -> str | None:
    """Why the flux tier cannot run, or None when it can."""
    if shutil.which("flux") is None:
        return "flux is not on PATH (README.md, Tests: the flux tier)"
    try:
        import flux  # noqa: F401
    except ImportError as err:
        return f"the Flux Python bindings do not import: {err}"
    return None
