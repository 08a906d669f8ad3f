"""The examples of README.md and docs/*.md marked ``needs=flux``, run inside the tier's
Flux instance (the convention: tests/integration/test_docs_examples.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.flux.conftest import FluxInstance
from tests.integration.test_docs_examples import DOCS, ROOT, run_blocks, runnable

FLUX_DOCS = [d for d in DOCS if runnable(d, "flux")]


@pytest.mark.parametrize("doc", FLUX_DOCS, ids=[str(d.relative_to(ROOT)) for d in FLUX_DOCS])
def test_flux_examples_run(doc: Path, tmp_path: Path, flux_instance: FluxInstance) -> None:
    before = set(_jobs(flux_instance))
    try:
        run_blocks(doc, "flux", tmp_path, flux_instance.env)
    finally:
        # the jobs the examples submitted end before the next test wants the cores
        flux_instance.flux("queue", "drain", "--timeout=120", check=False, timeout=130)
    ended = {job: result for job, result in _jobs(flux_instance).items() if job not in before}
    assert ended and all(r == "COMPLETED" for r in ended.values()), f"{doc.name}: {ended}"


def _jobs(flux: FluxInstance) -> dict[str, str]:
    out = flux.flux("jobs", "-a", "-n", "-o", "{id} {result}").stdout
    jobs: dict[str, str] = {}
    for line in out.splitlines():
        job, _, result = line.strip().partition(" ")
        if job:
            jobs[job] = result.strip()
    return jobs
