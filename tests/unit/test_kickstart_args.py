"""kickstart's command line: every flag, kickstart's quirks, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxlite.kickstart_args import (
    ALL_DATA,
    DEFAULT_DATA_SIZE,
    KickstartUsage,
    noquote,
    parse,
    pathfind,
    stream,
)


def test_the_command_line_pegasus_generates() -> None:
    a = parse(["-n", "diamond::findrange:4.0", "-N", "ID0000002", "-R", "condorpool",
               "-s", "f.c1=f.c1", "-L", "diamond", "-T", "2026-11-22T08:00:00+00:00",
               "-k", "60", "-K", "30", "/bin/findrange", "-a", "findrange", "-i", "f.b1"])
    assert (a.transformation, a.derivation, a.resource) == (
        "diamond::findrange:4.0", "ID0000002", "condorpool")
    assert (a.wf_label, a.wf_stamp) == ("diamond", "2026-11-22T08:00:00+00:00")
    assert a.stat_after == [("f.c1", "f.c1")]
    assert (a.term_timeout, a.kill_timeout) == (60, 30)
    # options after the application are the application's
    assert a.argv == ["/bin/findrange", "-a", "findrange", "-i", "f.b1"]


@pytest.mark.parametrize(("words", "attr", "value"), [
    (["-n", "tr"], "transformation", "tr"),
    (["-ntr"], "transformation", "tr"),  # kickstart takes attached values too
    (["-N", "'ID1'"], "derivation", "ID1"),  # and strips one pair of quotes
    (["-R", "site"], "resource", "site"),
    (["-L", "lbl"], "wf_label", "lbl"),
    (["-T", "stamp"], "wf_stamp", "stamp"),
    (["-i", "in.txt"], "stdin", "in.txt"),
    (["-o", "!out.txt"], "stdout", "!out.txt"),
    (["-e", "-"], "stderr", "-"),
    (["-l", "rec.out"], "logfile", "rec.out"),
    (["-S", "a=b"], "stat_before", [("a", "b")]),
    (["-s", "plain"], "stat_after", [(None, "plain")]),
    (["-w", "dir"], "workdir", "dir"),
    (["-X"], "make_executable", True),
    (["-H"], "no_header", True),
    (["-f"], "full", True),
    (["-q"], "omit_data", True),
    (["-B", "1024"], "data_size", 1024),
    (["-B", "0x10"], "data_size", 16),
    (["-B", "all"], "data_size", ALL_DATA),
    (["-k", "0"], "term_timeout", 0),
    (["-K", "7"], "kill_timeout", 7),
    (["-m", "2"], "monitor_interval", 2),
])
def test_each_flag(words: list[str], attr: str, value: object) -> None:
    a = parse([*words, "/bin/true"])
    assert getattr(a, attr) == value
    assert a.argv == ["/bin/true"]


def test_defaults() -> None:
    a = parse(["/bin/true"])
    assert a.data_size == DEFAULT_DATA_SIZE and a.kill_timeout == 5 and a.term_timeout == 0
    assert a.logfile is None and a.stdout is None and not a.full


def test_W_creates_and_F_c_are_accepted() -> None:
    a = parse(["-W", "d", "-F", "-c", "/bin/true"])
    assert a.workdir == "d" and a.create_workdir


def test_double_dash_ends_options_and_dash_alone_is_the_application() -> None:
    assert parse(["-H", "--", "-weird-name", "x"]).argv == ["-weird-name", "x"]
    assert parse(["-"]).argv == ["-"]


def test_stat_lists_from_files(tmp_path: Path) -> None:
    lst = tmp_path / "list"
    lst.write_text("# outputs\nf.a=out/a\n\nb.txt\n")
    a = parse(["-s", f"@{lst}", "-S", "x=y", "/bin/true"])
    assert a.stat_after == [("f.a", "out/a"), (None, "b.txt")]
    assert a.stat_before == [("x", "y")]


def test_argfile(tmp_path: Path) -> None:
    f = tmp_path / "args"
    f.write_text("/bin/echo\nhello world\n\n--flag\n")
    a = parse(["-n", "tr", "-I", str(f)])
    assert a.argv == ["/bin/echo", "hello world", "--flag"] and a.argfile == str(f)


def test_version_and_help() -> None:
    assert parse(["-V"]).version
    assert parse(["-h"]).help


@pytest.mark.parametrize(("words", "message"), [
    ([], "no application to run"),
    (["-n", "tr"], "no application to run"),
    (["-x", "/bin/true"], "unknown option '-x'"),
    (["-n"], "-n argument missing"),
    (["-B", "0", "/bin/true"], "Invalid -B argument: 0"),
    (["-B", "lots", "/bin/true"], "Invalid -B argument: lots"),
    (["-k", "-1", "/bin/true"], "Invalid -k argument: -1"),
    (["-K", "0", "/bin/true"], "Invalid -K argument: 0"),
    (["-m", "4000", "/bin/true"], "Invalid -m argument: 4000"),
    (["-I", "/nonexistent/args"], "-I /nonexistent/args: cannot read argument file"),
    (["-I", "f", "extra"], "no arguments allowed after -I f"),
    (["-s", "@/nonexistent/list", "/bin/true"], "cannot read /nonexistent/list"),
])
def test_usage_errors(words: list[str], message: str) -> None:
    with pytest.raises(KickstartUsage) as info:
        parse(words)
    assert message in str(info.value)
    assert info.value.exit_code == 127


def test_stream_prefixes() -> None:
    assert stream(None) == (None, False, False)
    assert stream("-") == (None, False, True)
    assert stream("out") == ("out", False, False)
    assert stream("!out") == ("out", True, False)
    assert stream("^out") == ("out", False, False)
    assert stream("!^out") == ("out", True, False)


def test_noquote() -> None:
    assert noquote('"a b"') == "a b" and noquote("'x'") == "x" and noquote("'x") == "'x"


def test_pathfind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local").write_text("#!/bin/sh\n")
    assert pathfind("local", "/bin") == str(tmp_path / "local")  # kickstart: cwd first
    assert pathfind("sh", "/nonexistent:/bin") == "/bin/sh"
    assert pathfind("no-such-program-here", "/bin") is None
    assert pathfind("/bin/sh", "") == "/bin/sh"


@pytest.mark.parametrize(("value", "seconds"), [("0.5", 0.5), ("2", 2.0), ("0.01", 0.01),
                                                ("3600", 3600.0), ("0", 0.0)])
def test_m_takes_fractional_seconds(value: str, seconds: float) -> None:
    assert parse(["-m", value, "/bin/true"]).monitor_interval == seconds


@pytest.mark.parametrize(("flag", "value"), [
    ("-m", "nan"), ("-m", "inf"), ("-m", "-1"), ("-m", "0.001"), ("-m", "1e300"),
    ("-m", "soon"), ("-k", "1" + "0" * 400), ("-k", "1" + "0" * 5000), ("-k", "nan"),
    ("-k", "1.5"), ("-K", "99999999999"), ("-K", "inf"), ("-B", "1" + "0" * 400),
    ("-B", "-5"),
])
def test_numbers_out_of_bounds_are_usage_errors(flag: str, value: str) -> None:
    with pytest.raises(KickstartUsage) as info:
        parse([flag, value, "/bin/true"])
    assert str(info.value) == f"Invalid {flag} argument: {value}"
    assert info.value.exit_code == 127
