"""fluxlite report opened in a real headless browser (Debian's chromium and its driver,
through selenium): it draws without errors, the right lanes and attempts, and not a blank
page. Skipped, saying why, when no browser is installed (scripts/test.sh installs one when
it runs as root with apt)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import Fluxlite
from tests.jobs import example_job
from tests.stats_support import browser_missing, headless_chromium, synthetic_cluster

_WHY = browser_missing()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=_WHY or "")

HOSTS, SLOTS, TASKS, FAIL_EVERY = 4, 8, 3000, 50


def _report(paths: list[Path], out: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "fluxlite", "report", *map(str, paths), "-o",
                        str(out)], capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr.decode()


def _open(driver: Any, path: Path) -> dict[str, Any]:
    driver.get(path.as_uri())
    deadline = time.monotonic() + 20
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = driver.execute_script("return window.fluxliteReport || {}")
        if state.get("ready") or state.get("errors"):
            break
        time.sleep(0.05)
    return state


def _severe(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


_INKED = """
const c = document.getElementById(arguments[0]), d = c.getContext("2d")
  .getImageData(0, 0, c.width, c.height).data;
let inked = 0;
for (let i = 0; i < d.length; i += 4)
  if (d[i + 3] > 0 && (d[i] < 235 || d[i + 1] < 235 || d[i + 2] < 235)) inked++;
return [inked, c.width * c.height];
"""


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("big")
    doc, _ = synthetic_cluster(TASKS, hosts=HOSTS, slots=SLOTS, fail_every=FAIL_EVERY)
    (tmp / "c.json").write_bytes(orjson.dumps(doc))
    _report([tmp / "c.json"], tmp / "report.html")
    return tmp / "report.html"


def test_a_cluster_report_draws_every_lane_and_attempt(big: Path, tmp_path: Path) -> None:
    attempts = TASKS + TASKS // FAIL_EVERY
    with headless_chromium() as driver:
        state = _open(driver, big)
        assert state.get("ready"), state
        assert state["errors"] == [] and _severe(driver) == []
        assert state["lanes"] == HOSTS * SLOTS and state["tasks"] == attempts
        assert state["drawn"] == attempts
        el = driver.find_element("id", "timeline")
        assert el.get_attribute("data-lanes") == str(HOSTS * SLOTS)
        assert el.get_attribute("data-tasks") == str(attempts)
        # nothing fetched: the page is all in the file
        assert driver.execute_script(
            "return performance.getEntriesByType('resource').length") == 0
        for canvas in ("timeline", "concurrency", "throughput", "runtime", "memory"):
            inked, area = driver.execute_script(_INKED, canvas)
            assert inked > 0.02 * area, (canvas, inked, area)
        rows = driver.find_elements("css selector", "#failures tbody tr")
        assert len(rows) == TASKS // FAIL_EVERY
        shot = driver.get_screenshot_as_png()
        (tmp_path / "report.png").write_bytes(shot)
        _not_blank(shot)
        # zoom in with the wheel: fewer attempts in view, still no error
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

        for _ in range(6):
            ActionChains(driver).scroll_from_origin(ScrollOrigin.from_element(el, 100, 0),
                                                    0, -200).perform()
        time.sleep(0.3)
        state = driver.execute_script("return window.fluxliteReport")
        assert 0 < state["drawn"] < attempts and state["errors"] == []
        # a failure clicked: the timeline shows it; colours by outcome
        rows[0].click()
        driver.find_element("id", "colour").send_keys("outcome")
        time.sleep(0.3)
        assert driver.execute_script("return window.fluxliteReport.errors") == []
        assert _severe(driver) == []


def _not_blank(png: bytes) -> None:
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    try:
        from PIL import Image
    except ImportError:
        return
    import io

    img = Image.open(io.BytesIO(png)).convert("RGB").resize((200, 200))
    assert len(img.getcolors(maxcolors=1 << 16) or ()) > 20  # a drawn page, not one colour


def test_a_single_job_shows_its_phases(fl: Fluxlite, data: Path) -> None:
    job = example_job(data, fl.tmp / "results")
    job["records"] = {"kickstart": "job.out", "json": "job.json"}
    assert fl.run("run", str(fl.write_job(job, "spec.json"))).returncode == 0
    out = fl.tmp / "report.html"
    _report([fl.tmp / "job.out", fl.tmp / "job.json"], out)
    with headless_chromium() as driver:
        state = _open(driver, out)
        assert state.get("ready") and state["errors"] == [] and _severe(driver) == []
        assert (state["lanes"], state["tasks"], state["drawn"]) == (1, 1, 1)
        assert state["phasesDrawn"] == 1
        # and a cluster that retried and failed, one task at a time, after the job on the
        # same host: still one lane
        (fl.tmp / "c.dag").write_text('TASK ok /bin/true\nTASK bad -t 2 /bin/sh -c "exit 3"\n'
                                      'TASK sig /bin/sh -c "kill -9 $$"\n')
        p = fl.run("cluster", "c.dag", "-j", "1", "-o", "c.out", "--json", "c.json",
                   "--no-rescue")
        assert p.returncode == 5, p.stderr.decode()
        _report([fl.tmp], out)
        state = _open(driver, out)
        assert state.get("ready") and state["errors"] == [] and _severe(driver) == []
        assert (state["lanes"], state["tasks"], state["drawn"]) == (1, 5, 5)
        rows = driver.find_elements("css selector", "#failures tbody tr")
        assert [r.find_elements("tag name", "td")[6].text for r in rows] == [
            "exit", "exit", "signal"]


def test_strings_that_open_a_comment_in_a_script_leave_the_page_drawn(fl: Fluxlite,
                                                                      tmp_path: Path) -> None:
    """A transformation named ``<!--<script>`` and a reason ``</script>``: the page still
    draws (the tokenizer never leaves the data element), with the names as written."""
    job = fl.write_job({"name": "x<!--<script>", "executable": "/bin/sh",
                        "arguments": ["-c", "exit 3"],
                        "records": {"kickstart": "k.out", "json": "j.json"}})
    assert fl.run("run", str(job)).returncode == 3
    out = tmp_path / "r.html"
    _report([fl.tmp / "j.json"], out)
    with headless_chromium() as driver:
        state = _open(driver, out)
        assert state.get("ready") and not state.get("errors"), state
        assert state["tasks"] == 1
        legend = driver.find_element("id", "legend").text
        assert "x<!--<script>" in legend, legend
        assert not _severe(driver)
