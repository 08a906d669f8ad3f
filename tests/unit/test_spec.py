from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluxlite.errors import SpecError
from fluxlite.spec import JobSpec, check_lfn

SHA = "a" * 64


def job(**kw: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "fluxlite": 1, "name": "diamond::findrange:4.0", "id": "ID0000002", "site": "flux-local",
        "workflow": {"label": "diamond", "stamp": "2026-11-22T08:00:00+00:00"},
        "executable": "/usr/bin/python3", "arguments": ["findrange.py", "-i", "f.b1"],
        "environment": {"OMP_NUM_THREADS": "2"},
        "stdin": None, "stdout": None, "stderr": None,
        "inputs": [
            {"lfn": "findrange.py", "urls": ["file:///data/bin/findrange.py"], "sha256": SHA,
             "executable": True},
            {"lfn": "f.b1", "urls": ["file:///data/f.b1", "file:///mirror/f.b1"], "sha256": SHA,
             "symlink": False}],
        "outputs": [{"lfn": "f.c1", "urls": ["file:///results/f.c1"], "optional": False}],
        "checkpoints": [{"lfn": "state.ckpt", "url": "file:///persist/state.ckpt"}],
        "limits": {"maxwalltime": 3600, "checkpoint_time": 600},
        "workdir": {"base": None, "keep": "on-failure", "min_free_mb": 1000},
        "records": {"kickstart": "-", "json": None},
    }
    doc.update(kw)
    return doc


def problems(doc: object) -> list[str]:
    with pytest.raises(SpecError) as ei:
        JobSpec.from_dict(doc)
    return ei.value.problems


def test_the_documented_example_is_valid() -> None:
    spec = JobSpec.from_dict(job())
    assert spec.name == "diamond::findrange:4.0"
    assert spec.inputs[1].sources[1].url == "file:///mirror/f.b1"
    assert spec.inputs[0].executable and spec.inputs[0].sha256 == SHA
    assert spec.limits.checkpoint_time == 600 and spec.limits.maxwalltime == 3600
    assert spec.workdir.keep == "on-failure"
    assert spec.records.kickstart == "-" and spec.records.json is None
    assert spec.env == {"OMP_NUM_THREADS": "2"}


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    doc = job(inputs=[{"lfn": "../x", "urls": ["ftp://h/x"], "sha256": "zz"},
                      {"lfn": "ok", "urls": []}],
              outputs=[{"lfn": "/etc/passwd", "urls": ["file:///r/x"]}],
              limits={"maxwalltime": -1}, arguments=["a", 3], bogus=1)
    got = problems(doc)
    joined = "\n".join(got)
    assert "inputs[0].lfn: '../x' escapes the worker directory" in joined
    assert "inputs[0].urls[0]: unsupported scheme 'ftp' for stage-in" in joined
    assert "inputs[0].sha256: must be 64 hexadecimal digits" in joined
    assert "inputs[1].urls: must be a non-empty list of URLs" in joined
    assert "outputs[0].lfn: '/etc/passwd' is absolute" in joined
    assert "limits.maxwalltime: must be > 0" in joined
    assert "arguments[1]: must be a string, not a number" in joined
    assert "bogus: unknown field" in joined
    assert len(got) >= 8


@pytest.mark.parametrize("lfn", ["../x", "/etc/passwd", "a/../../b", "a/..", "", ".", "x/../.."])
def test_escaping_lfns_are_invalid(lfn: str) -> None:
    assert check_lfn(lfn) is not None


@pytest.mark.parametrize("lfn", ["f.a", "dir/f.a", "sp ace.txt", "ünï.dat", "a/./b"])
def test_ordinary_lfns_are_fine(lfn: str) -> None:
    assert check_lfn(lfn) is None


def test_required_fields_and_version() -> None:
    got = problems({"name": "x"})
    assert any(p.startswith("fluxlite: is required") for p in got)
    assert "executable: is required" in got
    assert any("unsupported version 2" in p for p in problems(job(fluxlite=2)))


@pytest.mark.parametrize("limits,msg", [
    ({"maxwalltime": 100, "checkpoint_time": 95}, "less than 10 s apart"),
    ({"maxwalltime": 100, "checkpoint_time": 100}, "is not before limits.maxwalltime"),
    ({"maxwalltime": 100, "checkpoint_time": 200}, "is not before limits.maxwalltime"),
])
def test_impossible_schedules_are_spec_errors(limits: dict[str, float], msg: str) -> None:
    assert any(msg in p for p in problems(job(limits=limits)))


def test_malformed_json_is_one_problem(tmp_path: Path) -> None:
    p = tmp_path / "job.json"
    p.write_text('{"fluxlite": 1,')
    with pytest.raises(SpecError) as ei:
        JobSpec.from_file(str(p))
    assert len(ei.value.problems) == 1 and "malformed JSON" in str(ei.value)
    assert str(ei.value).startswith(str(p))


def test_staged_executable_object() -> None:
    spec = JobSpec.from_dict(job(executable={"url": "file:///data/bin/tool.sh", "sha256": SHA}))
    assert spec.executable == "tool.sh"
    assert spec.staged_executable is not None and spec.staged_executable.executable
    bad = problems(job(executable={"url": "gopher://x/y"}))
    assert any("executable.url" in p and "unsupported scheme 'gopher'" in p for p in bad)


def test_duplicate_lfns_are_rejected() -> None:
    doc = job(inputs=[{"lfn": "a", "urls": ["file:///x/a"]}, {"lfn": "./a", "urls": ["file:///y/a"]}])
    assert any("already staged in" in p for p in problems(doc))


def test_schema_accepts_what_the_validator_accepts() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from importlib.resources import files

    schema = json.loads((files("fluxlite") / "schema" / "job.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(job(), schema)
    example = Path(__file__).parents[2] / "examples"
    for p in example.glob("*.json"):
        doc = json.loads(p.read_text())
        if doc.get("fluxlite") == 1:
            jsonschema.validate(doc, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(job(inputs=[{"lfn": "x"}]), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(job(bogus=1), schema)


def test_names_below_a_staged_file_are_rejected() -> None:
    """A symlinked input may be a directory outside the worker directory: nothing may be
    written through it."""
    link = {"lfn": "d", "urls": ["file:///outside"], "symlink": True}
    bad = problems(job(inputs=[link, {"lfn": "d/x", "urls": ["file:///data/x"]}],
                       outputs=[{"lfn": "d/y", "urls": ["file:///results/y"]}],
                       checkpoints=[], stdout="d/out.txt", stderr="d"))
    assert any(p.startswith("inputs[1].lfn: 'd/x' lies below 'd'") for p in bad)
    assert any(p.startswith("outputs[0].lfn: 'd/y' lies below 'd'") for p in bad)
    assert any(p.startswith("stdout: 'd/out.txt' lies below 'd'") for p in bad)
    assert any(p.startswith("stderr: 'd' is staged in by inputs[0]") for p in bad)
    ok = JobSpec.from_dict(job(inputs=[link], checkpoints=[], stdin="d", stdout="dd/out"))
    assert ok.stdin == "d"
