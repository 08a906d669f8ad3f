"""Every example of README.md and docs/*.md, extracted from the files themselves and run.

Each code block, as CommonMark reads them, carries a marker: an HTML comment on the last
non-blank line before it (invisible once rendered; an indented code block, which has no
language, can only be ``skip`` or ``output``):

    <!-- example: ACTION key=value key="a value with spaces" -->

ACTION is one of

- ``run``: a shell block, run with ``bash -e -o pipefail`` in the document's scratch
  directory (also ``$WORK``), fluxlite's virtualenv first on PATH. ``exit=N`` is the
  documented exit code (default 0); ``creates=A,B`` names files it must have made.
- ``output``: lines the ``run`` block before it printed (each matches one line of its
  stdout or stderr; ``…`` or ``...`` stands for any text; an indented line continues the
  line above).
- ``session``: lines starting with ``$ `` are commands, run as for ``run``; the other lines
  are their output (stdout and stderr together), line by line, where ``…`` stands for any
  text.
- ``file name=NAME``: the block is written to ``$WORK/NAME`` before any block of the
  document runs (a ``json`` block must parse first).
- ``job``: a whole job description, which ``fluxlite validate`` must accept.
- ``fragment``: a JSON fragment (``"key": {…}``) of a job description: it is merged into a
  minimal job, which ``fluxlite validate`` must accept.
- ``synopsis``: a command's synopsis: every ``[-x …]`` option it shows must be in the
  command's ``--help``.
- ``json`` / ``yaml``: the block must parse (a ``yaml`` block may be indented).
- ``skip reason="…"``: not run, for the reason given (a synopsis, a diagram, a command that
  installs from PyPI).

Options of ``run``/``session``: ``setup=NAME`` prepares the files the example names (see
SETUPS: the files of examples/findrange, records to read, ...) in the directory it runs
in; ``cwd=DIR`` runs it in ``$WORK/DIR`` (``cwd=repo``: the repository's root);
``needs=flux`` runs it inside a Flux instance (the flux tier,
tests/flux/test_docs_examples_flux.py) and ``needs=matplotlib`` only where matplotlib
imports. A block without a marker, or with an unknown action or option, fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE = ROOT / "examples" / "findrange"
SAMPLES = ROOT / "tests" / "data" / "kickstart-samples"

ACTIONS = {"run", "output", "session", "file", "job", "fragment", "json", "yaml", "synopsis",
           "skip"}
OPTIONS = {"run": {"exit", "setup", "needs", "cwd", "creates"},
           "output": {"needs"}, "session": {"setup", "needs", "cwd"}, "synopsis": set(),
           "file": {"name"}, "job": set(), "fragment": set(), "json": set(), "yaml": set(),
           "skip": {"reason"}}
NEEDS = {"flux", "matplotlib"}
TIMEOUT = 60

_MARKER = re.compile(r"^\s*<!--\s*example:\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    doc: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    action: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    marker_error: str | None = None

    @property
    def where(self) -> str:
        doc = self.doc.relative_to(ROOT) if self.doc.is_relative_to(ROOT) else self.doc
        return f"{doc}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    """The code blocks of a markdown file, as CommonMark reads them, each with its marker
    parsed. An indented code block is reported as one with an error: it cannot say how it
    runs (fence it)."""
    text = doc.read_text(encoding="utf-8")
    lines = text.split("\n")
    found: list[Block] = []
    for token in MarkdownIt("commonmark").parse(text):
        if token.type not in ("fence", "code_block") or token.map is None:
            continue
        first = token.map[0]
        block = Block(doc, first + 1, token.info.split()[0] if token.info.split() else "",
                      token.content)
        k = first - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = _MARKER.match(lines[k]) if k >= 0 else None
        if marker:
            _parse_marker(block, marker.group(1))
        if token.type == "code_block" and block.action not in (None, "skip", "output"):
            block.marker_error = "an indented code block can only be skipped or an output"
        found.append(block)
    return found


def _parse_marker(block: Block, text: str) -> None:
    try:
        words = shlex.split(text)
    except ValueError as err:
        block.marker_error = f"unreadable marker: {err}"
        return
    if not words or words[0] not in ACTIONS:
        block.marker_error = f"unknown action {words[:1]} (one of {sorted(ACTIONS)})"
        return
    block.action = words[0]
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if not eq or key not in OPTIONS[block.action]:
            block.marker_error = f"{block.action}: unknown option {word!r}"
            return
        block.options[key] = value
    if block.action == "skip" and not block.options.get("reason", "").strip():
        block.marker_error = "skip without a reason"
    if block.action == "file" and not block.options.get("name"):
        block.marker_error = "file without a name"
    if block.options.get("needs", "flux") not in NEEDS:
        block.marker_error = f"unknown need {block.options['needs']!r}"
    if block.options.get("setup") and block.options["setup"] not in SETUPS:
        block.marker_error = f"unknown setup {block.options['setup']!r}"


def all_blocks() -> list[Block]:
    return [b for doc in DOCS for b in blocks(doc)]


# --- what the examples name, made in the scratch directory --------------------------------


def _findrange(work: Path, env: dict[str, str]) -> None:
    """The files of examples/findrange where the job examples look for them."""
    (work / "bin").mkdir(exist_ok=True)
    (work / "data").mkdir(exist_ok=True)
    (work / "results").mkdir(exist_ok=True)
    (work / "persist").mkdir(exist_ok=True)
    shutil.copy(EXAMPLE / "findrange.py", work / "bin" / "findrange.py")
    for name in ("f.b1", "settings.conf"):
        shutil.copy(EXAMPLE / name, work / "data" / name)


def _kickstart(work: Path, env: dict[str, str]) -> None:
    """kickstart.md's task: ./findrange with its input and settings in the directory."""
    shutil.copy(EXAMPLE / "findrange.py", work / "findrange")
    os.chmod(work / "findrange", 0o755)
    for name in ("f.b1", "settings.conf"):
        shutil.copy(EXAMPLE / name, work / name)


def _validate_faults(work: Path, env: dict[str, str]) -> None:
    """job-spec.md's job with the two faults its validate example reports."""
    (work / "job.json").write_text(json.dumps({
        "fluxlite": 1, "executable": "/bin/true",
        "inputs": [{"lfn": "a", "urls": ["https://example.org/a"]},
                   {"lfn": "b", "urls": ["ftp://example.org/b"]}],
        "outputs": [{"lfn": "../x", "urls": ["x"]}]}))


def _container_faults(work: Path, env: dict[str, str]) -> None:
    """containers.md's job with the two faults its validate example reports."""
    (work / "job.json").write_text(json.dumps({
        "fluxlite": 1, "executable": "/bin/true",
        "container": {"type": "podman", "image": "docker://busybox",
                      "mounts": ["/data/../etc:/etc2"], "options": ["--privileged"]}}))


def _records(work: Path, env: dict[str, str]) -> None:
    """stats.md's records: kickstart's own under run/ and logs/, a job's two records."""
    shutil.copytree(SAMPLES, work / "run")
    (work / "logs" / "day1").mkdir(parents=True)
    shutil.copy(SAMPLES / "ok.yml", work / "logs" / "day1" / "ok.out")
    _findrange(work, env)
    job = json.loads((EXAMPLE / "job.json.in").read_text()
                     .replace("@SHA_SCRIPT@", _sha(EXAMPLE / "findrange.py"))
                     .replace("@SHA_INPUT@", _sha(EXAMPLE / "f.b1"))
                     .replace("@EXAMPLE@", str(EXAMPLE)).replace("@OUT@", str(work)))
    job["records"] = {"kickstart": "job.out", "json": "job.record.json"}
    (work / "record-job.json").write_text(json.dumps(job))
    subprocess.run([_fluxlite(), "run", "-q", "--no-flux", "record-job.json"], cwd=work,
                   check=True, env=env, timeout=TIMEOUT, capture_output=True)
    os.replace(work / "job.record.json", work / "job.json")


def _transfer(work: Path, env: dict[str, str]) -> None:
    (work / "data").mkdir(exist_ok=True)
    (work / "data" / "f.a").write_text("the file f.a\n")


def _cluster(work: Path, env: dict[str, str]) -> None:
    """cluster.md's inputs beside its tasks.dag: a pegasus-cluster list, a JSON job list."""
    (work / "merge_ID1.in").write_text("/bin/echo one\n/bin/echo two\n/bin/true\n")
    (work / "jobs.json").write_text(json.dumps([
        {"fluxlite": 1, "id": "a", "executable": "/bin/echo", "arguments": ["a"]},
        {"fluxlite": 1, "id": "b", "executable": "/bin/echo", "arguments": ["b"]}]))


def _dag(work: Path, env: dict[str, str]) -> None:
    """flux.md's jobs: prepare, simulate, report (and job.json), each a short task; and a
    job submitted already, for `flux job last`."""
    for name in ("prepare", "simulate", "report", "job"):
        (work / f"{name}.json").write_text(json.dumps({
            "fluxlite": 1, "name": name, "executable": "/bin/true",
            "resources": {"time_limit": 120}}))
    subprocess.run(["flux", "submit", "--wait", "/bin/true"], env=env, check=True,
                   capture_output=True, timeout=TIMEOUT)


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


SETUPS = {"findrange": _findrange, "kickstart": _kickstart, "records": _records,
          "validate-faults": _validate_faults,
          "container-faults": _container_faults, "transfer": _transfer, "cluster": _cluster,
          "dag": _dag}


# --- running ---------------------------------------------------------------------------


def _fluxlite() -> str:
    return str(Path(sys.executable).parent / "fluxlite")


def _env(work: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(base if base is not None
               else {k: v for k, v in os.environ.items() if not k.startswith("FLUX_")})
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent),
                                   env.get("PATH", os.defpath)])
    env["WORK"] = str(work)
    env["TMPDIR"] = str(work / ".tmp")
    (work / ".tmp").mkdir(exist_ok=True)
    return env


def _shell(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)


def _matches(expected: str, actual: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split("…"))
    return re.fullmatch(pattern, actual) is not None


def check_block(block: Block, work: Path, base_env: dict[str, str] | None = None,
                previous: str = "") -> str:
    """Run one block and check its outcome; what a ``run`` block printed (stdout and
    stderr), for the ``output`` blocks after it (``previous``)."""
    env = _env(work, base_env)
    where = block.options.get("cwd")
    cwd = ROOT if where == "repo" else work / where if where else work
    cwd.mkdir(exist_ok=True)
    if block.options.get("setup"):
        SETUPS[block.options["setup"]](work if where == "repo" else cwd, env)
    if block.action == "run":
        p = _shell(block.text, cwd, env)
        want = int(block.options.get("exit", "0"))
        assert p.returncode == want, (f"{block.where}: exit {p.returncode}, documented {want}"
                                      f"\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
        missing = [f for f in block.options.get("creates", "").split(",")
                   if f and not (cwd / f).exists()]
        assert not missing, f"{block.where}: did not create {missing}\n{p.stderr}"
        return p.stdout + p.stderr
    if block.action == "output":
        printed = [ln.rstrip() for ln in previous.splitlines()]
        for line in re.sub(r"\n[ \t]+", " ", block.text).splitlines():
            assert any(_matches(line.replace("...", "…"), got) for got in printed), (
                f"{block.where}: the run before printed no line like\n{line}\n"
                f"it printed:\n{previous}")
    elif block.action == "synopsis":
        words = block.text.split()
        command = words[words.index("fluxlite") + 1]
        p = subprocess.run([_fluxlite(), command, "--help"], env=env, capture_output=True,
                           text=True, timeout=TIMEOUT)
        known = set(re.findall(r"(?<![\w-])(--?[\w][\w-]*)", p.stdout))
        shown = set(re.findall(r"\[(--?[\w][\w-]*)", block.text))
        assert shown and shown <= known, (
            f"{block.where}: fluxlite {command} has no {sorted(shown - known)}")
    elif block.action == "session":
        commands = [ln[2:] for ln in block.text.splitlines() if ln.startswith("$ ")]
        expected = [ln.rstrip() for ln in block.text.splitlines()
                    if ln.strip() and not ln.startswith("$ ")]
        p = subprocess.run(["bash", "-o", "pipefail", "-c", "\n".join(commands) + "\n"],
                           cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
        got = [ln.rstrip() for ln in p.stdout.splitlines() if ln.strip()]
        assert len(got) == len(expected) and all(
            _matches(e, g) for e, g in zip(expected, got, strict=True)), (
            f"{block.where}: output differs from the documented one:\n{p.stdout}")
    elif block.action in ("job", "fragment"):
        job = (json.loads(block.text) if block.action == "job" else
               {"fluxlite": 1, "executable": "/bin/true", **json.loads("{" + block.text + "}")})
        (cwd / "example-job.json").write_text(json.dumps(job))
        p = subprocess.run([_fluxlite(), "validate", "example-job.json"], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=TIMEOUT)
        assert p.returncode == 0, f"{block.where}: fluxlite validate says\n{p.stderr}"
    elif block.action == "json":
        json.loads(block.text)
    elif block.action == "yaml":
        assert yaml.safe_load(textwrap.dedent(block.text)), f"{block.where}: empty"
    return ""


def write_files(doc: Path, work: Path) -> None:
    for block in blocks(doc):
        if block.action == "file":
            if block.lang == "json":
                json.loads(block.text)
            (work / block.options["name"]).write_text(block.text)


def run_blocks(doc: Path, need: str | None, work: Path,
               env: dict[str, str] | None = None) -> None:
    """Every block of a document that needs ``need``, in order, after its files."""
    write_files(doc, work)
    printed = ""
    for block in runnable(doc, need):
        printed = check_block(block, work, env, printed) or printed


def runnable(doc: Path, need: str | None) -> list[Block]:
    return [b for b in blocks(doc) if b.action in ("run", "output", "session", "job", "fragment",
                                                   "json", "yaml", "synopsis")
            and b.options.get("needs") == need]


# --- the tests -------------------------------------------------------------------------


def test_every_block_is_marked() -> None:
    problems = [f"{b.where}: {b.marker_error or 'no example marker'}"
                for b in all_blocks() if b.marker_error or b.action is None]
    assert not problems, ("every code block needs a marker (see this test's docstring):\n"
                          + "\n".join(problems))


def test_examples_name_no_system_paths() -> None:
    """What runs writes under the scratch directory: no file: URL or path of the root."""
    bad = [b.where for b in all_blocks() if b.action in ("run", "file", "session", "job")
           and re.search(r"file:///|\s/(data|results|persist|scratch|x)/", b.text)]
    assert not bad, f"examples that write outside the scratch directory: {bad}"


def test_no_elided_digests() -> None:
    bad = [b.where for b in all_blocks() if b.action != "skip"
           and re.search(r"\"(sha256|checksum)[^\"]*\":\s*\"[0-9a-f]*…", b.text)]
    assert not bad, f"examples with elided digests: {bad}"


def test_marker_convention(tmp_path: Path) -> None:
    """An unmarked block, a skip without a reason, an unknown action are each caught; a
    block's documented exit code is checked."""
    doc = tmp_path / "doc.md"
    doc.write_text("text\n\n```sh\necho hi\n```\n\n<!-- example: skip -->\n```\na\n```\n"
                   "<!-- example: frobnicate -->\n```\nb\n```\n\n"
                   '<!-- example: run exit=3 -->\n  ```sh\n  exit 2\n  ```\n\n'
                   "<!-- example: skip reason=x -->\n\n    indented\n")
    unmarked, no_reason, unknown, run, indented = blocks(doc)
    assert indented.action == "skip" and indented.marker_error is None
    assert unmarked.action is None and unmarked.marker_error is None
    assert no_reason.marker_error == "skip without a reason"
    assert unknown.marker_error and "unknown action" in unknown.marker_error
    assert run.options == {"exit": "3"} and run.text == "exit 2\n"
    with pytest.raises(AssertionError, match="exit 2, documented 3"):
        check_block(run, tmp_path)
    shown = tmp_path / "output.md"
    shown.write_text("<!-- example: run -->\n```sh\necho hello, world\n```\n"
                     "<!-- example: output -->\n```\nhello, …\n```\n"
                     "<!-- example: output -->\n```\ngoodbye\n```\n")
    echo, good, bad = blocks(shown)
    printed = check_block(echo, tmp_path)
    check_block(good, tmp_path, previous=printed)
    with pytest.raises(AssertionError, match="printed no line like"):
        check_block(bad, tmp_path, previous=printed)


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_examples_run(doc: Path, tmp_path: Path) -> None:
    run_blocks(doc, None, tmp_path)


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_examples_needing_matplotlib(doc: Path, tmp_path: Path) -> None:
    todo = runnable(doc, "matplotlib")
    if not todo:
        return
    pytest.importorskip("matplotlib", reason="fluxlite-runtime[plot] is not installed")
    run_blocks(doc, "matplotlib", tmp_path)


@pytest.mark.parametrize("script", ["examples/run-example.sh", "scripts/test.sh"])
def test_fresh_machine_scripts_parse(script: str) -> None:
    """README's two commands for a fresh machine: at least their shell must be sound."""
    p = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_run_example_script(tmp_path: Path) -> None:
    """README's first command, examples/run-example.sh, on this installation: a virtualenv
    whose pip does nothing (making one is pip's business, and reaches PyPI)."""
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text('#!/bin/sh\n[ "$1 $2" = "-m pip" ] && exit 0\n'
                                 f'exec {shlex.quote(sys.executable)} "$@"\n')
    (venv / "python").chmod(0o755)
    (venv / "fluxlite").symlink_to(_fluxlite())
    out = tmp_path / "out"
    env = {**_env(tmp_path), "FLUXLITE_VENV": str(venv.parent)}
    p = subprocess.run(["bash", str(ROOT / "examples" / "run-example.sh"), str(out)], env=env,
                       capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "exit code: 0" in p.stdout
    assert (out / "results" / "f.c1").read_text() == "2.0 18.0\n"
    assert (out / "job.out").stat().st_size and (out / "job.record.json").stat().st_size
