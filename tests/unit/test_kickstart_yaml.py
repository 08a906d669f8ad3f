"""The YAML writer's quoting: any bytes a task prints must give a record PyYAML reads back."""

from __future__ import annotations

import os
import random
from typing import Any

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


# Every class of code point a reader may treat specially: line breaks (NEL, U+2028, U+2029,
# CR), the byte order mark, C0 and C1 controls, DEL, the non-characters, lone surrogates,
# tabs and spaces at the edges of lines, and plain text from every plane.
_SPECIAL = ["\x85", "\u2028", "\u2029", "\r", "\r\n", "\n", "\n\n", "\ufeff", "\ufffe",
            "\uffff", "\x00", "\x1b", "\x7f", "\x9f", "\xa0", "\t", " ", "  ", "\ud800",
            "\udcff", "\U0010ffff", "\U0001f600", "- ", "#", "|", ">", "---", "...", "\"", "\\",
            "[cluster-task x]", "- invocation: True"]


def _text() -> Any:
    from hypothesis import strategies as st

    piece = st.one_of(st.sampled_from(_SPECIAL), st.characters(),
                      st.text(st.characters(max_codepoint=0x7f), max_size=4))
    return st.lists(piece, max_size=16).map("".join)


def _record(text: str) -> str:
    data = block_or_quoted(text, "        ")
    return ("- invocation: True\n  version: 3.0\n  start: 2024-01-01T00:00:00.000+00:00\n"
            f"  duration: 1.000\n  transformation: {q(text)}\n  derivation: \"ID1\"\n"
            "  hostname: localhost\n  mainjob:\n    start: 2024-01-01T00:00:00.000+00:00\n"
            "    duration: 1.000\n    pid: 7\n    status:\n      raw: 0\n"
            "      regular_exitcode: 0\n    executable:\n      file_name: \"/bin/true\"\n"
            f"    argument_vector:\n      - {q(text)}\n  files:\n    stdout:\n"
            "      temporary_name: \"/tmp/ks.out\"\n      data_truncated: false\n"
            f"      data: {data}\n")


def test_every_code_point_class_reads_back_with_every_reader(tmp_path: Any) -> None:
    """Each string in a record (a quoted scalar, a list item, a data block) reads back
    exactly with PyYAML's Python and C loaders and with Pegasus's own parser."""
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import given, settings

    from tests.conftest import oracle_available

    c_loader = getattr(yaml, "CSafeLoader", None)
    checked = {"n": 0}

    @settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None,
              database=None, suppress_health_check=list(hypothesis.HealthCheck))
    @given(text=_text())
    def check(text: str) -> None:
        checked["n"] += 1
        rec = _record(text)
        # a lone surrogate (an undecodable byte of a file name or an argument) is written
        # as its escape, which libyaml refuses: the C loader is checked without them
        lone = any(0xD800 <= ord(c) <= 0xDFFF for c in text)
        for loader in [yaml.SafeLoader, *([c_loader] if c_loader and not lone else [])]:
            inv = yaml.load(rec, Loader=loader)[0]  # noqa: S506 - safe loaders
            assert inv["transformation"] == text, (loader, rec)
            assert inv["mainjob"]["argument_vector"] == [text], (loader, rec)
            assert inv["files"]["stdout"]["data"] == text, (loader, rec)
        if oracle_available():
            from Pegasus.tools import kickstart_parser as kp

            path = tmp_path / "ks.out"
            path.write_text(rec, encoding="utf-8", errors="surrogatepass")
            got = kp.Parser(str(path)).parse_stdout_stderr()
            assert [r.get("stdout") for r in got] == [text], rec

    check()
    assert checked["n"] >= 100


@pytest.mark.parametrize("ch", ["\x85", "\u2028", "\u2029", "\ufeff"])
def test_line_breaks_of_other_readers_never_stand_in_a_block(ch: str) -> None:
    rendered = block_or_quoted(f"one{ch}two\n", "  ")
    assert ch not in rendered and rendered.startswith('"')
    assert ch not in q(f"a{ch}b")


@pytest.mark.parametrize(("text", "why"), [
    ("a: &x [1]\nb: *x\n", "aliases are not allowed"),
    ("a: &x [1, &y [2]]\nb: [*x, *x]\n", "aliases are not allowed"),
    ("a: {<<: {b: 1}, c: 2}\n", "merge keys are not allowed"),
    ("a: &x {b: 1}\nc: {<<: *x}\n", "not allowed"),
    ("a: {!!merge m: {b: 1}}\n", "merge keys are not allowed"),
])
def test_records_are_read_without_aliases_or_merge_keys(text: str, why: str) -> None:
    from fluxlite.record.yamlload import RefusedYAML, load

    with pytest.raises(RefusedYAML, match=why):
        load(text)


def test_the_record_loader_reads_what_the_writer_writes() -> None:
    from fluxlite.record.yamlload import load

    # an anchor's name alone (no alias) is harmless; a lone surrogate's escape (which
    # libyaml refuses) is read by the Python loader, as Pegasus's parser reads it
    assert load(f"k: {q('a&b *c')}\nl: {q(chr(0xDC80))}\n") == {"k": "a&b *c", "l": "\udc80"}
    assert load("") is None
