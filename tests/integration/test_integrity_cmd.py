"""`fluxlite integrity` against pegasus-integrity's documented command line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import Fluxlite, sha256_of


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name in ("f.a", "f.b", "with:colon"):
        p = tmp_path / name
        p.write_bytes(os.urandom(100_000) + name.encode())
        out[name] = p
    meta = [{"_type": "file", "_id": name,
             "_attributes": {"checksum.type": "sha256", "checksum.value": sha256_of(p)}}
            for name, p in out.items()]
    (tmp_path / "job.in.meta").write_text(json.dumps(meta))
    (tmp_path / "empty.meta").write_text("")  # skipped, as pegasus-integrity skips it
    return out


def _mp(tmp_path: Path) -> dict[str, str]:
    d = tmp_path / "multipart"
    d.mkdir(exist_ok=True)
    return {"PEGASUS_MULTIPART_DIR": str(d)}


@pytest.mark.parametrize(("listing", "want"), [
    ("f.a;;;f.b", ["f.a", "f.b"]),  # 5.1
    ("f.a:f.b", ["f.a", "f.b"]),  # 5.0
    ("f.a=f.a;;;f.b=f.b\n", ["f.a", "f.b"]),
    ("f.a;;;with:colon", ["f.a", "with:colon"]),  # a known lfn keeps its colon
    ("with:colon", ["with:colon"]),
])
def test_verify_lists_of_pegasus_5_0_and_5_1(fl: Fluxlite, files: dict[str, Path],
                                              tmp_path: Path, listing: str,
                                              want: list[str]) -> None:
    p = fl.run("integrity", "--print-timings", "--verify=stdin", input=listing.encode(),
               env=_mp(tmp_path))
    assert p.returncode == 0, p.stderr.decode()
    (part,) = list((tmp_path / "multipart").iterdir())
    assert part.name.endswith("-integrity")
    doc = yaml.safe_load(part.read_text())
    attempts = doc[0]["integrity_verification_attempts"]
    assert sorted(a["lfn"] for a in attempts) == want
    assert all(a["success"] is True for a in attempts)
    assert doc[1]["integrity_summary"]["failed"] == 0
    assert doc[1]["integrity_summary"]["succeeded"] == len(want)


def test_verify_mismatch_missing_file_and_unknown_lfn_fail(
        fl: Fluxlite, files: dict[str, Path], tmp_path: Path) -> None:
    files["f.b"].write_bytes(b"changed")
    (tmp_path / "f.a").unlink()
    p = fl.run("integrity", "--print-timings", "--verify=f.a;;;f.b;;;nometa;;;with:colon",
               env=_mp(tmp_path))
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert "Integrity check: File f.a does not exist" in err
    assert f"Integrity check: f.b: Expected checksum ({sha256_of(tmp_path / 'with:colon')}" \
        not in err
    assert "f.b: Expected checksum (" in err and "does not match the calculated checksum" in err
    assert "Integrity check: No checksum in the meta data for nometa" in err
    (part,) = list((tmp_path / "multipart").iterdir())
    doc = yaml.safe_load(part.read_text())
    by_lfn = {a["lfn"]: a for a in doc[0]["integrity_verification_attempts"]}
    assert by_lfn["with:colon"]["success"] is True
    assert by_lfn["f.b"]["success"] is False
    assert by_lfn["f.b"]["sha256"] == sha256_of(files["f.b"])
    assert by_lfn["f.b"]["sha256_expected"]
    assert "nometa" not in by_lfn  # no checksum to compare: no attempt, as in Pegasus
    assert by_lfn["f.a"]["sha256"] == "None"
    assert doc[1]["integrity_summary"]["failed"] == 2


def test_without_print_timings_no_multipart(fl: Fluxlite, files: dict[str, Path],
                                            tmp_path: Path) -> None:
    p = fl.run("integrity", "--verify", "f.a", env=_mp(tmp_path))
    assert p.returncode == 0
    assert list((tmp_path / "multipart").iterdir()) == []


def test_generate_forms(fl: Fluxlite, files: dict[str, Path], tmp_path: Path) -> None:
    p = fl.run("integrity", "--generate=f.a;;;f.b")
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().splitlines() == [f"{sha256_of(files['f.a'])}  f.a",
                                              f"{sha256_of(files['f.b'])}  f.b"]
    p = fl.run("integrity", "--generate-yaml=x=f.a")
    assert p.returncode == 0
    doc = yaml.safe_load(p.stdout)
    assert doc["sha256"] == sha256_of(files["f.a"]) and "checksum_timing" in doc
    p = fl.run("integrity", "--generate-fullstat-yaml=out.a=f.a;;;f.b")
    assert p.returncode == 0
    doc = yaml.safe_load(p.stdout)
    assert doc["out.a"]["sha256"] == sha256_of(files["f.a"])
    assert doc["out.a"]["output"] is True and doc["out.a"]["size"] == files["f.a"].stat().st_size
    assert doc["out.a"]["file_name"] == "f.a" and "f.b" in doc
    side = tmp_path / "ks.integrity"
    for lfn in ("one", "two"):  # appended, not replaced
        p = fl.run("integrity", f"--generate-fullstat-yaml={lfn}=f.a",
                   env={"KICKSTART_INTEGRITY_DATA": str(side)})
        assert p.returncode == 0 and p.stdout == b""
    assert sorted(yaml.safe_load(side.read_text())) == ["one", "two"]


@pytest.mark.parametrize(("args", "rc", "message"), [
    ((), 1, "One, and only one, of --generate-* and --verify needs to be specified"),
    (("--verify=a", "--generate=b"), 1, "One, and only one"),
    (("--verify",), 2, "argument --verify: expected one argument"),
    (("--bogus",), 2, "unrecognized arguments: --bogus"),
    (("--generate=missing",), 1, "File missing does not exist"),
    (("--generate-xmls=f.a",), 1, "XML kickstart records are not supported"),
])
def test_command_line_errors(fl: Fluxlite, files: dict[str, Path], args: tuple[str, ...],
                             rc: int, message: str) -> None:
    p = fl.run("integrity", *args)
    err = p.stderr.decode()
    assert p.returncode == rc, err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_debug_names_the_metadata(fl: Fluxlite, files: dict[str, Path]) -> None:
    p = fl.run("integrity", "--debug", "--verify=f.a")
    assert p.returncode == 0
    assert "job.in.meta" in p.stderr.decode()
