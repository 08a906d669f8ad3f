"""Any job.json document and any transfer list: exit 0 or 2 with one line per problem, never
a traceback, never a hang.

Documents come from three sources: arbitrary JSON, documents shaped by job.json's own field
table with hostile values in every field (NaN, 1e300, 400-digit integers, NUL characters,
lone surrogates, escaping names, odd URLs), and raw text (duplicate keys, NaN tokens, bad
UTF-8, truncation). The command line runs in-process for speed; a few go through real
subprocesses at the end.

Records for ``fluxlite stats`` and ``fluxlite report`` too: fluxlite's JSON records of jobs
and clusters and kickstart outputs (several records, multipart sections, cluster lines, a
time-out line), each as a writer makes it with a few fields spoilt (absurd numbers, wrong
types, YAML tags, anchors and aliases, an alias bomb, truncation, trailing bytes): exit 0 or
1, one line per skip, no traceback, finite JSON figures, a report whose data cannot end its
script element. ``stats-read`` counts the examples of which a record was read.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fluxlite.cli import main  # noqa: E402
from fluxlite.spec import SECTIONS, Field  # noqa: E402

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
COUNTED: dict[str, int] = {}

NUMBERS = [float("nan"), float("inf"), -float("inf"), 1e300, -1e300, 10**400, -(10**400),
           0, -0.0, -1, 0.001, 1, 1.5, 5, 60, 3600, 2**31, 2**63, 1e-300]
TEXTS = ["", "\x00", "a\x00b", "\ud800", "\udc80", "../x", "/", ".", "./", "d/",
         ".fluxlite/stdout", ".fluxlite", "/etc/passwd", "/dev/zero", "/dev/null", "-",
         "90s", "1h30m", "1e3", "soon", " 2h ", "local", "flux", "nested", "never", "always",
         "on-failure", "forward", "term", "required", "best-effort", "a" * 64, "x" * 300,
         "true", "/bin/true", "true", "sh", "$HOME", "%00", "é", "\n", "\u2028"]
URLS = ["file:///tmp/x", "file:///", "/tmp/y", "file:///tmp/a%00b", "file://host/x",
        "file:rel", "rel/path", "http://u:p@127.0.0.1:9/x", "https://h/x?token=s",
        "s3://b/k", "symlink:///tmp/l", "gopher://x", "ftp://h/x", "http://[::1", "", "\x00"]


def _leaf() -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(NUMBERS), st.sampled_from(TEXTS), st.sampled_from(URLS),
                     st.booleans(), st.none(), st.integers(), st.floats(), st.text(max_size=12))


def _json() -> st.SearchStrategy[Any]:
    return st.recursive(_leaf(), lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
        max_leaves=12)


def _value(f: Field) -> st.SearchStrategy[Any]:
    """A value for one field of the table: mostly plausible, often hostile."""
    if f.kind == "object":
        return st.one_of(_section(f.section), _leaf())
    if f.kind == "list":
        assert f.items is not None
        return st.one_of(st.lists(_value(f.items), max_size=3), _leaf())
    if f.kind == "custom":
        return st.one_of(st.sampled_from(URLS), st.sampled_from(TEXTS),
                         st.dictionaries(st.sampled_from([*TEXTS, "PATH", "A"]),
                                         st.sampled_from(TEXTS), max_size=3),
                         st.lists(st.one_of(st.sampled_from(URLS), _section("source")),
                                  max_size=3),
                         _section("executable"), _leaf())
    plausible: list[Any] = list(f.options) + ([f.default] if f.default is not None else [])
    plausible += [f.minimum, f.maximum, f.maximum + 1] if f.kind in (
        "integer", "number", "duration") else []
    if plausible:
        return st.one_of(st.sampled_from(plausible), _leaf())
    return _leaf()


def _section(name: str) -> st.SearchStrategy[dict[str, Any]]:
    table = SECTIONS[name]
    return st.fixed_dictionaries(
        {}, optional={key: st.deferred(lambda f=f: _value(f)) for key, f in table.items()}
        | {"bogus": _leaf(), "x-mine": _json()})


def _document() -> st.SearchStrategy[Any]:
    shaped = _section("").map(lambda d: {"fluxlite": 1, "executable": "/bin/true", **d})
    return st.one_of(shaped, shaped, _json())


def _raw(doc: Any, draw_text: str, how: int) -> bytes:
    text = json.dumps(doc, allow_nan=True)
    if how == 1 and text.startswith("{") and len(text) > 2:  # a key given twice
        text = '{"executable": "/bin/false", ' + text[1:]
    elif how == 2:
        text = text[: len(text) // 2]
    elif how == 3:
        text = text.replace("1", draw_text or "NaN", 1)
    data = text.encode("utf-8", "surrogatepass")
    return data + b"\xff" if how == 4 else data


def _cli(*argv: str) -> tuple[int, str, str]:
    err = io.StringIO()
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    log = logging.getLogger("fluxlite")
    saved = (log.handlers[:], log.level, log.propagate)  # the CLI sets up its logging
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(list(argv))
        except SystemExit as stop:  # argparse
            code = stop.code if isinstance(stop.code, int) else 2
        finally:
            log.handlers[:], log.level, log.propagate = saved
    out.flush()
    return code, out.buffer.getvalue().decode("utf-8", "replace"), err.getvalue()  # type: ignore[attr-defined]


def _check(path: str) -> None:
    code, out, err = _cli("validate", path)
    assert code in (0, 2), err
    assert "Traceback" not in err
    lines = err.splitlines()
    if code == 0:
        assert out == f"{path}: ok\n" and not lines
    else:
        assert lines and all(ln.startswith(f"{path}: ") for ln in lines), err
    code2, out2, err2 = _cli("run", "--dry-run", "-q", path)
    assert code2 in (0, 2), err2
    assert "Traceback" not in err2
    if code2 == 0:
        assert out2.startswith("job ") and not err2
    else:
        assert err2 and all(ln.startswith("fluxlite: error: ") for ln in err2.splitlines())
    assert code2 == code  # run --dry-run refuses exactly what validate refuses


@pytest.fixture(scope="module")
def scratch() -> Any:
    with tempfile.TemporaryDirectory() as d:
        yield d


@FUZZ
@given(doc=_document())
def test_any_document(scratch: str, doc: Any) -> None:
    COUNTED["document"] = COUNTED.get("document", 0) + 1
    path = os.path.join(scratch, "job.json")
    with open(path, "w") as fh:
        json.dump(doc, fh, allow_nan=True)
    _check(path)


@FUZZ
@given(doc=_document(), token=st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999",
                                              "1" * 400, '"\\u0000"', '"\\ud800"', "", "]"]),
       how=st.integers(0, 4))
def test_any_text(scratch: str, doc: Any, token: str, how: int) -> None:
    COUNTED["text"] = COUNTED.get("text", 0) + 1
    path = os.path.join(scratch, "job.json")
    with open(path, "wb") as fh:
        fh.write(_raw(doc, token, how))
    _check(path)


def _transfer_entry() -> st.SearchStrategy[Any]:
    url = st.one_of(st.sampled_from(URLS), _leaf())
    src = st.fixed_dictionaries({}, optional={"url": url, "priority": _leaf(),
                                              "site_label": _leaf(), "tls_verify": _leaf()})
    transfer = st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["transfer", "mkdir", "remove", "bogus", 3]),
        "lfn": _leaf(), "id": _leaf(), "linkage": _leaf(),
        "src_urls": st.one_of(st.lists(src, max_size=3), _leaf()),
        "dest_urls": st.one_of(st.lists(src, max_size=3), _leaf()),
        "target": st.one_of(st.fixed_dictionaries({}, optional={
            "url": url, "recursive": _leaf(), "site_label": _leaf()}), _leaf())})
    return st.one_of(transfer, _leaf())


@FUZZ
@given(doc=st.one_of(st.lists(_transfer_entry(), max_size=4), _json()))
def test_any_transfer_list(doc: Any) -> None:
    """A transfer list is only parsed here: running one would transfer, make and remove."""
    from fluxlite.staging.transferlist import parse_list

    COUNTED["transfer"] = COUNTED.get("transfer", 0) + 1
    plan = parse_list(doc)
    for problem in plan.problems:
        assert isinstance(problem, str) and "\n" not in problem


# -- records for fluxlite stats and fluxlite report -------------------------------------------
def _some(draw: Any, keys: list[str]) -> list[str]:
    """Which fields to spoil: none half of the time, else one to three."""
    n = min(len(keys), draw(st.sampled_from([0, 0, 0, 0, 1, 1, 2, 3])))
    return draw(st.lists(st.sampled_from(keys), min_size=n, max_size=n, unique=True))


@st.composite
def _spoilt(draw: Any, table: dict[str, Any]) -> dict[str, Any]:
    """A record's mapping as a writer makes it, with a few of its fields (often none)
    replaced by anything or left out: most records are read, and every field is tried."""
    doc = dict(table)
    for key in _some(draw, sorted(table)):
        value = draw(st.one_of(_leaf(), _json(), st.just(KeyError)))
        if value is KeyError:
            del doc[key]
        else:
            doc[key] = value
    return doc


T0 = 1796000000.0
_TASK = {"pid": 4242, "start": "2026-12-01T00:00:00.000+00:00", "duration": 1.5,
         "status": {"signal": None}, "timed_out": None, "executable": "/bin/true",
         "rusage": {"utime": 0.5, "stime": 0.1, "maxrss": 2048}}
_RUN = {"start_epoch": T0, "duration": 2.0, "exit_code": 0, "failed_phase": None,
        "error": None, "host": {"hostname": "node1"},
        "job": {"name": "tx", "id": "ID1", "workflow": {"label": "wf", "stamp": "s"}},
        "phases": [{"name": "task", "start": T0, "duration": 1.5}],
        "stage_in": [{"bytes": 10, "duration": 0.1}], "stage_out": [],
        "integrity": [{"duration": 0.01}], "outputs": [{"checksum_timing": 0.01}]}


def _run_record() -> st.SearchStrategy[Any]:
    return st.builds(lambda top, task: {"fluxlite_record": 1, **top, "task": task},
                     _spoilt(_RUN), st.one_of(_spoilt(_TASK), _spoilt(_TASK), _leaf()))


def _cluster_record() -> st.SearchStrategy[Any]:
    attempt = _spoilt({"start_epoch": T0, "duration": 1.0, "exit_code": 1, "signal": 9,
                       "pid": 77, "try": 2, "host": "n2", "stopped": "time limit",
                       "rusage": {"maxrss": 10}, "error": "boom"})
    attempts = st.lists(st.one_of(attempt, _run_record().map(
        lambda r: {"job_record": r, "try": 1})), max_size=3)
    task = st.builds(lambda t, a: {**t, "attempts": a},
                     _spoilt({"id": "t1", "name": "tx", "cores": 2}),
                     st.one_of(attempts, attempts, _leaf()))
    summary = _spoilt({"start": "2026-12-01T00:00:00", "pid": 9, "not_run": 1})
    return st.builds(lambda top, tasks: {**top, "tasks": tasks},
                     _spoilt({"fluxlite_cluster": 1, "summary": {}}).flatmap(
                         lambda top: summary.map(lambda sm: {**top, "summary": sm})
                         if top.get("summary") == {} else st.just(top)),
                     st.one_of(st.lists(task, max_size=3), _leaf()))


KICKSTART = """- invocation: True
  version: 3.0
  start: {start}
  duration: {duration}
  transformation: {name}
  derivation: "ID1"
  wf-label: {label}
  hostname: {host}
  mainjob:
    start: {start}
    duration: {duration}
    pid: {pid}
    usage:
      utime: 0.1
      stime: 0.1
      maxrss: {maxrss}
    status:
      raw: {raw}
      {status}
    timed_out: {timed_out}
    executable:
      file_name: "/bin/true"
  files:
    out:
      checksum_timing: {duration}
    stdout:
      data: {data}
"""
YAML_VALUES = [".inf", "-.inf", ".nan", "1.0e+308", "1e308", "-1", "0", "18446744073709551616",
               "9999-12-31T23:59:59.000+00:00", "0001-01-01T00:00:00", "2026-12-01T00:00:00Z",
               "[a, b]", "{x: 1}", "abc", '"\\u2028"', "null", "~", "''", "*a", "&a [1]",
               "!!python/object/apply:os.system [true]", "!!binary aGk=", '"<!--<script>"',
               "|\n      x\n", "True", "3.5", "42", "'1e3'"]
STATUS = ["regular_exitcode: {v}", "signalled_signal: {v}", "failure_error: {v}", "{v}"]


@st.composite
def _kickstart_text(draw: Any) -> str:
    value = st.one_of(st.sampled_from(YAML_VALUES), st.sampled_from(TEXTS).map(json.dumps))
    keys = ["start", "duration", "name", "label", "host", "pid", "maxrss", "raw",
            "timed_out", "data"]
    plausible = {"start": "2026-12-01T00:00:00.000+00:00", "duration": "1.500",
                 "name": '"tx"', "label": '"wf"', "host": "node1", "pid": "4242",
                 "maxrss": "2048", "raw": "0", "timed_out": '"term"', "data": '"out"'}
    fields = dict(plausible)
    for key in _some(draw, keys):
        fields[key] = draw(value)
    fields["status"] = draw(st.one_of(st.just("regular_exitcode: 0"), st.sampled_from(
        STATUS).map(lambda f: f.format(v=draw(value)))))
    text = KICKSTART.format(**fields)
    records = draw(st.integers(1, 3))
    text *= records
    how = draw(st.integers(0, 5))
    if how == 1:
        text = text[: draw(st.integers(0, len(text)))]
    elif how == 2:  # an alias bomb in front of the record's fields
        bomb = ['  l0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]'] + [
            f"  l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
        text = text.replace("  version: 3.0\n", "  version: 3.0\n" + "\n".join(bomb) + "\n"
                            + "  transformation: *a8\n", 1)
    elif how == 3:
        text += "---------------pegasus-multipart\n- transfer_attempts:\n" + draw(value)
    elif how == 4:
        text = "[cluster-task id=t1, status=" + draw(value) + "]\n" + text + (
            "[cluster-summary stat=\"ok\", not_run=" + draw(value) + "]\n")
    elif how == 5:
        text = "Job timed out, sending SIGTERM\n" + text
    return text


def _check_stats_and_report(scratch: str, name: str, data: bytes) -> None:
    path = os.path.join(scratch, name)
    with open(path, "wb") as fh:
        fh.write(data)
    code, out, err = _cli("stats", "--json", path)
    assert code in (0, 1), err
    assert "Traceback" not in err
    assert all(ln.startswith("fluxlite: ") for ln in err.splitlines()), err
    if code == 0:
        def refuse(token: str) -> None:
            raise AssertionError(f"{token} in stats --json")

        doc = json.loads(out, parse_constant=refuse)
        assert doc["summary"]["tasks"] >= 0
        COUNTED["stats-read"] = COUNTED.get("stats-read", 0) + 1  # a record was read
    html = os.path.join(scratch, "r.html")
    code2, _, err2 = _cli("report", "-q", path, "-o", html)
    assert code2 == code, err2
    assert "Traceback" not in err2
    if code2 == 0:
        with open(html, encoding="utf-8") as fh:
            page = fh.read()
        start = page.index('id="data">') + len('id="data">')
        body = page[start:page.index("</script>", start)]
        assert not any(c in body for c in "<>&\u2028\u2029")
        json.loads(body)


@FUZZ
@given(doc=st.one_of(_run_record(), _cluster_record(), _json()))
def test_any_json_record_for_stats_and_report(scratch: str, doc: Any) -> None:
    COUNTED["stats-json"] = COUNTED.get("stats-json", 0) + 1
    _check_stats_and_report(scratch, "rec.json",
                            json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass"))


@FUZZ
@given(text=_kickstart_text(), junk=st.binary(max_size=8))
def test_any_kickstart_output_for_stats_and_report(scratch: str, text: str,
                                                    junk: bytes) -> None:
    COUNTED["stats-yaml"] = COUNTED.get("stats-yaml", 0) + 1
    _check_stats_and_report(scratch, "job.out",
                            text.encode("utf-8", "surrogatepass") + junk)


def test_examples_were_run() -> None:
    """The figure for the record: how many documents each property saw."""
    total = sum(COUNTED.values())
    sys.stderr.write(f"fuzz examples: {COUNTED} (total {total})\n")
    assert not COUNTED or total >= len(COUNTED) * min(EXAMPLES, 100)


@pytest.mark.parametrize("text", [
    '{"fluxlite": 1, "executable": "/bin/true", "limits": {"maxwalltime": NaN}}',
    '{"fluxlite": 1, "executable": "/bin/true", "staging": {"attempts": 1' + "0" * 400 + "}}",
    '{"fluxlite": 1, "executable": "/bin/true", "executable": "/bin/false"}',
    '{"fluxlite": 1, "executable": "/bin/true", "arguments": ["\\u0000", "\\ud800"]}',
    '{"fluxlite": 1, "executable": "/bin/true", "name": "\\udc80"}',
    '[' * 100000,
])
def test_through_real_processes(tmp_path: Any, text: str) -> None:
    path = tmp_path / "job.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    for argv in (["validate", str(path)], ["run", "--dry-run", str(path)]):
        p = subprocess.run([sys.executable, "-m", "fluxlite", *argv], capture_output=True,
                           timeout=60, cwd=tmp_path)
        err = p.stderr.decode("utf-8", "replace")
        assert p.returncode in (0, 2), err
        assert "Traceback" not in err
        if p.returncode == 2:
            assert err.strip()
