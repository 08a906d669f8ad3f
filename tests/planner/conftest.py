"""The planner tier: what Pegasus's own planner writes for a Flux site, run job by job into
a real Flux instance through HTCondor's BLAHP scripts, on fluxlite's worker package and on
Pegasus's own.

It builds nothing. It needs, named by environment variables (scripts/test.sh sets them
when the usual places exist; docs/pegasus-on-flux.md says how to build them):
- ``PEGASUS_PLANNER_HOME``: a Pegasus tree made by ``ant dist`` at a release tag
  (bin/pegasus-plan, share/pegasus/worker-packages/);
- ``PEGASUS_CONDORIO_PLANNER_HOME`` (optional): the planner tried for condorio, which
  Pegasus 5.1.2 refuses with a glite site (default: ``PEGASUS_PLANNER_HOME``);
- ``BLAHP_SCRIPTS``: BLAHP's scripts (src/blahp/src/scripts in HTCondor's sources:
  flux_submit.sh, flux_status.sh, blah_common_submit_functions.sh ...);
- flux and java on PATH, and Pegasus's parsers (pegasus-wms) in this interpreter.
Without one of them every test of the tier is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ORACLE_MISSING, oracle_available

PLANNER_ENV = "PEGASUS_PLANNER_HOME"
CONDORIO_PLANNER_ENV = "PEGASUS_CONDORIO_PLANNER_HOME"
BLAHP_ENV = "BLAHP_SCRIPTS"
BLAHP_FILES = ("flux_submit.sh", "flux_status.sh", "flux_utils.sh",
               "blah_common_submit_functions.sh", "blah_load_config.sh")


def planner_home(var: str = PLANNER_ENV) -> Path | None:
    p = os.environ.get(var)
    return Path(p) if p and (Path(p) / "bin" / "pegasus-plan").is_file() else None


def blahp_scripts() -> Path | None:
    p = os.environ.get(BLAHP_ENV)
    if p and all((Path(p) / f).is_file() for f in BLAHP_FILES):
        return Path(p)
    return None


def missing() -> str | None:
    """Why the tier cannot run, or None."""
    if planner_home() is None:
        return (f"${PLANNER_ENV} does not name a Pegasus planner built by `ant dist` "
                "(docs/pegasus-on-flux.md)")
    if blahp_scripts() is None:
        return (f"${BLAHP_ENV} does not name BLAHP's scripts ({', '.join(BLAHP_FILES)}; "
                "src/blahp/src/scripts in HTCondor's sources)")
    for tool in ("flux", "java", "jq"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH"
    if not oracle_available():
        return ORACLE_MISSING
    return None


def pytest_collection_modifyitems(config, items):  # noqa: ANN001, ANN201
    why = missing()
    if why is None:
        return
    skip = pytest.mark.skip(reason=f"planner tier skipped: {why}")
    for item in items:
        if "planner" in item.keywords:
            item.add_marker(skip)


def flux_job_env(home: Path) -> dict[str, str]:
    """The environment BLAHP runs in (and so the Flux jobs): flux, the system's tools,
    nothing of this test session's interpreter."""
    flux_bin = Path(shutil.which("flux") or "flux").parent
    env = {"PATH": f"{flux_bin}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    lib = flux_bin.parent / "lib"
    if (lib / "libflux-core.so.2").exists():
        env["LD_LIBRARY_PATH"] = str(lib)
    return env


@pytest.fixture(scope="session")
def flux_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One `flux start --test-size=2` instance for the tier (the flux tier's)."""
    from tests.flux.conftest import instance

    for inst in instance(tmp_path_factory, 2):
        yield inst.uri
