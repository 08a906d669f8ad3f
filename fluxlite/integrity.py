"""sha256 computed while data moves, and the comparison with what was expected."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

CHUNK = 4 * 1024 * 1024  # large enough that hashlib releases the GIL and syscalls stay few


@dataclass(frozen=True, slots=True)
class Verification:
    """The check of one file's sha256 against the expected one."""

    lfn: str
    expected: str | None
    actual: str
    success: bool
    duration: float


def file_sha256(path: str, chunk: int = CHUNK) -> tuple[str, int, float]:
    """sha256 of a file read once: (hexdigest, bytes, seconds)."""
    t0 = time.perf_counter()
    h = hashlib.sha256()
    n = 0
    buf = bytearray(chunk)
    view = memoryview(buf)
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            got = os.readv(fd, [buf])
            if not got:
                break
            h.update(view[:got])
            n += got
    finally:
        os.close(fd)
    return h.hexdigest(), n, time.perf_counter() - t0


def verify(lfn: str, expected: str | None, actual: str, duration: float) -> Verification:
    """The verification of ``actual`` against ``expected`` (None: nothing to check against)."""
    return Verification(lfn, expected, actual,
                        expected is None or expected.lower() == actual, duration)
