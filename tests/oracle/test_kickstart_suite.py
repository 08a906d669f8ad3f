"""pegasus-kickstart's own test suite (``test.sh`` of packages/pegasus-kickstart/test in
Pegasus's sources) run against ``fluxlite kickstart`` through a worker package made by
``fluxlite pegasus-home``: its ``bin/pegasus-kickstart`` and ``bin/pegasus-integrity``.

The suite is Pegasus's, never part of this repository: ``$PEGASUS_KICKSTART_TESTS`` names
its directory. ``test.sh`` validates every record with ``../../../release-tools/yaml-validator``
(so it runs in a copy laid out as Pegasus's tree) and needs a ``python3`` with PyYAML on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SUITE_ENV = "PEGASUS_KICKSTART_TESTS"
SYSTEM_PATH = "/usr/bin:/bin"


def _suite() -> tuple[Path, Path]:
    """The test directory and its yaml-validator, or a skip saying what is missing."""
    given = os.environ.get(SUITE_ENV)
    if not given:
        pytest.skip(f"${SUITE_ENV} does not name pegasus-kickstart's test directory "
                    "(packages/pegasus-kickstart/test in Pegasus's sources)")
    test_dir = Path(given)
    if not (test_dir / "test.sh").is_file():
        pytest.skip(f"${SUITE_ENV}={given}: has no test.sh")
    # in Pegasus's tree, or in a copy that keeps release-tools/ beside the test directory
    for validator in (test_dir / "../../../release-tools/yaml-validator",
                      test_dir / "../release-tools/yaml-validator"):
        if validator.is_file():
            break
    else:
        pytest.skip(f"${SUITE_ENV}={given}: release-tools/yaml-validator is not beside it")
    if subprocess.run(["python3", "-c", "import yaml"], env={"PATH": SYSTEM_PATH},
                      capture_output=True).returncode != 0:
        pytest.skip("test.sh needs a python3 with PyYAML on /usr/bin:/bin")
    return test_dir, validator


def test_pegasus_kickstart_test_suite_passes_on_the_worker_package(tmp_path: Path) -> None:
    test_dir, validator = _suite()
    root = tmp_path / "pegasus"
    work = root / "packages" / "pegasus-kickstart" / "test"
    shutil.copytree(test_dir, work, symlinks=True)
    (root / "release-tools").mkdir()
    shutil.copy2(validator, root / "release-tools" / "yaml-validator")
    home = tmp_path / "home"
    made = subprocess.run([sys.executable, "-m", "fluxlite", "pegasus-home", str(home),
                           "--pegasus-version", "5.1.2"], capture_output=True, timeout=120)
    assert made.returncode == 0, made.stderr.decode()
    planned = re.findall(r"^\s*run_test (\w+)", (work / "test.sh").read_text(), re.M)
    if sys.platform != "linux":  # test.sh runs its two -t tests on Linux only
        planned = [t for t in planned if not t.endswith(("_trace", "_trace_buffer"))]
    p = subprocess.run(["./test.sh"], cwd=work, capture_output=True, timeout=900,
                       env={"PATH": SYSTEM_PATH, "HOME": str(tmp_path),
                            "PEGASUS_BIN_DIR": str(home / "bin"), "LANG": "C.UTF-8"})
    out = p.stdout.decode("utf-8", "replace")
    ran = re.findall(r"^Running (\w+)$", out, re.M)
    passed = out.splitlines().count("OK")
    # test.sh stops at the first failure: name it, with what the suite printed for it
    assert p.returncode == 0 and passed == len(planned), (
        f"{passed}/{len(planned)} passed; failed at {ran[-1] if ran else '?'}:\n"
        + out[-3000:] + p.stderr.decode("utf-8", "replace")[-2000:])
