"""The examples of README.md and docs/*.md marked ``needs=flux``, run inside the tier's
Flux instance (the convention: tests/integration/test_docs_examples.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.flux.conftest import FluxInstance
from tests.integration.test_docs_examples import DOCS, ROOT, check_block, runnable, write_files

FLUX_DOCS = [d for d in DOCS if runnable(d, "flux")]


@pytest.mark.parametrize("doc", FLUX_DOCS, ids=[str(d.relative_to(ROOT)) for d in FLUX_DOCS])
def test_flux_examples_run(doc: Path, tmp_path: Path, flux_instance: FluxInstance) -> None:
    write_files(doc, tmp_path)
    for block in runnable(doc, "flux"):
        check_block(block, tmp_path, flux_instance.env)
