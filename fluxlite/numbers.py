"""Numbers and durations from untrusted input: finite, bounded, or a one-line reason why not.

Every number fluxlite reads from a job description, a transfer list, a cluster input or a
command line goes through :func:`check_number` (or :func:`parse_duration` for a time), so
that NaN, Infinity, ``1e300`` or a 400-digit integer is refused with a message instead of
disabling a limit, spinning a loop or overflowing a float conversion.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

# The longest time fluxlite accepts anywhere (a limit, a timeout, a grace): one year.
MAX_SECONDS = 366 * 86400.0

_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_NUM = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
# A duration as text, for the JSON Schema too (ECMA-262 reads it the same way).
DURATION_PATTERN = rf"^[ \t]*(?:{_NUM}|(?:{_NUM}[dhmsDHMS])+)[ \t]*$"
DURATION_MAX_TEXT = 64  # longer duration strings are refused before any arithmetic
# compiled (and cached by re) at the first duration written as text: most jobs have none
_PART = rf"({_NUM})([dhms])"
_BARE = rf"^{_NUM}$"


def check_number(value: Any, *, minimum: float, maximum: float, integer: bool = False,
                 exclusive_minimum: bool = False) -> str | None:
    """Why ``value`` is not an acceptable number, or None when it is.

    Acceptable: an int or a float (never a bool), finite, ``minimum <= value <= maximum``
    (``minimum < value`` with ``exclusive_minimum``), and a whole number when ``integer``.
    Integers of any size are compared exactly, so a 400-digit one is out of bounds rather
    than an OverflowError.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, not {kind(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, not {value}"
    if integer and isinstance(value, float) and not value.is_integer():
        return "must be a whole number"
    if value < minimum or (exclusive_minimum and value == minimum):
        return f"must be {'>' if exclusive_minimum else '>='} {fmt(minimum)}"
    if value > maximum:
        return f"must be at most {fmt(maximum)}"
    return None


def fmt(x: float) -> str:
    """A bound as people write it: 31622400, 0.01, 5."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def parse_duration(value: Any, *, bare: float = 1.0, minimum: float = 0.0,
                   maximum: float = MAX_SECONDS, exclusive_minimum: bool = False) -> float:
    """A duration in seconds: a number, or text such as ``90``, ``90s``, ``30m``, ``2h``,
    ``1d`` or ``1h30m``. A bare number is ``bare`` seconds each (1: seconds; the drop-ins
    whose originals count in minutes pass 60). Raises ValueError with a one-line reason.
    """
    if isinstance(value, str):
        text = value.strip(" \t").lower()
        if len(value) > DURATION_MAX_TEXT:
            raise ValueError(f"'{value[:20]}…' is not a duration (e.g. 90s, 30m, 2h, 1h30m)")
        if re.fullmatch(_BARE, text):
            seconds = float(text) * bare
        elif re.fullmatch(DURATION_PATTERN, text):
            seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(_PART, text))
        else:
            raise ValueError(f"'{value}' is not a duration (e.g. 90s, 30m, 2h, 1h30m)")
    else:
        # bounds first: an integer too large for a float is out of bounds, not an overflow
        why = check_number(value, minimum=minimum / bare, maximum=maximum / bare,
                           exclusive_minimum=exclusive_minimum)
        if why:
            raise ValueError(f"{why} seconds" if bare == 1 else why)
        seconds = float(value) * bare
    why = check_number(seconds, minimum=minimum, maximum=maximum,
                       exclusive_minimum=exclusive_minimum)
    if why:
        raise ValueError(f"{why} seconds")
    return seconds


def duration_type(bare: float = 1.0, **bounds: Any) -> Callable[[str], float]:
    """An argparse ``type=`` for a duration option (seconds; ``bare``: see parse_duration)."""
    import argparse

    def parse(text: str) -> float:
        try:
            return parse_duration(text, bare=bare, **bounds)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from err

    return parse


def kind(v: Any) -> str:
    """The JSON type of a value, for messages: "a string", "null"."""
    if v is None:
        return "null"
    if isinstance(v, dict):
        return "an object"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(v), type(v).__name__)
