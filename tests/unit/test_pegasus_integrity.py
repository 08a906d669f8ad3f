"""The list forms pegasus-integrity reads, and the multipart text it writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fluxlite.pegasus.integrity import Check, attempts_yaml, split_entries


@pytest.mark.parametrize(("text", "known", "want"), [
    ("a;;;b", (), [(None, "a"), (None, "b")]),
    ("a:b", (), [(None, "a"), (None, "b")]),
    ("a=x/a;;;b=x/b\n", (), [("a", "x/a"), ("b", "x/b")]),
    ("a=x:b=y", (), [("a", "x"), ("b", "y")]),
    ("diamond::f.a", ("diamond::f.a",), [(None, "diamond::f.a")]),
    (" a ;;; ;;;b:", (), [(None, "a"), (None, "b")]),
    ("", (), []),
])
def test_split_entries(text: str, known: tuple[str, ...],
                       want: list[tuple[str | None, str]]) -> None:
    assert split_entries(text, known) == want


def test_an_existing_file_with_a_colon_stays_whole(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x:y").write_text("")
    assert split_entries("x:y") == [(None, "x:y")]


def test_attempts_yaml_round_trips_awkward_names() -> None:
    checks = [Check('we"ird: name\t', "p/q", "a" * 64, "a" * 64),
              Check("bad", "bad", "b" * 64, "c" * 64), Check("unread", "unread", "d" * 64),
              Check("nometa", "nometa")]
    doc = yaml.safe_load(attempts_yaml(checks, 1.5))
    attempts = doc[0]["integrity_verification_attempts"]
    assert attempts[0]["lfn"] == 'we"ird: name\t' and attempts[0]["success"] is True
    assert attempts[1]["sha256_expected"] == "b" * 64 and attempts[1]["success"] is False
    assert attempts[2]["sha256"] == "None"  # pegasus-integrity's spelling of no digest
    assert [a["lfn"] for a in attempts] == ['we"ird: name\t', "bad", "unread"]
    assert doc[1]["integrity_summary"] == {"succeeded": 1, "failed": 2, "duration": 1.5}
