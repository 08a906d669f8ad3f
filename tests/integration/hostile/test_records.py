"""Hostile records and task output: what a task prints, plants in its record or leaves for
``fluxlite stats`` and ``fluxlite report`` to read.

- a task's output with characters that YAML readers take for line breaks or skip still
  makes a record Pegasus's parser reads back exactly;
- a YAML alias bomb in a record or in ``$KICKSTART_INTEGRITY_DATA`` is refused at once,
  under a memory limit that the old behaviour would have blown (and the record is kept);
- a record with absurd or mistyped fields is skipped with one line;
- loops of directory links, huge files, unreadable directories: each ends, in bounded
  memory, with one line;
- any string in the report page cannot break out of its script element.

Every command runs as a real subprocess; the memory cases under ``prlimit``-style limits
set in the child, so a regression fails the test instead of taking the machine down.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Fluxlite, require_oracle

MEMORY_LIMIT = 1 << 30  # 1 GiB of address space: far above fluxlite's need, far below a bomb


def _limited(limit: int = MEMORY_LIMIT) -> Any:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return preexec


def _run(fl: Fluxlite, *args: str, env: dict[str, str] | None = None,
         timeout: float = 60, limit: int = MEMORY_LIMIT) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "fluxlite", *args], env=fl.env(env),
                          cwd=fl.tmp, capture_output=True, timeout=timeout,
                          preexec_fn=_limited(limit))


def _one_clean_error(p: subprocess.CompletedProcess[bytes]) -> str:
    err = p.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err and "MemoryError" not in err, err
    return err


# -- line breaks of other readers in a task's output -----------------------------------------
BREAKERS = "NEL\x85 LS\u2028 PS\u2029 BOM\ufeff CR\r end"


def test_line_breaks_in_task_output_keep_the_record_readable(fl: Fluxlite,
                                                             tmp_path: Path) -> None:
    """U+2028, U+2029, NEL, BOM and CR in stdout and stderr: Pegasus's parser reads the
    record, its exit code and the output exactly."""
    script = tmp_path / "task.py"
    script.write_text("import sys\n"
                      f"sys.stdout.write({BREAKERS!r} + '\\n')\n"
                      f"sys.stderr.write('\\u2028' + {BREAKERS!r})\n"
                      "sys.exit(3)\n")
    out = tmp_path / "ks.out"
    p = subprocess.run([sys.executable, "-m", "fluxlite", "kickstart", "-n", "breaker",
                        sys.executable, str(script)], env=fl.env(), cwd=tmp_path,
                       stdout=out.open("wb"), stderr=subprocess.PIPE, timeout=60)
    assert p.returncode == 3, p.stderr
    import yaml

    text = out.read_text("utf-8")
    for loader in (yaml.SafeLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        inv = yaml.load(text, Loader=loader)[0]  # noqa: S506 - safe loaders
        assert inv["mainjob"]["status"]["regular_exitcode"] == 3
        assert inv["files"]["stdout"]["data"] == BREAKERS + "\n"
        assert inv["files"]["stderr"]["data"] == "\u2028" + BREAKERS
    require_oracle()
    from tests.conftest import parse_records

    from Pegasus.tools import kickstart_parser as kp

    recs = parse_records(out)
    assert recs and recs[0]["exitcode"] == 3, recs
    got = kp.Parser(str(out)).parse_stdout_stderr()
    assert got[0]["stdout"] == BREAKERS + "\n" and got[0]["stderr"] == "\u2028" + BREAKERS


# -- YAML alias bombs --------------------------------------------------------------------------
def _bomb(indent: str, levels: int = 9) -> list[str]:
    """Nine levels of nine aliases: 640 bytes that a reader expanding them makes 9**9 items."""
    lines = [f'{indent}l0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"{indent}l{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]"
              for i in range(1, levels)]
    return lines


def _bomb_record(tmp_path: Path) -> Path:
    lines = ["- invocation: True", "  version: 3.0",
             "  start: 2024-01-01T00:00:00.000+00:00", "  duration: 1.000",
             *_bomb("  "), "  transformation: *a8", "  hostname: *a8", "  mainjob:",
             "    start: 2024-01-01T00:00:00.000+00:00", "    duration: 1.000", "    pid: 42",
             "    status:", "      raw: 0", "      regular_exitcode: 0"]
    good = ["- invocation: True", "  version: 3.0",
            "  start: 2024-01-01T00:00:10.000+00:00", "  duration: 2.000",
            '  transformation: "good"', "  hostname: nodeA", "  mainjob:",
            "    start: 2024-01-01T00:00:10.000+00:00", "    duration: 2.000", "    pid: 43",
            "    status:", "      raw: 0", "      regular_exitcode: 0"]
    p = tmp_path / "bomb.out"
    p.write_text("\n".join(lines + good) + "\n")
    return p


@pytest.mark.parametrize("command", ["stats", "report"])
def test_an_alias_bomb_in_a_record_is_refused_in_bounded_memory(fl: Fluxlite, tmp_path: Path,
                                                                command: str) -> None:
    path = _bomb_record(tmp_path)
    extra = ["-o", str(tmp_path / "r.html")] if command == "report" else ["--json"]
    p = _run(fl, command, str(path), *extra)
    err = _one_clean_error(p)
    assert p.returncode == 0, err
    lines = [ln for ln in err.splitlines() if "skipped" in ln]
    assert len(lines) == 1 and "aliases are not allowed" in lines[0] and str(path) in lines[0]
    if command == "stats":
        doc = json.loads(p.stdout)
        assert doc["summary"]["tasks"] == 1 and "good" in doc["transformations"]


def _kickstart_keeps_its_record(fl: Fluxlite, tmp_path: Path, task_body: str,
                                why: str) -> dict[str, Any]:
    """Run a task that spoils $KICKSTART_INTEGRITY_DATA under the memory limit: exit 0, one
    line saying why its entries are left out, the record written, no ks.* file left."""
    task = tmp_path / "task.py"
    task.write_text("import os\npath = os.environ['KICKSTART_INTEGRITY_DATA']\n" + task_body)
    p = _run(fl, "kickstart", sys.executable, str(task))
    err = _one_clean_error(p)
    assert p.returncode == 0, err
    import yaml

    inv = yaml.safe_load(p.stdout.decode())[0]
    assert inv["mainjob"]["status"]["regular_exitcode"] == 0
    assert [ln for ln in err.splitlines() if "KICKSTART_INTEGRITY_DATA" in ln and why in ln]
    assert [n for n in os.listdir(fl.wdbase) if n.startswith("ks.")] == []
    return inv


def test_an_alias_bomb_in_kickstart_integrity_data_keeps_the_record(fl: Fluxlite,
                                                                    tmp_path: Path) -> None:
    """A task appends a bomb to $KICKSTART_INTEGRITY_DATA: its entries are left out."""
    inv = _kickstart_keeps_its_record(
        fl, tmp_path, f"lines = {_bomb('    ')!r}\n"
        "with open(path, 'a') as fh:\n    fh.write('\\n'.join(lines) + '\\n')\n",
        "aliases are not allowed")
    assert "l8" not in (inv.get("files") or {})


def test_a_huge_kickstart_integrity_data_keeps_the_record(fl: Fluxlite, tmp_path: Path) -> None:
    """A task makes $KICKSTART_INTEGRITY_DATA a 2 GiB (sparse) file, twice the memory limit:
    it is not read."""
    _kickstart_keeps_its_record(
        fl, tmp_path, "with open(path, 'r+b') as fh:\n    fh.truncate(2 << 30)\n",
        "larger than")


# -- absurd and mistyped fields --------------------------------------------------------------
@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The JSON and kickstart records of one real run, to be spoilt one field at a time."""
    tmp = tmp_path_factory.mktemp("real")
    fl = Fluxlite(tmp)
    job = fl.write_job({"name": "good", "id": "ID1", "executable": "/bin/true",
                        "records": {"kickstart": "good.out", "json": "good.json"}})
    p = fl.run("run", str(job))
    assert p.returncode == 0, p.stderr
    return {"json": json.loads((tmp / "good.json").read_text()),
            "yaml": (tmp / "good.out").read_text()}


def _set(doc: Any, path: str, value: Any) -> Any:
    *parents, last = path.split(".")
    for k in parents:
        doc = doc[k]
    doc[last] = value
    return doc


JSON_SPOILS = [("start_epoch", 1e300), ("duration", "nan"), ("duration", 1e308),
               ("host", ["a", "b"]), ("host.hostname", ["a"]), ("task.pid", "abc"),
               ("task.rusage.maxrss", 2**70), ("task.duration", -5), ("exit_code", "1"),
               ("job.name", {"x": 1}), ("job.workflow", {"label": ["l"], "stamp": "s"})]
YAML_SPOILS = [("  duration: ", "  duration: .inf\n"),
               ("  start: ", "  start: 9999-12-31T23:59:59.000+00:00\n"),
               ("    pid: ", "    pid: abc\n"), ("    duration: ", "    duration: 1.0e+308\n"),
               ("      maxrss: ", f"      maxrss: {2**70}\n"),
               ("    duration: ", "    duration: .nan\n")]


def _spoil_yaml(text: str, prefix: str, line: str) -> str:
    lines = text.splitlines(keepends=True)
    i = next(i for i, ln in enumerate(lines) if ln.startswith(prefix))
    lines[i] = line
    return "".join(lines)


def _check_skipped_one(fl: Fluxlite, tmp_path: Path, bad: Path, good: Path) -> None:
    for command, extra in (("stats", ["--json"]), ("report", ["-o", str(tmp_path / "r.html")])):
        p = _run(fl, command, str(good), str(bad), *extra)
        err = _one_clean_error(p)
        assert p.returncode == 0, err
        skipped = [ln for ln in err.splitlines() if "skipped" in ln]
        assert len(skipped) == 1 and str(bad) in skipped[0], err
        if command == "stats":
            assert json.loads(p.stdout)["summary"]["tasks"] == 1


@pytest.mark.parametrize(("path", "value"), JSON_SPOILS,
                         ids=[f"{p}={v!r}"[:40] for p, v in JSON_SPOILS])
def test_a_json_record_with_an_absurd_field_is_skipped(fl: Fluxlite, tmp_path: Path,
                                                       real: dict[str, Any], path: str,
                                                       value: Any) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(real["json"]))
    doc = json.loads(json.dumps(real["json"]))
    doc["task"]["pid"] += 1  # another attempt, not a second record of the good one
    _set(doc, path, value)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    _check_skipped_one(fl, tmp_path, bad, good)


@pytest.mark.parametrize(("prefix", "line"), YAML_SPOILS, ids=[ln.strip() for _, ln in
                                                               YAML_SPOILS])
def test_a_kickstart_record_with_an_absurd_field_is_skipped(fl: Fluxlite, tmp_path: Path,
                                                            real: dict[str, Any], prefix: str,
                                                            line: str) -> None:
    good = tmp_path / "good.out"
    good.write_text(real["yaml"])
    text = _spoil_yaml(real["yaml"], "    pid: ", "    pid: 1\n")  # another attempt
    bad = tmp_path / "bad.out"
    bad.write_text(_spoil_yaml(text, prefix, line))
    _check_skipped_one(fl, tmp_path, bad, good)


def test_a_cluster_record_whose_summary_is_a_list_is_skipped(fl: Fluxlite, tmp_path: Path,
                                                             real: dict[str, Any]) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(real["json"]))
    bad = tmp_path / "cluster.json"
    bad.write_text(json.dumps({"fluxlite_cluster": 1, "summary": [1, 2], "tasks": []}))
    _check_skipped_one(fl, tmp_path, bad, good)
    bad.write_text(json.dumps({"fluxlite_cluster": 1, "summary": {"not_run": "abc"},
                               "tasks": []}))
    _check_skipped_one(fl, tmp_path, bad, good)
    # a cluster output whose summary line is spoilt: the line is left out, its record kept
    out = tmp_path / "cluster.out"
    out.write_text(real["yaml"] + '[cluster-summary stat="ok", tasks=1, not_run=abc]\n')
    p = _run(fl, "stats", "--json", str(out))
    err = _one_clean_error(p)
    assert p.returncode == 0 and json.loads(p.stdout)["summary"]["tasks"] == 1, err
    assert err.splitlines() == [f"fluxlite: skipped {out}: cluster summary line left out "
                                "(not_run is not a count: 'abc')"]


# -- what a tree of files can hold -------------------------------------------------------------
def test_a_recursive_glob_through_links_to_dot_ends(fl: Fluxlite, tmp_path: Path,
                                                    real: dict[str, Any]) -> None:
    """Links to ``.`` and ``..`` in the tree: ``**`` does not follow them (glob's own would
    visit 2^40 paths); the record is counted once."""
    top = tmp_path / "logs"
    (top / "a" / "b").mkdir(parents=True)
    (top / "a" / "b" / "rec.json").write_text(json.dumps(real["json"]))
    for where, name in [(top, "loop"), (top / "a", "again"), (top / "a" / "b", "self")]:
        (where / name).symlink_to(".")
    (top / "a" / "up").symlink_to("..")
    for arg in (f"{top}/**/*.json", str(top), f"{top}/**"):
        p = _run(fl, "stats", "--json", arg, timeout=30)
        err = _one_clean_error(p)
        assert p.returncode == 0, err
        assert json.loads(p.stdout)["summary"]["tasks"] == 1
        assert "skipped" not in err


@pytest.mark.parametrize("head", [b"{", b"- invocation: True\n"])
def test_a_huge_file_is_skipped_unread(fl: Fluxlite, tmp_path: Path, real: dict[str, Any],
                                       head: bytes) -> None:
    """A 2 GiB sparse file that looks like a record: skipped with one line, under a memory
    limit half its size (reading it whole took 4.2 GB)."""
    good = tmp_path / "good.json"
    good.write_text(json.dumps(real["json"]))
    huge = tmp_path / "huge.rec"
    with huge.open("wb") as fh:
        fh.write(head)
        fh.truncate(2 << 30)  # sparse: no disk space used
    p = _run(fl, "stats", "--json", str(good), str(huge), timeout=60)
    err = _one_clean_error(p)
    assert p.returncode == 0, err
    assert err.splitlines() == [f"fluxlite: skipped {huge}: larger than 512 MiB, the most "
                                "read of one file"]
    assert json.loads(p.stdout)["summary"]["tasks"] == 1


def _unprivileged() -> list[str]:
    """A command prefix under which file modes apply: as root, without the capabilities
    that override them (root's own 000 directory is then closed to it)."""
    import shutil

    if os.getuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to drop root's CAP_DAC_OVERRIDE")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def test_an_unreadable_directory_is_named(fl: Fluxlite, tmp_path: Path,
                                          real: dict[str, Any]) -> None:
    top = tmp_path / "logs"
    closed = top / "closed"
    closed.mkdir(parents=True)
    (top / "rec.json").write_text(json.dumps(real["json"]))
    (closed / "hidden.json").write_text(json.dumps(real["json"]))
    closed.chmod(0)
    try:
        for arg in (str(top), f"{top}/**/*.json"):
            p = subprocess.run([*_unprivileged(), sys.executable, "-m", "fluxlite", "stats",
                                "--json", arg], env=fl.env(), cwd=tmp_path,
                               capture_output=True, timeout=60)
            err = _one_clean_error(p)
            assert p.returncode == 0, err
            assert err.splitlines() == [f"fluxlite: skipped {closed}: cannot read the "
                                        "directory: Permission denied"], err
    finally:
        closed.chmod(0o755)


def test_a_skipped_records_line_number_is_the_files(fl: Fluxlite, tmp_path: Path,
                                                    real: dict[str, Any]) -> None:
    """The line a skip message names is the line of the file, whatever lines the reader
    leaves out before parsing."""
    good = real["yaml"]
    bad = _spoil_yaml(_spoil_yaml(good, "    pid: ", "    pid: 1\n"), "  duration: ",
                      "  duration: [unclosed\n")
    path = tmp_path / "two.out"
    path.write_text(good + bad)
    line = good.count("\n") + 1
    p = _run(fl, "stats", "--json", str(path))
    err = _one_clean_error(p)
    assert p.returncode == 0, err
    assert f"(line {line}: " in err, (line, err)


# -- strings in the report page ----------------------------------------------------------------
HTML_HOSTILE = ["<!--<script>", "</script><script>alert(1)</script>", "a&amp;b<b>",
                "\u2028\u2029", "]]>-->", "<\u2028/script>"]


def test_no_string_breaks_out_of_the_reports_script(fl: Fluxlite, tmp_path: Path,
                                                     real: dict[str, Any]) -> None:
    """Names, reasons, hosts and paths holding ``<!--<script>`` and the like: the data
    element holds no ``<``, ``>`` or ``&`` and reads back as the same strings."""
    paths = []
    for i, s in enumerate(HTML_HOSTILE):
        doc = json.loads(json.dumps(real["json"]))
        doc["task"]["pid"] += i + 1
        doc["job"]["name"] = f"name{s}"
        doc["host"]["hostname"] = f"host{s}"
        doc["exit_code"], doc["error"] = 1, f"reason{s}"
        d = tmp_path / f"rec{s}".replace("/", "_")
        d.mkdir()
        paths.append(d / "r.json")
        paths[-1].write_text(json.dumps(doc))
    out = tmp_path / "r.html"
    p = _run(fl, "report", "-o", str(out), "--title", "title<!--<script>", *map(str, paths))
    _one_clean_error(p)
    assert p.returncode == 0, p.stderr
    html = out.read_text("utf-8")
    start = html.index('<script type="application/json" id="data">') + len(
        '<script type="application/json" id="data">')
    body = html[start:html.index("</script>", start)]
    for ch in "<>&\u2028\u2029":
        assert ch not in body, ch
    data = json.loads(body)
    assert sorted(data["txNames"]) == sorted(f"name{s}" for s in HTML_HOSTILE)
    assert {f["reason"] for f in data["failures"]} == {f"reason{s}" for s in HTML_HOSTILE}
    assert data["title"] == "title<!--<script>"
    # the rest of the page: the title is text, and there are exactly the page's scripts
    assert html.count("<script") == 2 and "title&lt;!--&lt;script&gt;" in html
