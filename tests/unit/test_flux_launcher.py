"""The Flux launcher without a Flux instance: a fake of the calls it makes (submit, kill,
cancel, the eventlog) plays a job, and the launcher's reading of events and exceptions into
exit statuses, and its signals, are checked."""

from __future__ import annotations

import queue
import signal
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fluxlite.execute.base import Launcher
from fluxlite.execute.timelimit import Schedule
from fluxlite.spec import Resources
from fluxlite.flux.launcher import FluxLauncher
from tests.launcher_contract import LauncherContract


class FakeId:
    def __init__(self, jid: int) -> None:
        self.f58 = f"ƒfake{jid}"
        self._jid = jid

    def __int__(self) -> int:
        return self._jid


class FakeFlux:
    """A job that behaves as ``behaviour`` says: its events come as a real one's would
    (start, finish with a wait status, clean); ``script`` replaces them when given."""

    def __init__(self, behaviour: str, script: list[Any] | None = None) -> None:
        self.behaviour = behaviour
        self.script = script
        self.q: queue.Queue[Any] = queue.Queue()
        self.calls: list[tuple[Any, ...]] = []
        self.ended = False

    def _ev(self, name: str, **context: Any) -> None:
        self.q.put(SimpleNamespace(name=name, timestamp=time.time(), context=context))

    def _end(self, status: int) -> None:
        if not self.ended:
            self.ended = True
            self._ev("finish", status=status)
            self._ev("clean")

    @staticmethod
    def jobspec(argv: list[str], **kw: Any) -> dict[str, Any]:
        return {"argv": argv, **kw}

    def submit(self, js: Any) -> int:
        self.calls.append(("submit", js))
        if self.script is not None:
            for item in self.script:
                self.q.put(item)
            return 42
        self._ev("start")
        if self.behaviour == "exit3":
            self._end(3 << 8)
        return 42

    def jobid(self, jid: int) -> FakeId:
        return FakeId(jid)

    def kill(self, jid: int, signum: int) -> None:
        self.calls.append(("kill", jid, signum))
        if self.behaviour == "waits" or signum == signal.SIGKILL:
            self._end(signum)  # a wait status: killed by signum

    def cancel(self, jid: int, note: str) -> None:
        self.calls.append(("cancel", jid, note))
        self._ev("exception", type="cancel", severity=0, note=note)
        self._end(signal.SIGTERM)

    def events(self, jid: int) -> Any:
        while True:
            item = self.q.get(timeout=10)
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.name == "clean":
                return


def launcher(tmp_path: Path, fake: FakeFlux, nested: bool = False,
             **kw: Any) -> FluxLauncher:
    kw.setdefault("schedule", Schedule())
    return FluxLauncher(["/bin/true"], str(tmp_path), {"PATH": "/bin"}, stdin="/dev/null",
                        stdout=str(tmp_path / "out"), stderr=str(tmp_path / "err"),
                        ctx=SimpleNamespace(handle=None, uri="fake://"),
                        resources=Resources(), nested=nested, calls=fake, **kw)


class TestFluxLauncherContract(LauncherContract):
    """The Flux launcher keeps the launcher contract."""

    def make(self, tmp_path: Path, behaviour: str, **kw: object) -> Launcher:
        return launcher(tmp_path, FakeFlux(behaviour), **kw)


def ev(name: str, **context: Any) -> SimpleNamespace:
    return SimpleNamespace(name=name, timestamp=time.time(), context=context)


def test_an_exception_before_the_job_ran_is_a_failure_to_start(tmp_path: Path) -> None:
    fake = FakeFlux("", [ev("exception", type="alloc", severity=0, note="unsatisfiable"),
                         ev("clean")])
    la = launcher(tmp_path, fake)
    la.start()
    res = la.wait()
    assert res.status.code == 127
    assert res.status.error == "flux job ƒfake42: alloc: unsatisfiable"
    assert la.flux_info["exception"] == {"type": "alloc", "note": "unsatisfiable"}


def test_a_non_fatal_exception_does_not_decide(tmp_path: Path) -> None:
    fake = FakeFlux("", [ev("start"), ev("exception", type="timeout", severity=1, note="x"),
                         ev("finish", status=0), ev("clean")])
    la = launcher(tmp_path, fake)
    la.start()
    res = la.wait()
    assert res.status.ok and "exception" not in la.flux_info and "t_run" in la.flux_info


def test_a_lost_eventlog_is_said(tmp_path: Path) -> None:
    fake = FakeFlux("", [ev("start"), OSError("connection reset")])
    la = launcher(tmp_path, fake)
    la.start()
    res = la.wait()
    assert res.status.error == "lost flux job ƒfake42: connection reset"


def test_submit_refused_is_an_exec_error(tmp_path: Path) -> None:
    from fluxlite.errors import ExecError

    fake = FakeFlux("exit3")

    def refuse(js: Any) -> int:
        raise OSError(22, "Invalid argument")

    fake.submit = refuse  # type: ignore[method-assign]
    with pytest.raises(ExecError, match="flux submit of true failed: Invalid argument"):
        launcher(tmp_path, fake).start()


def test_a_nested_instance_is_cancelled_not_killed(tmp_path: Path) -> None:
    fake = FakeFlux("ignores_term")
    la = launcher(tmp_path, fake, nested=True, kill_grace=0.2)
    la.start()
    la.on_signal(signal.SIGTERM)
    la.on_signal(signal.SIGTERM)  # the second one: no more grace
    res = la.wait()
    kinds = [c[0] for c in fake.calls]
    assert kinds == ["submit", "kill", "cancel"]  # TERM forwarded, then the cancel
    assert fake.calls[0][1]["kind"] == "nest"
    assert fake.calls[1][2] == signal.SIGTERM
    assert res.status.signal == signal.SIGTERM and res.terminated_by == signal.SIGTERM
