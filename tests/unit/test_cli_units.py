"""Every option with a unit says, in its help, the unit its parser really uses.

A time is given to the parser as a bare number and as the same number with a unit suffix;
whichever suffix reads the same as the bare number is the unit a bare number has, and the
help (or the metavar) must name that unit. An option whose parser takes no suffix keeps the
number as it is, in the unit the command uses inside (seconds for every time, bytes for
every size, but for the exceptions listed), and its help must name that unit.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.unit.test_cli_options import PARSED, parser

# options that take a time or a size: help, metavar or name says so
UNIT_WORDS = re.compile(r"\b(seconds?|minutes?|hours?|bytes?|[kmg]i?b|time|duration|"
                        r"timeout|wait|grace|margin|progress|memory|rate|window|limit)\b",
                        re.IGNORECASE)
# options whose value the command converts after parsing: (command, dest) -> the converter
LATER: dict[tuple[str, str], Callable[[str], Any]] = {}
# options taking a plain number whose unit is not the command's usual one
PLAIN_UNIT = {("cluster", "memory"): "mb", ("transfer", "min_rate"): "bytes"}
# options whose words look like a unit but which take none (counts, paths, choices)
NO_UNIT = {("cluster", "tries"), ("cluster", "jobs"), ("cluster", "nested"),
           ("cluster", "output"), ("cluster", "json"), ("cluster", "rescue"),
           ("transfer", "attempts"), ("transfer", "json_record"),
           ("transfer", "multipart_dir"), ("cluster", "nodes"),
           ("cluster", "cores"), ("cluster", "gpus"), ("cluster", "workers_per_node"),
           ("cluster", "tmpdir"), ("transfer", "threads")}


def _later() -> dict[tuple[str, str], Callable[[str], Any]]:
    if not LATER:
        from fluxlite.flux.submit import parse_duration

        for name in ("submit", "batch-script"):
            LATER[(name, "time_limit")] = parse_duration
    return LATER


def _value(name: str, action: argparse.Action, text: str) -> Any:
    """What the command makes of ``text`` given to this option (None: refused)."""
    fn = _later().get((name, action.dest))
    if fn is None:
        fn = action.type if callable(action.type) else str
    try:
        return fn(text)
    except Exception:  # noqa: BLE001 - a refused value is the answer here
        return None


def _options() -> list[tuple[str, argparse.Action]]:
    found = []
    for name in PARSED:
        for action in parser(name)._actions:
            if not action.option_strings or action.nargs == 0:
                continue
            words = " ".join([action.help or "", str(action.metavar or ""),
                              *action.option_strings])
            if (name, action.dest) not in NO_UNIT and UNIT_WORDS.search(words):
                found.append((name, action))
    return found


OPTIONS = _options()


def test_the_walk_finds_the_time_options() -> None:
    seen = {(name, a.dest) for name, a in OPTIONS}
    assert {("submit", "time_limit"), ("batch-script", "time_limit"),
            ("cluster", "max_wall_time"), ("cluster", "kill_grace"),
            ("transfer", "timeout"), ("cluster", "stdio_bytes")} <= seen


@pytest.mark.parametrize(("name", "action"), OPTIONS,
                         ids=[f"{n} {a.option_strings[-1]}" for n, a in OPTIONS])
def test_help_states_the_unit_the_parser_uses(name: str, action: argparse.Action) -> None:
    text = " ".join([action.help or "", str(action.metavar or "")]).lower()
    bare = _value(name, action, "90")
    assert bare is not None, f"fluxlite {name} {action.option_strings[-1]} refuses 90"
    assert isinstance(bare, (int, float)), (
        f"fluxlite {name} {action.option_strings[-1]}: a number option that keeps text; "
        "list its converter in LATER")
    unit = None
    for suffix, word in (("s", "second"), ("m", "minute"), ("h", "hour")):
        if _value(name, action, f"90{suffix}") == bare:
            unit = word
    if unit is None:  # no suffix syntax: the number as the command uses it inside
        unit = PLAIN_UNIT.get((name, action.dest))
        if unit is None:
            unit = "byte" if re.search(r"bytes?\b", text) else "second"
    assert unit in text or (unit == "second" and re.search(r"\b\d+ s\b", text)), (
        f"fluxlite {name} {action.option_strings[-1]}: a bare number is {unit}s, "
        f"the help does not say so: {action.help!r}")
    said = re.search(r"bare number is (\w+)", text)
    if said:
        assert said.group(1).startswith(unit), (
            f"fluxlite {name} {action.option_strings[-1]}: the help says a bare number is "
            f"{said.group(1)}, the parser reads {unit}s")


# kickstart's own command line: option -> (the field it sets, the unit its usage must name)
KICKSTART_UNITS = {"-k": ("term_timeout", "seconds"), "-K": ("kill_timeout", "seconds"),
                   "-m": ("monitor_interval", "seconds"), "-B": ("data_size", "bytes")}


@pytest.mark.parametrize("flag", sorted(KICKSTART_UNITS))
def test_kickstart_usage_states_the_unit_the_parser_uses(flag: str) -> None:
    from fluxlite.kickstart_args import USAGE, parse

    field, unit = KICKSTART_UNITS[flag]
    assert getattr(parse([flag, "90", "/bin/true"]), field) == 90  # kept as given: no scale
    line = next(ln for ln in USAGE.splitlines() if ln.startswith(f" {flag} "))
    assert unit in line.lower(), line
