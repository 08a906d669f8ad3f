"""The task controller with real processes: schedule and signals, driven directly."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import ClassVar

import pytest

from fluxlite.errors import ExecError
from fluxlite.execute.base import Launcher, TaskResult
from fluxlite.execute.local import GROUP, LocalLauncher, reap_all
from fluxlite.execute.supervisor import alive as _alive
from fluxlite.execute.timelimit import Schedule
from tests.launcher_contract import LauncherContract


def controller(tmp_path: Path, argv: list[str], **kw: object) -> LocalLauncher:
    return LocalLauncher(argv, str(tmp_path), {"PATH": "/usr/bin:/bin"}, stdin="/dev/null",
                          stdout=str(tmp_path / "out"), stderr=str(tmp_path / "err"),
                          schedule=kw.pop("schedule", Schedule()), **kw)  # type: ignore[arg-type]


def test_a_signal_before_the_task_exists_reaches_it_when_it_starts(tmp_path: Path) -> None:
    ctl = controller(tmp_path, ["/bin/sleep", "30"], kill_grace=30.0)
    ctl.on_signal(signal.SIGTERM)  # fluxlite was told to stop while setting the task up
    t0 = time.monotonic()
    ctl.start()
    res = ctl.wait()
    assert time.monotonic() - t0 < 5  # not the 30 s grace
    assert res.status.signal == signal.SIGTERM and res.terminated_by == signal.SIGTERM
    assert [e.signal for e in ctl.events if e.direction == "sent"] == ["SIGTERM"]


def test_schedule_term_then_kill(tmp_path: Path) -> None:
    ctl = controller(tmp_path, ["/bin/sh", "-c", "trap '' TERM; sleep 30 & wait; sleep 30"],
                     schedule=Schedule(0.3, 0.8, "spec", None))
    t0 = time.monotonic()
    ctl.start()
    res = ctl.wait()
    took = time.monotonic() - t0
    assert 0.7 <= took < 5
    assert res.timed_out == "kill" and res.status.signal == signal.SIGKILL
    sent = [e.signal for e in ctl.events if e.direction == "sent"]
    assert sent[0] == "SIGTERM" and "SIGKILL" in sent


def test_usr1_is_forwarded_not_terminating(tmp_path: Path) -> None:
    body = "trap 'echo got > usr1; exit 0' USR1; sleep 30 & wait"
    ctl = controller(tmp_path, ["/bin/sh", "-c", body], usr1="forward")
    ctl.start()
    time.sleep(0.3)
    ctl.on_signal(signal.SIGUSR1)
    res = ctl.wait()
    assert res.status.exitcode == 0 and res.terminated_by is None
    assert (tmp_path / "usr1").read_text() == "got\n"


IGNORES_TERM = ["/bin/sh", "-c", "trap '' TERM; sleep 30 & wait; sleep 30"]
TRAPS = ["/bin/sh", "-c", "trap 'echo usr1 >> got; exit 0' USR1; "
         "trap 'echo term >> got; exit 0' TERM; sleep 30 & wait"]


def signalled(ctl: LocalLauncher, signum: int) -> tuple[TaskResult, float]:
    """Start the task, signal it as fluxlite's handler would; its result and how long it
    took from the signal to its end."""
    ctl.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    ctl.on_signal(signum)
    res = ctl.wait()
    return res, time.monotonic() - t0


def test_one_term_is_followed_by_a_kill_after_the_grace(tmp_path: Path) -> None:
    ctl = controller(tmp_path, IGNORES_TERM, kill_grace=0.5)
    res, took = signalled(ctl, signal.SIGTERM)
    assert 0.45 <= took < 4, took
    assert res.status.signal == signal.SIGKILL and res.terminated_by == signal.SIGTERM
    sent = [e.signal for e in ctl.events if e.direction == "sent"]
    assert sent == ["SIGTERM", "SIGKILL"]


def test_usr1_by_default_moves_the_schedule_to_the_time_left(tmp_path: Path) -> None:
    ctl = controller(tmp_path, TRAPS)
    assert ctl.usr1 == "schedule"
    ctl.timeleft = lambda: 11.0  # Flux says: 11 s left -> TERM 10 s before the end
    res, took = signalled(ctl, signal.SIGUSR1)
    assert 0.9 <= took < 4, took
    assert (tmp_path / "got").read_text() == "term\n"  # the task never saw the USR1
    assert res.timed_out == "term" and res.terminated_by == signal.SIGTERM
    (term,) = [e for e in ctl.events if e.direction == "sent"]
    assert "time-limit warning" in term.reason


def test_usr1_without_a_time_left_is_the_term(tmp_path: Path) -> None:
    res, took = signalled(controller(tmp_path, TRAPS), signal.SIGUSR1)
    assert took < 3
    assert (tmp_path / "got").read_text() == "term\n"
    assert res.timed_out == "term" and res.status.exitcode == 0


def test_usr1_never_delays_the_schedule(tmp_path: Path) -> None:
    ctl = controller(tmp_path, TRAPS, schedule=Schedule(1.0, 20.0, "spec"))
    ctl.timeleft = lambda: 3600.0  # plenty left: the TERM at 1 s stands
    ctl.start()
    ctl.on_signal(signal.SIGUSR1)
    t0 = time.monotonic()
    res = ctl.wait()
    assert time.monotonic() - t0 < 4
    assert res.timed_out == "term" and (tmp_path / "got").read_text() == "term\n"


def test_the_supervisor_is_not_the_task(tmp_path: Path) -> None:
    import os

    ctl = controller(tmp_path, ["/bin/sh", "-c", "echo $$ > pid; exec sleep 0.3"])
    ctl.start()
    (sup,) = ctl.helper_pids
    assert sup != ctl.result.pid and sup != os.getpid()
    res = ctl.wait()
    assert res.status.exitcode == 0 and int((tmp_path / "pid").read_text()) == res.pid
    assert res.killed == []


def test_a_task_that_cannot_start_raises_exec_error(tmp_path: Path) -> None:
    import pytest

    from fluxlite.errors import ExecError

    ctl = controller(tmp_path, [str(tmp_path / "missing")])
    with pytest.raises(ExecError, match="No such file or directory"):
        ctl.start()


def test_descriptors_numbered_above_1024_do_not_matter(tmp_path: Path) -> None:
    import os
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        import pytest

        pytest.skip(f"RLIMIT_NOFILE is {soft}")
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        ctl = controller(tmp_path, ["/bin/sh", "-c", "exit 4"])
        ctl.start()
        assert ctl.wait().status.exitcode == 4
    finally:
        for fd in held:
            os.close(fd)


def test_a_grace_that_is_not_a_number_is_the_default(tmp_path: Path) -> None:
    import math

    for grace in (math.nan, math.inf, -1.0):
        assert controller(tmp_path, ["/bin/true"], kill_grace=grace).kill_grace == 5.0


class TestLocalLauncherContract(LauncherContract):
    """The local launcher keeps the launcher contract with real processes."""

    ARGV: ClassVar[dict[str, list[str]]] = {"exit3": ["/bin/sh", "-c", "exit 3"], "waits": ["/bin/sleep", "30"],
            "ignores_term": IGNORES_TERM}

    def make(self, tmp_path: Path, behaviour: str, **kw: object) -> Launcher:
        return controller(tmp_path, self.ARGV[behaviour], **kw)


class TestGroupLauncherContract(LauncherContract):
    """The same launcher under the cluster's cleanup policy keeps the contract too."""

    @pytest.fixture(autouse=True)
    def _in_tmp(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)  # a task of the group policy starts in the current dir

    def make(self, tmp_path: Path, behaviour: str, **kw: object) -> Launcher:
        return group(tmp_path, TestLocalLauncherContract.ARGV[behaviour], **kw)


def group(tmp_path: Path, argv: list[str], **kw: object) -> LocalLauncher:
    return LocalLauncher(argv, str(tmp_path), {"PATH": "/usr/bin:/bin"}, cleanup=GROUP,
                         stdin="/dev/null", stdout=str(tmp_path / "out"),
                         stderr=str(tmp_path / "err"), **kw)


def test_group_policy_polls_and_kills_its_group_only(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    # the task leaves one process in its group and one that left it (setsid)
    script = ("sleep 30 & echo $! > ingroup; setsid sleep 30 & echo $! > escaped; "
              "read x < /dev/null; sleep 0.3")
    la = group(tmp_path, ["/bin/sh", "-c", script])
    la.start()
    assert la.fileno() >= 0 and la.poll() is None and not la.ended()
    t0 = time.monotonic()
    while (res := la.poll()) is None:
        assert time.monotonic() - t0 < 10
        time.sleep(0.01)
    assert res.status.exitcode == 0 and res.rusage and la.fileno() == -1
    ingroup, escaped = (int((tmp_path / n).read_text()) for n in ("ingroup", "escaped"))
    try:
        time.sleep(0.05)
        assert not _alive(ingroup)  # its group was killed with it
        assert _alive(escaped)  # not the launcher's: the cluster reaps it at its end
    finally:
        os.kill(escaped, signal.SIGKILL)  # a pid this test started
    reap_all()


def test_group_policy_passes_the_descriptors_it_is_given(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    r, w = os.pipe()  # close-on-exec: the task gets it only as fd 5
    try:
        la = group(tmp_path, ["/bin/sh", "-c", "echo hello >&5"], pass_fds=((w, 5),))
        la.start()
        os.close(w)
        assert la.wait().status.ok
        assert os.read(r, 100) == b"hello\n"
    finally:
        os.close(r)


def test_group_policy_refuses_another_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="current directory"):
        group(tmp_path / "elsewhere", ["/bin/true"]).start()


def test_a_bare_name_is_found_on_the_tasks_path(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    prog = bindir / "myprog"
    prog.write_text("#!/bin/sh\nexit 6\n")
    prog.chmod(0o755)
    ctl = LocalLauncher(["myprog"], str(tmp_path), {"PATH": f"{bindir}:/usr/bin:/bin"},
                        stdin="/dev/null", stdout=str(tmp_path / "o"), stderr=str(tmp_path / "e"))
    ctl.start()
    assert ctl.wait().status.exitcode == 6
    with pytest.raises(ExecError, match="cannot execute myprog: No such file or directory"):
        controller(tmp_path, ["myprog"]).start()


def test_a_single_job_inherits_no_descriptor_but_its_stdio(tmp_path: Path) -> None:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(fd, True)  # as a descriptor fluxlite itself was started with
    try:
        ctl = controller(tmp_path, ["/bin/sh", "-c", f"[ -e /proc/self/fd/{fd} ]"])
        ctl.start()
        res = ctl.wait()
    finally:
        os.close(fd)
    assert res.status.exitcode == 1  # the descriptor is not there


@pytest.mark.parametrize("policy", ["descendants", "group"])
def test_closing_an_abandoned_task_kills_and_reaps_it(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     policy: str) -> None:
    monkeypatch.chdir(tmp_path)
    make = controller if policy == "descendants" else group
    la = make(tmp_path, ["/bin/sleep", "30"])
    la.start()
    pid = la.result.pid
    la.close()
    assert la.result.status.signal == signal.SIGKILL and not _alive(pid)
    assert la.fileno() == -1 and la.poll() is la.result
    la.close()  # once only
