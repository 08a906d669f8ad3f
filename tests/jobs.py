"""Builders for the jobs the tests run."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from tests.conftest import sha256_of

TASK = """#!/bin/sh
# reads its two inputs, writes two outputs
set -e
cat f.a f.b > f.c
wc -c < f.a > f.d
echo "task says hello"
echo "task warns" >&2
"""


def script(path: Path, body: str) -> Path:
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def example_job(data: Path, out: Path, **kw: Any) -> dict[str, Any]:
    """2 inputs (one with sha256), an executable script staged in, 2 outputs."""
    (data / "f.a").write_bytes(b"alpha\n" * 100)
    (data / "f.b").write_bytes(b"beta\n")
    script(data / "task.sh", TASK)
    out.mkdir(exist_ok=True)
    job: dict[str, Any] = {
        "name": "test::task:1.0", "id": "ID0000001", "site": "local",
        "workflow": {"label": "wf", "stamp": "2026-11-22T08:00:00+00:00"},
        "executable": {"url": f"file://{data}/task.sh", "sha256": sha256_of(data / "task.sh")},
        "inputs": [{"lfn": "f.a", "urls": [f"file://{data}/f.a"], "sha256": sha256_of(data / "f.a")},
                   {"lfn": "f.b", "urls": [f"file://{data}/f.b"]}],
        "outputs": [{"lfn": "f.c", "urls": [f"file://{out}/f.c"]},
                    {"lfn": "f.d", "urls": [f"file://{out}/f.d"]}],
    }
    job.update(kw)
    return job


def partial_files(*dirs: Path) -> list[str]:
    """Temporary files a transfer could have left behind."""
    found = []
    for d in dirs:
        if d.exists():
            for root, _, files in os.walk(d):
                found += [os.path.join(root, f) for f in files if ".tmp-" in f]
    return found
