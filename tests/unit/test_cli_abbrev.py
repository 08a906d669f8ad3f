"""No command takes an abbreviated option: drop-ins and scripts need the exact ones."""

from __future__ import annotations

import argparse

import pytest

from fluxlite.cli import COMMANDS, command_parser

ARGPARSE = [n for n in COMMANDS if n != "kickstart"]  # kickstart's is pegasus-kickstart's


def _parsers(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """A parser and every parser below it (sub-commands, if a command ever has them)."""
    found = [p]
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


@pytest.mark.parametrize("name", ARGPARSE)
def test_every_parser_refuses_abbreviations(name: str) -> None:
    for p in _parsers(command_parser(name)):
        assert p.allow_abbrev is False, f"{p.prog}: allow_abbrev is not False"


@pytest.mark.parametrize("name", ARGPARSE)
def test_a_prefix_of_a_long_option_is_not_that_option(name: str) -> None:
    p = command_parser(name)
    longs = [o for a in p._actions for o in a.option_strings
             if o.startswith("--") and a.nargs == 0 and o != "--help"]
    assert longs, f"fluxlite {name} has no long switch to abbreviate"
    option = longs[0]
    prefix = option[:-1]
    assert not any(o.startswith(prefix) and o != option for o in longs)  # a unique prefix
    needed: list[str] = []
    for a in p._actions:
        if not a.option_strings and a.nargs != argparse.ZERO_OR_MORE:
            needed.append("x")  # a positional argument
        elif a.required:
            needed += [a.option_strings[0], "1"]
    args, extra = p.parse_known_args([*needed, prefix])
    assert extra == [prefix], f"fluxlite {name} took {prefix} for {option}"
