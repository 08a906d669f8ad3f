"""Reading Pegasus .meta files: every entry with a checksum counts, whatever its _type."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluxlite.errors import SpecError
from fluxlite.meta import read_meta_files

A, B, C, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)


def _entry(lfn: str, value: str | None, type_: str | None) -> dict[str, object]:
    attrs = {"checksum.type": "sha256", "checksum.value": value} if value else {"size": "3"}
    e: dict[str, object] = {"_id": lfn, "_attributes": attrs}
    if type_ is not None:
        e["_type"] = type_
    return e


def test_the_planners_types_count_as_pegasus_integrity_counts_them(tmp_path: Path) -> None:
    # what Pegasus 5.1.2's planner writes as <job>.in.meta: "data" for the inputs,
    # "executable" for a staged executable; pegasus-exitcode's own .meta says "file"
    meta = tmp_path / "preprocess_ID0000001.in.meta"
    meta.write_text(json.dumps([
        _entry("f.a", A.upper(), "data"),
        _entry("pegasus-keg", B, "executable"),
        _entry("f.b", C, "file"),
        _entry("f.c", D, None),
        _entry("f.nosum", None, "data"),  # no checksum: not expected
    ]))
    assert read_meta_files([str(meta)]) == {"f.a": A, "pegasus-keg": B, "f.b": C, "f.c": D}


def test_a_later_file_wins_and_non_objects_are_skipped(tmp_path: Path) -> None:
    first, second = tmp_path / "a.meta", tmp_path / "b.meta"
    first.write_text(json.dumps([_entry("f.a", A, "data"), "junk", 3]))
    second.write_text(json.dumps([_entry("f.a", B, "file")]))
    assert read_meta_files([str(first), str(second)]) == {"f.a": B}


def test_an_entry_without_an_id_is_named(tmp_path: Path) -> None:
    meta = tmp_path / "x.meta"
    meta.write_text(json.dumps([{"_type": "data", "_attributes": {}}]))
    with pytest.raises(SpecError, match=r"meta\[2\]: .*x\.meta\[0\]: needs _id"):
        read_meta_files([str(meta)], first=2)
