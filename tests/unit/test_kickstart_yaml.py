"""The YAML writer's quoting: any bytes a task prints must give a record PyYAML reads back."""

from __future__ import annotations

import random

import pytest
import yaml

from fluxlite.record.kickstart import block_or_quoted, decode, q


def load_value(text: str) -> object:
    return yaml.safe_load(f"k: {text}\n")["k"]


@pytest.mark.parametrize("s", ["plain", 'with "quotes" and \\ backslash', "tab\there", "nl\nx",
                               "\x00\x01\x1b[31mred\x7f", "\x85\u2028\ufeff", "ünïcødé ✓",
                               "\U0001f600 emoji", "", " lead", "trail ", "#hash", "- dash",
                               "a: b", "{x}", "'single'", "\ud800"])
def test_q_round_trips(s: str) -> None:
    if "\ud800" in s:
        # lone surrogates cannot be written as UTF-8: they are escaped and read back as such
        assert load_value(q(s)) == s
        return
    assert load_value(q(s)) == s


def test_data_blocks_round_trip_random_bytes() -> None:
    rng = random.Random(1234)
    alphabet = [bytes([i]) for i in range(256)] + ["é".encode(), "✓".encode(), b"\n", b"\n",
                                                    b" ", b"  ", b"\r\n", b"\t"]
    for _ in range(400):
        raw = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        text = decode(raw)
        rendered = block_or_quoted(text, "        ")
        doc = yaml.safe_load("files:\n  stdout:\n    data: " + rendered + "\n")
        assert doc["files"]["stdout"]["data"] == text, (raw, rendered)


def test_clean_output_uses_kickstarts_block_style() -> None:
    assert block_or_quoted("output line\n", "  ").startswith("|\n")
    assert block_or_quoted("no newline", "  ").startswith("|-\n")
