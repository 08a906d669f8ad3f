"""Any job.json document and any transfer list: exit 0 or 2 with one line per problem, never
a traceback, never a hang.

Documents come from three sources: arbitrary JSON, documents shaped by job.json's own field
table with hostile values in every field (NaN, 1e300, 400-digit integers, NUL characters,
lone surrogates, escaping names, odd URLs), and raw text (duplicate keys, NaN tokens, bad
UTF-8, truncation). The command line runs in-process for speed; a few go through real
subprocesses at the end.
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


def test_examples_were_run() -> None:
    """The figure for the record: how many documents each property saw."""
    total = sum(COUNTED.values())
    sys.stderr.write(f"fuzz examples: {COUNTED} (total {total})\n")
    assert not COUNTED or total >= 3 * 100


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
