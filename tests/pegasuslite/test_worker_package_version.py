"""Version strings as Pegasus prints them: a worker package made for each is accepted by
the real pegasus-lite-common.sh (its strict check in ``pegasus_lite_internal_wp_in_env``),
and ``PegasusVersion.accepts`` answers as that check does for every pair."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from fluxlite.pegasus.home import PegasusVersion
from tests.pegasuslite.conftest import PLC_ENV, SYSTEM_PATH, make_home

# pegasus-version of a release, of a development build (5.1 branch, next major), its
# Python packages' spelling, a release candidate
VERSIONS = ["5.1.2", "5.1.3-dev.0", "5.1.3.dev0", "6.0.0-dev.0", "5.2.0rc1"]


def _planner_split(version: str) -> tuple[str, str, str]:
    """What the planner writes into the job script: Version.java splits at the first two
    dots (``getVersion().split("[.]", 3)``)."""
    major, minor, patch = version.split(".", 2)
    return major, minor, patch


def _lite_uses(home: Path, planner: str) -> bool:
    major, minor, patch = _planner_split(planner)
    script = (f'pegasus_lite_version_major="{major}"\n'
              f'pegasus_lite_version_minor="{minor}"\n'
              f'pegasus_lite_version_patch="{patch}"\n'
              '. "$PLC"\n'
              'pegasus_lite_internal_wp_in_env\n')
    p = subprocess.run(["bash", "-c", script], capture_output=True, timeout=60,
                       env={"PATH": SYSTEM_PATH, "PLC": os.environ[PLC_ENV],
                            "PEGASUS_HOME": str(home)})
    used = f"Using existing Pegasus binaries in {home}/bin" in p.stderr.decode()
    assert used == (p.returncode == 0), p.stderr.decode()
    return used


def test_every_version_pegasus_prints_makes_a_package_lite_uses(tmp_path: Path) -> None:
    homes = {v: make_home(tmp_path, v, name=f"home-{v}") for v in VERSIONS}
    for package, home in homes.items():
        printed = subprocess.run([str(home / "bin" / "pegasus-config"), "--version"],
                                 capture_output=True, timeout=30).stdout.decode()
        assert printed == package + "\n"
        for planner in VERSIONS:
            lite = _lite_uses(home, planner)
            assert lite == PegasusVersion.parse(planner).accepts(printed), (planner, package)
            assert lite == (planner == package), (planner, package)
