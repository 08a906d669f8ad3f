"""`fluxlite kickstart` as Pegasus calls pegasus-kickstart: every flag, alone and as the
planner combines them, each record read by Pegasus's own parser and exit-code check."""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SAMPLES, Fluxlite, judge, parse_records, sha256_of

SH = "/bin/sh"


class Run:
    """One kickstart run: its exit code, its .out/.err files and the record in them."""

    def __init__(self, fl: Fluxlite, args: tuple[str, ...], env: dict[str, str] | None = None,
                 name: str = "job", **kw: Any) -> None:
        self.proc = fl.run("kickstart", *args, env=env, **kw)
        self.rc = self.proc.returncode
        self.out = fl.tmp / f"{name}.out"
        self.err = fl.tmp / f"{name}.err"
        self.out.write_bytes(self.proc.stdout)
        self.err.write_bytes(self.proc.stderr)

    @property
    def stderr(self) -> str:
        return self.proc.stderr.decode()

    def invocations(self, path: Path | None = None) -> list[dict[str, Any]]:
        recs = parse_records(path or self.out)
        inv = [r for r in recs if r.get("invocation")]
        assert inv, f"no record parsed from {path or self.out}:\n{self.proc.stdout[:2000]!r}"
        return inv

    def inv(self) -> dict[str, Any]:
        inv = self.invocations()
        assert len(inv) == 1
        return inv[0]

    def yaml(self, path: Path | None = None) -> dict[str, Any]:
        """The record as plain YAML, every key as written."""
        text = (path or self.out).read_text()
        start = text.index("- invocation: True")
        return yaml.safe_load(text[start:])[0]

    def accepted(self) -> None:
        judge(self.out, None)  # kickstart's own records: no PegasusLite success message

    def rejected(self) -> None:
        from Pegasus.exitcode import JobFailed

        with pytest.raises(JobFailed):
            judge(self.out, None)


def ks(fl: Fluxlite, *args: str, **kw: Any) -> Run:
    return Run(fl, args, **kw)


def script(path: Path, body: str, mode: int = 0o755) -> Path:
    path.write_text(body)
    path.chmod(mode)
    return path


# -- what the planner generates -------------------------------------------------------------
def test_the_pegasus_command_line(fl: Fluxlite) -> None:
    r = ks(fl, "-n", "diamond::findrange:4.0", "-N", "ID0000002", "-R", "condorpool",
           "-L", "diamond", "-T", "2026-11-22T08:00:00+00:00", "-s", "f.c1=f.c1",
           SH, "-c", "echo result > f.c1; echo done")
    assert r.rc == 0, r.stderr
    inv = r.inv()
    assert (inv["transformation"], inv["derivation"], inv["resource"]) == (
        "diamond::findrange:4.0", "ID0000002", "condorpool")
    assert inv["exitcode"] == 0 and inv["raw"] == 0 and inv["stdout"] == "done\n"
    meta = inv["outputs"]["f.c1"]
    assert meta.get_attribute_value("checksum.value") == sha256_of(fl.tmp / "f.c1")
    doc = r.yaml()
    assert (doc["wf-label"], doc["wf-stamp"]) == ("diamond", "2026-11-22T08:00:00+00:00")
    assert doc["files"]["f.c1"]["output"] is True and doc["cwd"] == str(fl.tmp)
    assert r.stderr == ""  # kickstart is silent when all is well
    r.accepted()


def test_the_pegasus_command_line_with_checkpoint_times(fl: Fluxlite) -> None:
    r = ks(fl, "-n", "tr", "-N", "ID1", "-R", "site", "-L", "lbl", "-T", "stamp",
           "-k", "60", "-K", "30", "-s", "out=out", SH, "-c", "echo x > out")
    assert r.rc == 0, r.stderr
    assert "out" in r.inv()["outputs"]
    r.accepted()


def test_a_failed_output_stat_still_reports_the_task(fl: Fluxlite) -> None:
    r = ks(fl, "-n", "tr", "-N", "ID1", "-R", "site", "-s", "never=never.txt", "/bin/true")
    assert r.rc == 0
    assert r.inv()["outputs"] == {}
    r.accepted()


# -- every flag alone -------------------------------------------------------------------------
@pytest.mark.parametrize(("flag", "value", "key", "expected"), [
    ("-n", "tr::name:1.0", "transformation", "tr::name:1.0"),
    ("-N", "ID000042", "derivation", "ID000042"),
    ("-R", "flux-local", "resource", "flux-local"),
    ("-L", "label", "wf-label", "label"),
    ("-T", "2026-01-01T00:00:00+00:00", "wf-stamp", "2026-01-01T00:00:00+00:00"),
])
def test_names_go_into_the_record(fl: Fluxlite, flag: str, value: str, key: str,
                                  expected: str) -> None:
    r = ks(fl, flag, value, "/bin/true")
    assert r.rc == 0
    assert r.yaml()[key] == expected
    r.inv()
    r.accepted()


def test_names_reach_the_task_environment(fl: Fluxlite) -> None:
    r = ks(fl, "-n", "tr", "-N", "ID7", "-L", "wf", SH, "-c",
           'echo "$PEGASUS_XFORMATION $PEGASUS_TASK_ID $PEGASUS_WF_LABEL"')
    assert r.inv()["stdout"] == "tr ID7 wf\n"


def test_i_file_is_stdin(fl: Fluxlite) -> None:
    (fl.tmp / "in.txt").write_text("from a file\n")
    r = ks(fl, "-i", "in.txt", "/bin/cat")
    assert r.inv()["stdout"] == "from a file\n"
    assert r.yaml()["files"]["stdin"]["file_name"] == str(fl.tmp / "in.txt")
    r.accepted()


def test_i_dash_shares_our_stdin(fl: Fluxlite) -> None:
    r = ks(fl, "-i", "-", "/bin/cat", input=b"piped in\n")
    assert r.inv()["stdout"] == "piped in\n"
    assert r.yaml()["files"]["stdin"]["descriptor_number"] == 0
    r.accepted()


def test_o_and_e_files(fl: Fluxlite) -> None:
    r = ks(fl, "-o", "o.txt", "-e", "e.txt", SH, "-c", "echo out; echo err >&2")
    assert (fl.tmp / "o.txt").read_text() == "out\n" and (fl.tmp / "e.txt").read_text() == "err\n"
    files = r.yaml()["files"]
    assert files["stdout"]["file_name"] == str(fl.tmp / "o.txt")
    assert files["stderr"]["file_name"] == str(fl.tmp / "e.txt")
    r.inv()
    r.accepted()


def test_o_bang_appends_and_plain_truncates(fl: Fluxlite) -> None:
    (fl.tmp / "o.txt").write_text("before\n")
    (fl.tmp / "e.txt").write_text("old contents that are long\n")
    ks(fl, "-o", "!o.txt", "-e", "e.txt", SH, "-c", "echo after; echo new >&2").accepted()
    assert (fl.tmp / "o.txt").read_text() == "before\nafter\n"
    assert (fl.tmp / "e.txt").read_text() == "new\n"


def test_o_dash_shares_our_stdout(fl: Fluxlite) -> None:
    r = ks(fl, "-o", "-", "-e", "-", SH, "-c", "echo to-our-stdout; echo to-our-stderr >&2")
    assert r.proc.stdout.startswith(b"to-our-stdout\n- invocation: True")
    assert "to-our-stderr" in r.stderr
    doc = r.yaml()
    assert doc["files"]["stdout"]["descriptor_number"] == 1
    assert doc["files"]["stderr"]["descriptor_number"] == 2
    r.inv()
    r.accepted()


def test_l_appends_the_record_to_a_file(fl: Fluxlite) -> None:
    log = fl.tmp / "rec.out"
    for i in range(2):
        r = ks(fl, "-l", "rec.out", "-N", f"ID{i}", "/bin/true")
        assert r.rc == 0 and r.proc.stdout == b""
    # one YAML list of two records; Pegasus's parser reads such a file as one record (in
    # clustered jobs [cluster-task] lines separate them), and accepts it
    assert [x["derivation"] for x in yaml.safe_load(log.read_text())] == ["ID0", "ID1"]
    assert r.invocations(log)[0]["derivation"] == "ID0"
    judge(log, None)


def test_s_stats_and_checksums_outputs(fl: Fluxlite) -> None:
    (fl.tmp / "lst").write_text("b=b.txt\n")
    r = ks(fl, "-s", "a=a.txt", "-s", "@lst", "-s", "c.txt", SH, "-c",
           "echo A > a.txt; echo B > b.txt; echo C > c.txt")
    outs = r.inv()["outputs"]
    for lfn, name in (("a", "a.txt"), ("b", "b.txt")):
        assert outs[lfn].get_attribute_value("checksum.value") == sha256_of(fl.tmp / name)
    files = r.yaml()["files"]
    assert files["c.txt"]["file_name"] == str(fl.tmp / "c.txt")  # no lfn: named by the path
    assert files["a"]["sha256"] == sha256_of(fl.tmp / "a.txt")
    r.accepted()


def test_S_stats_inputs_before_the_task(fl: Fluxlite) -> None:
    (fl.tmp / "in.dat").write_bytes(b"x" * 2048)
    r = ks(fl, "-S", "f.in=in.dat", SH, "-c", "rm in.dat")
    entry = r.yaml()["files"]["f.in"]
    assert entry["size"] == 2048 and "output" not in entry and "sha256" not in entry
    inv = r.inv()
    assert inv["outputs"] == {} and inv["tot_ip_size_mb"] > 0
    r.accepted()


def test_w_runs_in_a_directory(fl: Fluxlite) -> None:
    d = fl.tmp / "there"
    d.mkdir()
    r = ks(fl, "-w", str(d), "-s", "f=f.txt", "-o", "o.txt", SH, "-c", "pwd; echo > f.txt")
    assert (d / "o.txt").read_text().strip() == str(d)
    doc = r.yaml()
    assert doc["cwd"] == str(d) and doc["files"]["f"]["file_name"] == str(d / "f.txt")
    r.accepted()


def test_W_creates_the_directory(fl: Fluxlite) -> None:
    d = fl.tmp / "new" / "dir"
    r = ks(fl, "-W", str(d), SH, "-c", "pwd")
    assert r.rc == 0 and r.inv()["stdout"].strip() == str(d)
    r.accepted()


def test_X_makes_the_application_executable(fl: Fluxlite) -> None:
    app = script(fl.tmp / "app.sh", "#!/bin/sh\necho ran\n", mode=0o644)
    r = ks(fl, "-X", "./app.sh")
    assert r.rc == 0 and r.inv()["stdout"] == "ran\n"
    assert os.stat(app).st_mode & stat.S_IXUSR
    r.accepted()


def test_without_X_a_non_executable_fails_127(fl: Fluxlite) -> None:
    script(fl.tmp / "app.sh", "#!/bin/sh\necho ran\n", mode=0o644)
    r = ks(fl, "./app.sh")
    assert r.rc == 127
    assert "Permission denied" in r.stderr
    doc = r.yaml()
    # kickstart's failure status: raw -127 and "errno   strerror"
    assert doc["mainjob"]["status"] == {"raw": -127, "failure_error": "13   Permission denied"}
    assert "environment" in doc and "limits" in doc
    r.rejected()


def test_H_omits_the_machine_section(fl: Fluxlite) -> None:
    r = ks(fl, "-H", "/bin/true")
    assert "machine" not in r.yaml()
    assert "machine" in ks(fl, "/bin/true", name="full").yaml()
    r.accepted()


def test_I_reads_the_application_from_a_file(fl: Fluxlite) -> None:
    (fl.tmp / "args").write_text(f"{SH}\n-c\necho from argfile; echo $0\nzero arg\n")
    r = ks(fl, "-n", "tr", "-I", "args")
    assert r.inv()["stdout"] == "from argfile\nzero arg\n"
    assert r.yaml()["mainjob"]["argument_vector"] == [
        "-c", "echo from argfile; echo $0", "zero arg"]
    r.accepted()


def test_B_limits_the_embedded_output(fl: Fluxlite) -> None:
    r = ks(fl, "-B", "4", SH, "-c", "printf 0123456789")
    so = r.yaml()["files"]["stdout"]
    assert so["data_truncated"] is True and so["data"] == "6789" and so["size"] == 10
    r.accepted()


def test_B_all_embeds_everything(fl: Fluxlite) -> None:
    n = 300_000  # more than the default 262144
    r = ks(fl, "-B", "all", SH, "-c", f"head -c {n} /dev/zero | tr '\\0' x")
    assert len(r.inv()["stdout"]) == n
    assert r.yaml()["files"]["stdout"]["data_truncated"] is False
    default = ks(fl, SH, "-c", f"head -c {n} /dev/zero | tr '\\0' x", name="default")
    assert len(default.inv()["stdout"]) == 262144
    r.accepted()


def test_f_adds_environment_and_limits_with_secrets_redacted(fl: Fluxlite) -> None:
    r = ks(fl, "-f", "/bin/true", env={"MY_API_TOKEN": "hunter2", "PLAIN_VAR": "visible"})
    doc = r.yaml()
    assert doc["environment"]["PLAIN_VAR"] == "visible"
    assert doc["environment"]["MY_API_TOKEN"] != "hunter2"
    assert "hunter2" not in r.out.read_text()
    assert doc["limits"] and "environment" not in ks(fl, "/bin/true", name="plain").yaml()
    r.accepted()


def test_q_omits_data_on_success_only(fl: Fluxlite) -> None:
    ok = ks(fl, "-q", SH, "-c", "echo hello; echo oops >&2", name="ok")
    assert "data" not in ok.yaml()["files"]["stdout"]
    ok.accepted()
    bad = ks(fl, "-q", SH, "-c", "echo hello; exit 2", name="bad")
    assert bad.rc == 2 and bad.yaml()["files"]["stdout"]["data"] == "hello\n"
    bad.rejected()


def test_k_terminates_with_kickstarts_exit_code(fl: Fluxlite) -> None:
    t0 = time.monotonic()
    r = ks(fl, "-k", "1", "/bin/sleep", "30")
    assert r.rc == 14  # SIGALRM's number, as pegasus-kickstart exits after its timeout
    assert time.monotonic() - t0 < 15
    status = r.yaml()["mainjob"]["status"]
    assert status["signalled_signal"] == signal.SIGTERM
    assert r.inv()["signal"] == signal.SIGTERM
    assert "environment" in r.yaml()  # a failure: the full record
    r.rejected()


def test_K_kills_a_task_that_ignores_term(fl: Fluxlite) -> None:
    t0 = time.monotonic()
    r = ks(fl, "-k", "1", "-K", "1", SH, "-c", "trap '' TERM; sleep 30 & wait; wait")
    assert r.rc == 14
    assert r.yaml()["mainjob"]["status"]["signalled_signal"] == signal.SIGKILL
    assert time.monotonic() - t0 < 15
    r.rejected()


def test_V_prints_the_version(fl: Fluxlite) -> None:
    from fluxlite import __version__

    r = ks(fl, "-V")
    assert r.rc == 0 and r.proc.stdout.decode().strip() == __version__


def test_m_sets_the_sampling_interval(fl: Fluxlite) -> None:
    r = ks(fl, "-m", "1", "/bin/true")
    assert r.rc == 0
    r.accepted()


# -- exit codes --------------------------------------------------------------------------------
def test_the_tasks_exit_code_and_a_full_record(fl: Fluxlite) -> None:
    r = ks(fl, SH, "-c", "echo bad input >&2; exit 3")
    assert r.rc == 3
    inv = r.inv()
    assert inv["exitcode"] == 3 and inv["raw"] == 3 << 8 and inv["stderr"] == "bad input\n"
    doc = r.yaml()
    assert "environment" in doc and "limits" in doc
    r.rejected()


def test_a_signal_gives_128_plus_n(fl: Fluxlite) -> None:
    r = ks(fl, SH, "-c", "kill -KILL $$")
    assert r.rc == 128 + signal.SIGKILL
    assert r.inv()["signal"] == signal.SIGKILL
    r.rejected()


def test_a_missing_executable_gives_127_and_a_record(fl: Fluxlite) -> None:
    r = ks(fl, "-n", "tr", "/no/such/program", "arg")
    assert r.rc == 127
    assert "/no/such/program" in r.stderr
    doc = r.yaml()
    assert doc["mainjob"]["status"] == {"raw": -127,
                                        "failure_error": "2   No such file or directory"}
    assert doc["mainjob"]["argument_vector"] == ["arg"]
    assert "environment" in doc
    # a complete record, as kickstart's: where it was and its stdio entries
    assert doc["cwd"] == str(fl.tmp)
    assert sorted(doc["files"]) == ["metadata", "stderr", "stdin", "stdout"]
    r.rejected()
    r2 = ks(fl, "no-such-program-on-path", name="path")
    assert r2.rc == 127 and "No such file or directory" in r2.stderr
    assert r2.yaml()["mainjob"]["status"]["failure_error"] == "2   No such file or directory"
    r2.rejected()


# -- environment hooks ------------------------------------------------------------------------
def test_hooks_run_around_the_task_with_their_records(fl: Fluxlite) -> None:
    env = {"KICKSTART_SETUP": "/bin/echo setup", "KICKSTART_PREJOB": '/bin/echo "pre job"',
           "KICKSTART_POSTJOB": "/bin/echo post", "KICKSTART_CLEANUP": "/bin/echo cleanup"}
    r = ks(fl, "-n", "tr", SH, "-c", "echo main", env=env)
    assert r.rc == 0
    assert r.inv()["stdout"] == "setup\npre job\nmain\npost\ncleanup\n"
    doc = r.yaml()
    for name in ("setup", "prejob", "postjob", "cleanup"):
        assert doc[name]["status"]["regular_exitcode"] == 0, name
        assert doc[name]["executable"]["file_name"] == "/bin/echo"
    assert doc["prejob"]["argument_vector"] == ["pre job"]
    keys = list(doc)
    assert keys.index("setup") < keys.index("prejob") < keys.index("mainjob") < keys.index(
        "postjob") < keys.index("cleanup")
    r.accepted()


def test_gridstart_names_still_work(fl: Fluxlite) -> None:
    r = ks(fl, "/bin/true", env={"GRIDSTART_PREJOB": "/bin/echo old-name",
                                 "GRIDSTART_CLEANUP": "/bin/echo bye"})
    doc = r.yaml()
    assert "prejob" in doc and "cleanup" in doc and r.inv()["stdout"] == "old-name\nbye\n"
    r.accepted()


def test_a_failed_prejob_skips_the_task(fl: Fluxlite) -> None:
    r = ks(fl, SH, "-c", "echo main", env={"KICKSTART_PREJOB": f"{SH} -c 'exit 5'",
                                          "KICKSTART_CLEANUP": "/bin/echo cleanup"})
    assert r.rc == 5
    doc = r.yaml()
    assert doc["prejob"]["status"]["regular_exitcode"] == 5
    assert "main" not in doc["files"]["stdout"]["data"] and "cleanup" in doc["files"][
        "stdout"]["data"]
    r.rejected()


def test_a_failed_postjob_fails_the_job(fl: Fluxlite) -> None:
    r = ks(fl, "/bin/true", env={"KICKSTART_POSTJOB": f"{SH} -c 'exit 4'"})
    assert r.rc == 4 and r.yaml()["postjob"]["status"]["regular_exitcode"] == 4
    r.rejected()


def test_a_hook_that_cannot_run_is_skipped(fl: Fluxlite) -> None:
    r = ks(fl, "/bin/true", env={"KICKSTART_PREJOB": "/no/such/hook x"})
    assert r.rc == 0 and "prejob" not in r.yaml()
    assert "KICKSTART_PREJOB" in r.stderr
    r.accepted()


# -- signals ------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_signals_are_forwarded_to_the_task(fl: Fluxlite, sig: signal.Signals) -> None:
    marker = fl.tmp / "started"
    p = fl.popen("kickstart", SH, "-c", f"touch {marker}; exec sleep 30")
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()
    time.sleep(0.1)  # the exec of sleep
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 128 + sig, err.decode()
    (fl.tmp / "sig.out").write_bytes(out)
    inv = [r for r in parse_records(fl.tmp / "sig.out") if r.get("invocation")]
    assert inv and inv[0]["signal"] == sig


# -- the real kickstart records -----------------------------------------------------------------
def _keys(doc: Any, prefix: str = "") -> set[str]:
    out: set[str] = set()
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.add(f"{prefix}{k}")
            if k not in ("environment", "limits", "machine", "data"):
                out |= _keys(v, f"{prefix}{k}.")
    return out


# What pegasus-kickstart writes that fluxlite does not (docs/kickstart.md says why):
# kickstart's own descriptor numbers, its metadata side channel and, on failure, stat
# records of its own binary and of the record file.
NOT_WRITTEN = ("files.metadata", "files.kickstart", "files.logfile", "files.stdout.descriptor",
               "files.stderr.descriptor")


@pytest.mark.parametrize(("sample", "args", "rc"), [
    ("ok.yml", ("-n", "diamond::findrange:4.0", "-N", "ID0000002", "-R", "flux-local",
                "-L", "diamond", "-T", "2026-11-22T08:00:00+00:00", "-s", "f.c1=out.txt",
                SH, "-c", "echo output line; echo err line >&2; printf 'hello\\n' > out.txt;"
                " exit 0"), 0),
    ("fail.yml", ("-n", "diamond::analyze:4.0", "-N", "ID0000003", "-R", "flux-local",
                  SH, "-c", "echo bad input >&2; exit 3"), 3),
    ("timeout.yml", ("-n", "diamond::preprocess:4.0", "-N", "ID0000004", "-R", "flux-local",
                     "-k", "1", "/bin/sleep", "10"), 14),
])
def test_same_sections_and_keys_as_real_kickstart(fl: Fluxlite, sample: str,
                                                  args: tuple[str, ...], rc: int) -> None:
    ref_text = (SAMPLES / sample).read_text()
    ref = yaml.safe_load(ref_text[ref_text.index("- invocation"):])[0]
    r = ks(fl, *args)
    assert r.rc == rc
    ours = r.yaml()
    want = {k for k in _keys(ref) if not k.startswith(NOT_WRITTEN)}
    missing = want - _keys(ours)
    assert not missing, f"keys of {sample} missing from fluxlite's record: {sorted(missing)}"
    # the top-level sections come in kickstart's order
    common = [k for k in ref if k in ours]
    assert [k for k in ours if k in common] == common
    # and Pegasus reads both alike
    (fl.tmp / "ref.out").write_text(ref_text)
    theirs = [x for x in parse_records(fl.tmp / "ref.out") if x.get("invocation")][0]
    mine = r.inv()
    for key in ("transformation", "derivation", "resource", "raw", "exitcode", "signal"):
        assert (key in theirs) == (key in mine), key
        if key not in ("raw",) and key in theirs:
            assert theirs[key] == mine[key], key
    if sample == "ok.yml":
        assert mine["stdout"] == theirs["stdout"] and mine["stderr"] == theirs["stderr"]
        assert (mine["outputs"]["f.c1"].get_attribute_value("checksum.value")
                == theirs["outputs"]["f.c1"].get_attribute_value("checksum.value"))
        r.accepted()
    else:
        r.rejected()


def test_a_signal_during_a_hook_ends_the_job(fl: Fluxlite) -> None:
    """TERM while the setup hook runs: forwarded to it, and the task is never started."""
    marker, ran = fl.tmp / "hook-started", fl.tmp / "task-ran"
    env = {"KICKSTART_SETUP": f"{SH} -c 'touch {marker}; exec sleep 30'",
           "KICKSTART_CLEANUP": "/bin/echo cleanup"}
    p = fl.popen("kickstart", SH, "-c", f"touch {ran}", env=env)
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()
    time.sleep(0.1)  # the exec of sleep
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 128 + signal.SIGTERM, err.decode()
    assert not ran.exists()
    (fl.tmp / "job.out").write_bytes(out)
    doc = yaml.safe_load(out[out.index(b"- invocation: True"):])[0]
    assert doc["setup"]["status"]["signalled_signal"] == signal.SIGTERM
    assert "cleanup" in doc
    assert [r for r in parse_records(fl.tmp / "job.out") if r.get("invocation")]
    from Pegasus.exitcode import JobFailed

    with pytest.raises(JobFailed):
        judge(fl.tmp / "job.out", None)
