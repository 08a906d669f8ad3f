"""One language across commands: every command's parser against docs/cli.md.

A short option means one thing across fluxlite's own commands; the drop-ins keep their
originals' flags, exempted here by name; every command that writes a JSON record takes
``--json PATH``; and docs/cli.md lists exactly the short options the parsers have.
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

import pytest

from fluxlite.cli import COMMANDS, command_parser

ROOT = Path(__file__).resolve().parents[2]
CLI_DOC = ROOT / "docs" / "cli.md"

OWN = ("run", "validate", "submit", "batch-script", "cluster", "stats", "report",
       "pegasus-home")
# flags kept from the tool a command replaces: (command, short option) -> the original
DROP_IN_FLAGS = {
    ("cluster", "-t"): "pegasus-mpi-cluster", ("cluster", "-r"): "pegasus-mpi-cluster",
    ("cluster", "-n"): "pegasus-cluster", ("cluster", "-f"): "pegasus-cluster",
    ("transfer", "-f"): "pegasus-transfer", ("transfer", "-n"): "pegasus-transfer",
    ("transfer", "-m"): "pegasus-transfer", ("transfer", "-s"): "pegasus-transfer",
    ("transfer", "-d"): "pegasus-transfer",
}
# a command line of its own (pegasus-kickstart's, parsed by fluxlite.kickstart_args)
NOT_ARGPARSE = {"kickstart"}
WRITES_JSON_RECORD = ("run", "cluster", "transfer")
JSON_IS_A_FORMAT = {"stats"}  # `stats --json` prints JSON instead of tables; no path


def parser(name: str) -> argparse.ArgumentParser:
    """The parser `fluxlite NAME` parses its arguments with."""
    return command_parser(name)


PARSED = [n for n in COMMANDS if n not in NOT_ARGPARSE]


def short_options() -> dict[tuple[str, str], set[str]]:
    """(short option, its long option) -> the commands that have it."""
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for name in PARSED:
        for action in parser(name)._actions:
            longs = [o for o in action.option_strings if o.startswith("--")]
            for short in (o for o in action.option_strings if not o.startswith("--")):
                found[(short, longs[0] if longs else "")].add(name)
    return found


def doc_table(heading: str) -> dict[tuple[str, str], set[str]]:
    text = CLI_DOC.read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[tuple[str, str], set[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`-\w`", cells[0]):
            key = (cells[0].strip("`"), cells[1].strip("`"))
            rows[key] = rows.get(key, set()) | {c.strip() for c in cells[2].split(",")}
    assert rows, f"no table under '## {heading}' in {CLI_DOC}"
    return rows


def _split() -> tuple[dict[tuple[str, str], set[str]], dict[tuple[str, str], set[str]]]:
    own: dict[tuple[str, str], set[str]] = defaultdict(set)
    dropin: dict[tuple[str, str], set[str]] = defaultdict(set)
    for key, commands in short_options().items():
        for name in commands:
            (dropin if (name, key[0]) in DROP_IN_FLAGS else own)[key].add(name)
    return own, dropin


def test_one_meaning_per_short_option() -> None:
    own, _ = _split()
    longs: dict[str, set[str]] = defaultdict(set)
    for short, long in own:
        longs[short].add(long)
    clashes = {s: sorted(ls) for s, ls in longs.items() if len(ls) > 1}
    assert not clashes, f"short options with more than one meaning: {clashes}"


@pytest.mark.parametrize("name", OWN)
def test_common_short_options_everywhere(name: str) -> None:
    options = {o: a for a in parser(name)._actions for o in a.option_strings}
    assert "--verbose" in options["-v"].option_strings
    assert "--quiet" in options["-q"].option_strings
    if "-t" in options and (name, "-t") not in DROP_IN_FLAGS:
        assert "--time-limit" in options["-t"].option_strings


def test_cli_doc_lists_every_short_option() -> None:
    own, dropin = _split()
    assert doc_table("fluxlite's own short options") == dict(own)
    assert doc_table("The drop-ins' own short options") == dict(dropin)


def test_drop_in_flags_exist() -> None:
    """An exemption names a flag the command really has (no stale exemption)."""
    found = {(name, short) for (short, _), names in short_options().items() for name in names}
    assert set(DROP_IN_FLAGS) <= found


@pytest.mark.parametrize("name", [n for n in PARSED if n not in JSON_IS_A_FORMAT])
def test_json_takes_a_path(name: str) -> None:
    actions = {o: a for a in parser(name)._actions for o in a.option_strings}
    if name in WRITES_JSON_RECORD:
        assert "--json" in actions, f"fluxlite {name} writes a JSON record: --json PATH"
    if "--json" in actions:
        action = actions["--json"]
        assert isinstance(action, argparse._StoreAction) and action.nargs is None, (
            f"fluxlite {name} --json must take the record's PATH")
