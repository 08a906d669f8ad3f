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


# -- one source of truth: the field table, the validator and the shipped schema -------------

from dataclasses import fields as dc_fields  # noqa: E402

from fluxlite.numbers import MAX_SECONDS, check_number, parse_duration  # noqa: E402
from fluxlite.spec import (  # noqa: E402
    SECTIONS,
    Field,
    Limits,
    RecordsSpec,
    Resources,
    StagingOptions,
    WorkdirSpec,
    Workflow,
    preflight,
)

DATACLASS_OF = {"limits": Limits, "workdir": WorkdirSpec, "records": RecordsSpec,
                "staging": StagingOptions, "resources": Resources, "workflow": Workflow}


def test_the_shipped_schema_is_the_one_the_table_generates() -> None:
    """`python -m fluxlite.schema` regenerates it; a field added to the table and not to
    the shipped file (or edited by hand in the file) fails here."""
    from fluxlite.schema import SHIPPED, build

    assert json.loads(SHIPPED.read_text()) == build()


@pytest.mark.parametrize("section", sorted(DATACLASS_OF))
def test_section_dataclasses_have_the_fields_and_defaults_of_the_table(section: str) -> None:
    cls = DATACLASS_OF[section]
    assert [f.name for f in dc_fields(cls)] == list(SECTIONS[section])
    for name, f in SECTIONS[section].items():
        assert getattr(cls(), name) == f.default, name


def _samples(f: Field) -> list[object]:
    """Values on both sides of every bound and of the type, for one scalar field."""
    k = f.kind
    wrong = [True, [], {}]
    if k == "list" and f.items is not None and f.items.kind not in ("object", "custom"):
        return [[v] for v in _samples(f.items)] + [[], "x", 5, None]
    if k == "text":
        return ["", "x", "a\x00b", 5, None, []]
    if k in ("integer", "number", "duration"):
        lo, hi = f.minimum, f.maximum
        vals: list[object] = [lo, hi, lo - 1, hi + 1, hi * 10, 10**400, "x"]
        if lo + 0.5 <= hi:
            vals.append(lo + 0.5)
        if k == "duration":
            vals += ["1s", "1m1s", " 2s ", "soon", "", "1e3s", "3s\n", "٣s"]
        return vals + wrong
    if k == "boolean":
        return [True, False, "true", 0, None]
    if k == "enum":
        return [*f.options, "bogus", 3, None]
    if k == "const":
        return [*f.options, 2, "1", True]
    if k in ("string", "path", "record"):
        return ["/abs/x", "", 5, "a\x00b", None, *wrong]
    if k == "lfn":
        return ["a", "d/a", "a/", "/x", "../x", ".fluxlite/x", "./.fluxlite", "a\x00", "", 5]
    if k == "sha256":
        return ["a" * 64, "A" * 64, "zz", "a" * 65, 5]
    return []


def _place(section: str, key: str, value: object) -> dict[str, object]:
    """A valid document with one field set to value."""
    base: dict[str, object] = {"fluxlite": 1, "executable": "/bin/true"}
    if section == "":
        return {**base, key: value}
    if section in ("inputs", "outputs", "checkpoints"):
        item: dict[str, object] = {"lfn": "f", "urls": ["file:///d/f"]}
        if section == "checkpoints":
            item = {"lfn": "f", "url": "file:///d/f"}
        return {**base, section: [{**item, key: value}]}
    if section == "executable":
        return {**base, "executable": {"url": "file:///d/tool", key: value}}
    if section == "source":
        return {**base, "inputs": [{"lfn": "f", "urls": [{"url": "file:///d/f", key: value}]}]}
    return {**base, section: {key: value}}


def _cases() -> list[tuple[str, str, object]]:
    return [(section, key, v) for section, table in SECTIONS.items()
            for key, f in table.items() for v in _samples(f)]


@pytest.mark.parametrize(("section", "key", "value"), _cases(),
                         ids=lambda x: repr(x)[:30])
def test_validator_and_schema_agree_on_every_field(section: str, key: str,
                                                   value: object) -> None:
    """Every field, type, enum and bound of the table, on both sides of each bound: the
    validator and the shipped schema accept and refuse the same values."""
    jsonschema = pytest.importorskip("jsonschema")
    from fluxlite.schema import build

    doc = _place(section, key, value)
    try:
        JobSpec.from_dict(doc)
        ours = True
    except SpecError:
        ours = False
    theirs = jsonschema.Draft202012Validator(build()).is_valid(doc)
    assert ours == theirs, (doc, ours)


def test_every_section_of_the_table_is_reachable_in_the_schema() -> None:
    from fluxlite.schema import build

    text = json.dumps(build())
    for section, table in SECTIONS.items():
        for key in table:
            assert f'"{key}"' in text, (section, key)


# -- numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e300, 10**400,
                                   -(10**400), True, "1", None])
def test_check_number_refuses_what_is_not_a_bounded_number(value: object) -> None:
    assert check_number(value, minimum=0, maximum=MAX_SECONDS) is not None


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400),
    ("1.5m", 90), (" 2H ", 7200), (".5s", 0.5), (45, 45), (2.5, 2.5)])
def test_one_duration_syntax(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1e3", "1e3s", "-5", "5x", "nan", "inf",
                                  "1" * 400, "3s\n", "\u0663s", float("nan"), 1e300, True])
def test_what_is_not_a_duration(text: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        parse_duration(text)


def test_bare_numbers_in_minutes_for_pmc() -> None:
    assert parse_duration("10", bare=60) == 600 and parse_duration("10s", bare=60) == 10


def test_job_json_limits_take_durations() -> None:
    spec = JobSpec.from_dict(job(limits={"maxwalltime": "1h30m", "checkpoint_time": "1h",
                                         "kill_grace": "10s"}))
    assert (spec.limits.maxwalltime, spec.limits.checkpoint_time,
            spec.limits.kill_grace) == (5400, 3600, 10)
    assert JobSpec.from_dict(job(staging={"timeout": "2m"})).staging.timeout == 120


@pytest.mark.parametrize("text", ['{"limits": {"maxwalltime": NaN}}',
                                  '{"limits": {"kill_grace": Infinity}}',
                                  '{"monitor": {"interval": -Infinity}}',
                                  '{"limits": {"maxwalltime": 1e300}}',
                                  '{"limits": {"maxwalltime": 1e400}}',
                                  '{"staging": {"attempts": 1' + "0" * 400 + "}}",
                                  '{"resources": {"tasks": 1' + "0" * 400 + ".5}}",
                                  '{"records": {"stdio_bytes": -1' + "0" * 400 + "}}"])
def test_numbers_that_are_not_finite_or_in_bounds(text: str) -> None:
    doc = json.loads(text)
    raw = json.dumps(job(**doc))  # NaN and Infinity survive as Python's json writes them
    with pytest.raises(SpecError) as ei:
        JobSpec.from_json(raw)
    section, key = next(iter(doc.items()))
    assert any(p.startswith(f"{section}.{next(iter(key))}: ") for p in ei.value.problems)


# -- duplicate keys, NUL characters, names that cannot work ------------------------------------


def test_duplicate_keys_are_spec_errors() -> None:
    with pytest.raises(SpecError) as ei:
        JobSpec.from_json('{"fluxlite": 1, "executable": "/bin/true", "executable": "/x", '
                          '"limits": {"kill_grace": 1, "kill_grace": 2}, '
                          '"x-mine": {"a": 1, "a": 2}}')
    assert "executable: is given more than once" in ei.value.problems
    assert "limits.kill_grace: is given more than once" in ei.value.problems
    assert "duplicate key 'a' in an object" in ei.value.problems


@pytest.mark.parametrize(("kw", "where"), [
    ({"arguments": ["a\x00b"]}, "arguments[0]"),
    ({"environment": {"A": "x\x00"}}, "environment.A"),
    ({"environment": {"A\x00B": "x"}}, "environment."),
    ({"records": {"json": "/tmp/r\x00.json"}}, "records.json"),
    ({"meta": ["/tmp/m\x00.meta"]}, "meta[0]"),
    ({"workdir": {"base": "/tmp/w\x00"}}, "workdir.base"),
    ({"write_meta": "/tmp/o\x00.meta"}, "write_meta"),
    ({"executable": "/bin/tr\x00ue"}, "executable"),
    ({"name": "a\x00"}, "name"),
    ({"inputs": [{"lfn": "f", "urls": ["file:///data/f%00.txt"]}]}, "inputs[0].urls[0]"),
    ({"outputs": [{"lfn": "f", "urls": ["/results/f\x00"]}]}, "outputs[0].urls[0]"),
    ({"checkpoints": [{"lfn": "c", "url": "file:///p/c%00"}]}, "checkpoints[0].url"),
])
def test_nul_characters_are_spec_errors(kw: dict[str, object], where: str) -> None:
    assert any(p.startswith(where) and "NUL" in p for p in problems(job(**kw)))


def test_names_that_cannot_work() -> None:
    got = problems(job(inputs=[{"lfn": "dir/", "urls": ["file:///d/x"]},
                               {"lfn": ".fluxlite/stdout", "urls": ["file:///d/y"]}],
                       outputs=[{"lfn": "a", "urls": ["file:///r/same"]},
                                {"lfn": "b", "urls": ["file:///r/./same"]}],
                       checkpoints=[{"lfn": "c", "url": "/r/same"}], stdout=".fluxlite/x"))
    assert "inputs[0].lfn: 'dir/' ends with '/': it must name a file" in got
    assert any(p.startswith("inputs[1].lfn: '.fluxlite/stdout' is inside .fluxlite/") for p in got)
    assert "outputs[1].urls[0]: 'file:///r/./same' is also the destination of outputs[0]" in got
    assert "checkpoints[0].url: '/r/same' is also the destination of outputs[0]" in got
    assert any(p.startswith("stdout: '.fluxlite/x' is inside") for p in got)


def test_identity_fields_are_checked_with_everything_else() -> None:
    got = problems({"bogus": 1, "id": 5, "placement": "foo"})
    assert "bogus: unknown field" in got
    assert "id: must be a string, not a number" in got
    assert "placement: must be one of local, flux, nested, not 'foo'" in got
    assert "executable: is required" in got
    got = problems(job(site=3, write_meta=7, bogus=1))
    assert "site: must be a string, not a number" in got and "write_meta: must be a string, " \
        "not a number" in got


# -- relative paths, integrity, what is checked before the job starts --------------------------


def test_relative_paths_resolve_against_the_job_file(tmp_path: Path) -> None:
    d = tmp_path / "jobs"
    d.mkdir()
    p = d / "job.json"
    p.write_text(json.dumps({"fluxlite": 1, "executable": "/bin/true", "meta": ["in.meta"],
                             "write_meta": "out/job.meta", "workdir": {"base": "scratch"},
                             "records": {"kickstart": "-", "json": "../rec.json"},
                             "inputs": [{"lfn": "f", "urls": ["data/f"]}],
                             "stdout": "logs/out.txt"}))
    spec = JobSpec.from_file(str(p))
    assert spec.meta == (str(d / "in.meta"),)
    assert spec.write_meta == str(d / "out" / "job.meta")
    assert spec.workdir.base == str(d / "scratch")
    assert spec.records.json == str(tmp_path / "rec.json") and spec.records.kickstart == "-"
    assert spec.inputs[0].sources[0].url == str(d / "data" / "f")
    assert spec.stdout == "logs/out.txt"  # stdio names are in the worker directory
    # without a file there is no directory to resolve against: relative URLs are refused
    assert any("must name an absolute path" in p for p in problems(
        job(inputs=[{"lfn": "f", "urls": ["data/f"]}])))
    assert any("is not a URL: write file:///" in p for p in problems(
        job(inputs=[{"lfn": "f", "urls": ["file:data/f"]}])))


def test_integrity_required_without_meta_needs_every_checksum() -> None:
    got = problems(job(integrity="required", inputs=[
        {"lfn": "a", "urls": ["file:///d/a"], "sha256": SHA}, {"lfn": "b", "urls": ["file:///d/b"]}],
        executable={"url": "file:///d/tool"}))
    assert any(p.startswith("inputs[1].sha256: is required for 'b'") for p in got)
    assert any(p.startswith("executable.sha256: is required for 'tool'") for p in got)
    assert not any(p.startswith("inputs[0]") for p in got)
    assert any("integrity: must be one of best-effort, required" in p
               for p in problems(job(integrity="strict")))


def _meta(path: Path, **sums: str) -> str:
    path.write_text(json.dumps([{"_type": "file", "_id": lfn, "_attributes": {
        "checksum.type": "sha256", "checksum.value": v}} for lfn, v in sums.items()]))
    return str(path)


def test_preflight_reads_meta_files_and_checks_destinations(tmp_path: Path) -> None:
    good = _meta(tmp_path / "good.meta", a=SHA)
    bad = tmp_path / "bad.meta"
    bad.write_text("{not json")
    (tmp_path / "blocker").write_text("")
    spec = JobSpec.from_dict(job(
        meta=[good, str(tmp_path / "missing.meta"), str(bad)], checkpoints=[],
        executable="/nonexistent/tool", write_meta=str(tmp_path / "blocker" / "o.meta"),
        records={"kickstart": str(tmp_path), "json": str(tmp_path / "new" / "r.json")},
        inputs=[{"lfn": "a", "urls": ["file:///d/a"]}],
        outputs=[{"lfn": "o", "urls": [f"file://{tmp_path}/blocker/o"]},
                 {"lfn": "p", "urls": [f"file://{tmp_path}/blocker/p", f"file://{tmp_path}/p"]}]))
    got = preflight(spec)
    assert any(p.startswith("meta[1]: cannot read") for p in got)
    assert any(p.startswith("meta[2]:") and "not valid JSON" in p for p in got)
    assert any(p.startswith("records.kickstart:") and "is a directory" in p for p in got)
    assert not any(p.startswith("records.json") for p in got)  # its parent is created
    assert any(p.startswith("write_meta:") and "is not a directory" in p for p in got)
    assert any(p.startswith("outputs[0].urls: no destination of 'o'") for p in got)
    assert not any(p.startswith("outputs[1]") for p in got)  # the second destination works
    assert "executable: '/nonexistent/tool' does not exist" in got
    assert preflight(spec, executables=False)[-1] != "executable: '/nonexistent/tool' does not exist"


def test_preflight_integrity_required_with_meta(tmp_path: Path) -> None:
    m = _meta(tmp_path / "in.meta", a=SHA)
    inputs = [{"lfn": "a", "urls": ["file:///d/a"]}, {"lfn": "b", "urls": ["file:///d/b"]}]
    spec = JobSpec.from_dict(job(integrity="required", meta=[m], inputs=inputs, checkpoints=[],
                                 executable="/bin/true", outputs=[]))
    got = preflight(spec)
    assert len(got) == 1 and got[0].startswith("inputs[1].sha256: is required for 'b'")


def test_every_field_of_the_table_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "job-spec.md").read_text()
    for section, table in SECTIONS.items():
        for key in table:
            assert f"`{key}`" in doc or f'"{key}"' in doc or f"{section}.{key}" in doc, (
                section, key)


def test_the_reserved_area_is_where_the_runner_captures_stdio() -> None:
    from fluxlite.runner import STDIO_DIR
    from fluxlite.spec import RESERVED_DIR

    assert STDIO_DIR == RESERVED_DIR
    assert check_lfn(f"{STDIO_DIR}/stdout") is not None


def test_the_documented_complete_example_is_a_valid_job() -> None:
    import re

    text = (Path(__file__).parents[2] / "docs" / "job-spec.md").read_text()
    block = re.search(r"## A complete example\n\n(?:<!--.*?-->\n)?```json\n(.*?)\n```", text,
                      re.S)
    assert block is not None
    spec = JobSpec.from_json(block.group(1), base_dir="/job")  # relative to the job file
    assert spec.name == "diamond::findrange:4.0" and len(spec.inputs) == 3
