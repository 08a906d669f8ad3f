"""Standard output that cannot be written, for every command: a reader that went away, a
device that is full (``/dev/full``), a file on a full filesystem (a small tmpfs in a private
mount namespace). A closed pipe ends a command quietly with 141 (128+SIGPIPE, as a shell
reports any program its pipe's reader left); any other failed write is one line and 71;
never a traceback or Python's "Exception ignored" at exit. The same for the attempts
``fluxlite transfer`` writes into a full multipart directory: 71 and no part left behind.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Fluxlite
from tests.integration.hostile.test_cluster import FLUXLITE, in_tmpfs

PIPE_CLOSED = 141


@pytest.fixture
def inputs(fl: Fluxlite) -> dict[str, str]:
    """A valid job, a record of it and a cluster input, for commands that print."""
    job = fl.write_job({"executable": "/bin/echo", "arguments": ["hi"]})
    recs = fl.tmp / "recs"
    recs.mkdir()
    p = fl.run("run", str(job), "--json", str(recs / "r.json"), "--kickstart-record",
               str(recs / "r.yml"))
    assert p.returncode == 0, p.stderr.decode()
    (fl.tmp / "c.dag").write_text("TASK a /bin/true\n")
    return {"job": str(job), "recs": str(recs), "dag": str(fl.tmp / "c.dag")}


# commands that print on stdout and nothing else: (name for the test id, argv)
PRINTING = [
    ("help", ["--help"]), ("version", ["--version"]), ("validate", ["validate", "{job}"]),
    ("dry-run", ["run", "--dry-run", "{job}"]), ("batch-script", ["batch-script", "{job}"]),
    ("stats", ["stats", "{recs}"]), ("stats-json", ["stats", "--json", "{recs}"]),
    ("cluster-help", ["cluster", "--help"]), ("cluster-dry-run",
                                              ["cluster", "--dry-run", "{dag}"]),
    ("integrity", ["integrity", "--generate", "{job}"]), ("kickstart-version",
                                                         ["kickstart", "-V"]),
]
# commands whose stdout is the job's record: its loss fails the job, which says so
RECORDS = [("run", ["run", "{job}"]), ("kickstart", ["kickstart", "/bin/echo", "hi"])]


def _argv(args: list[str], inputs: dict[str, str]) -> list[str]:
    return [a.format(**inputs) for a in args]


def _into(fl: Fluxlite, argv: list[str], stdout: int) -> tuple[int, str]:
    p = subprocess.run([sys.executable, "-m", "fluxlite", *argv], stdout=stdout,
                       stderr=subprocess.PIPE, env=fl.env(), cwd=fl.tmp, timeout=120)
    return p.returncode, p.stderr.decode()


def _closed_pipe(fl: Fluxlite, argv: list[str]) -> tuple[int, str]:
    """Run with stdout a pipe whose only reader is closed before the command starts."""
    r, w = os.pipe()
    os.close(r)
    try:
        return _into(fl, argv, w)
    finally:
        os.close(w)


def _no_python_noise(err: str) -> None:
    assert "Traceback" not in err and "Exception ignored" not in err, err


@pytest.mark.parametrize(("name", "args"), PRINTING, ids=[n for n, _ in PRINTING])
def test_a_closed_pipe_is_141_and_silent(fl: Fluxlite, inputs: dict[str, str], name: str,
                                         args: list[str]) -> None:
    rc, err = _closed_pipe(fl, _argv(args, inputs))
    _no_python_noise(err)
    assert rc == PIPE_CLOSED and err == "", (rc, err)


@pytest.mark.parametrize(("name", "args"), RECORDS, ids=[n for n, _ in RECORDS])
def test_a_record_into_a_closed_pipe_fails_the_job(fl: Fluxlite, inputs: dict[str, str],
                                                   name: str, args: list[str]) -> None:
    rc, err = _closed_pipe(fl, _argv(args, inputs))
    _no_python_noise(err)
    assert rc == 71, err
    assert [ln for ln in err.splitlines() if "cannot write the kickstart record" in ln]


def test_a_reader_that_leaves_after_one_line(fl: Fluxlite, inputs: dict[str, str]) -> None:
    """`fluxlite validate ... | head -1`: the reader goes once the pipe is full."""
    many = [inputs["job"]] * 20000  # about 1 MB of "job.json: ok" lines, past any pipe
    proc = subprocess.Popen([sys.executable, "-m", "fluxlite", "validate", *many],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=fl.env(),
                            cwd=fl.tmp)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=120)
    assert first.decode().endswith(": ok\n")
    _no_python_noise(err)
    assert rc == PIPE_CLOSED and err == "", (rc, err)


def test_help_into_head_in_a_shell(fl: Fluxlite) -> None:
    """The case as typed; head may or may not leave before the help is written."""
    p = subprocess.run(["bash", "-o", "pipefail", "-c", f"{FLUXLITE} --help | head -3"],
                       capture_output=True, env=fl.env(), cwd=fl.tmp, timeout=60)
    _no_python_noise(p.stderr.decode())
    assert p.returncode in (0, PIPE_CLOSED) and len(p.stdout.splitlines()) == 3


def _one_error(err: str, *words: str) -> None:
    _no_python_noise(err)
    lines = [ln for ln in err.splitlines() if "error" in ln or "cannot" in ln]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], err


@pytest.mark.parametrize(("name", "args"), PRINTING, ids=[n for n, _ in PRINTING])
def test_dev_full_is_one_line_and_71(fl: Fluxlite, inputs: dict[str, str], name: str,
                                     args: list[str]) -> None:
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        rc, err = _into(fl, _argv(args, inputs), fd)
    finally:
        os.close(fd)
    assert rc == 71, err
    _one_error(err, "fluxlite: error: cannot write to standard output", "No space left")
    assert len(err.splitlines()) == 1, err


@pytest.mark.parametrize(("name", "args"), [*PRINTING, *RECORDS],
                         ids=[n for n, _ in [*PRINTING, *RECORDS]])
def test_stdout_on_a_full_filesystem(fl: Fluxlite, inputs: dict[str, str], name: str,
                                     args: list[str]) -> None:
    mnt = fl.tmp / "mnt"
    command = " ".join(shlex.quote(a) for a in _argv(args, inputs))
    p = in_tmpfs(fl, mnt, f"head -c 1M /dev/zero > {mnt}/fill 2>/dev/null; "
                          f"{FLUXLITE} {command} > {mnt}/out; echo $? > {fl.tmp}/rc",
                 size="16k")
    rc = int((fl.tmp / "rc").read_text())
    err = p.stderr.decode()
    assert rc == 71, err
    if (name, args) in RECORDS:
        _one_error(err, "cannot write the kickstart record", "No space left")
    else:
        _one_error(err, "cannot write to standard output", "No space left")
        assert len(err.splitlines()) == 1, err


def test_transfer_attempts_into_a_full_multipart_dir(fl: Fluxlite, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(3000))
    doc = [{"type": "transfer", "linkage": "input", "id": 1, "lfn": "f",
            "src_urls": [{"site_label": "local", "url": f"file://{src}"}],
            "dest_urls": [{"site_label": "local", "url": f"file://{tmp_path}/dst"}]}]
    (tmp_path / "list.json").write_text(json.dumps(doc))
    mnt = tmp_path / "mnt"
    mp = mnt / "mp"
    p = in_tmpfs(fl, mnt, f"mkdir {mp}; head -c 1M /dev/zero > {mnt}/fill 2>/dev/null; "
                          f"{FLUXLITE} transfer list.json --multipart-dir {mp}; "
                          f"echo $? > {tmp_path}/rc; ls -A {mp} > {tmp_path}/left",
                 size="16k")
    err = p.stderr.decode()
    assert int((tmp_path / "rc").read_text()) == 71, err
    _one_error(err, "cannot write the attempts", "No space left")
    assert (tmp_path / "left").read_text() == "", "a part (or its temporary) was left"
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()  # the transfer itself worked
    # with room, the part is written whole, under the name PegasusLite embeds
    mp2 = tmp_path / "mp2"
    p = fl.run("transfer", "list.json", "--multipart-dir", str(mp2), cwd=tmp_path)
    assert p.returncode == 0, p.stderr.decode()
    (part,) = list(mp2.iterdir())
    assert part.name.endswith("-transfer") and "- transfer_attempts:" in part.read_text()
