"""Record timestamps made from time.localtime are datetime's, to the character."""

from __future__ import annotations

import subprocess
import sys

import pytest

# zones with daylight saving, half-hour and sub-minute (local mean time) offsets, west and
# east of Greenwich
ZONES = ["UTC", "America/New_York", "Europe/Dublin", "Asia/Kolkata", "Australia/Lord_Howe",
         "Africa/Monrovia", "America/St_Johns", "Pacific/Chatham"]

_CHILD = """
import os, random, sys, time
from datetime import datetime
os.environ["TZ"] = sys.argv[1]
time.tzset()
from fluxlite.record.host import iso
rng = random.Random(7)
ts = [0.0, 1.0, 1e9 + 0.0005, 1e9 + 0.9995, 1e9 + 0.9999995, 1e9 + 0.4999995, 1e9 + 0.0000005,
      1e9 + 0.0000015, 1e9 + 0.0000025, 1762000000.123456, -1.5, -0.0000005, 63072000.0]
ts += [rng.uniform(-2.5e9, 4.2e9) for _ in range(3000)]
ts += [rng.randrange(0, 4_200_000_000) + rng.randrange(0, 1_000_000) / 1e6 for _ in range(3000)]
# around every transition of the zone between 1900 and 2040: each hour from 3 h before
for y in range(1900, 2041, 7):
    for m in range(1, 13):
        base = time.mktime((y, m, 1, 0, 0, 0, 0, 0, -1))
        ts += [base + h * 3600 + 0.9996 for h in range(0, 24 * 31, 37)]
bad = 0
for t in ts:
    for ms in (True, False):
        want = datetime.fromtimestamp(t).astimezone().isoformat(
            timespec="milliseconds" if ms else "seconds")
        got = iso(t, ms)
        if got != want:
            bad += 1
            if bad < 5:
                print(f"{t!r} ms={ms}: {got} != {want}")
print("checked", len(ts), "bad", bad)
sys.exit(1 if bad else 0)
"""


@pytest.mark.parametrize("zone", ZONES)
def test_iso_is_datetimes_isoformat(zone: str) -> None:
    p = subprocess.run([sys.executable, "-c", _CHILD, zone], capture_output=True, text=True,
                       timeout=120)
    if "No such file" in p.stderr or "UnknownTimeZone" in p.stderr:
        pytest.skip(f"no zone {zone} here")
    assert p.returncode == 0, p.stdout + p.stderr
