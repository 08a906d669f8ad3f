"""The guard of ``execute/guard.py`` without Flux: a real guard process forks a real worker
that starts a task which leaves a daemon behind (setsid); the test kills the worker, or the
guard, and looks at what is left. The guard is a child process of its own (a subreaper that
kills everything below it), never the test's process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil

# the guard: forks the worker, reads what it says, and ends it as the worker's end asks
GUARD = r"""
import json, os, signal, sys, time
from fluxlite.execute import guard, supervisor
from fluxlite.signals import STOP_SIGNALS

def worker(link):
    signal.signal(guard.GUARD_LOST, lambda *_: (print("guard lost", flush=True),
                                                os._exit(0)))
    link.secret(b"s" * 32)
    null = os.open(os.devnull, os.O_RDWR)
    # a task in a process group of its own, which leaves a daemon outside it
    pid = supervisor.spawn("/bin/sh", ["sh", "-c", "setsid sleep 300 & sleep 300"],
                           dict(os.environ), (null, null, null), session=False)
    link.add(pid, 7, 1.5)
    link.flush()  # the lines of a round go out together
    print(f"task {pid}", flush=True)
    time.sleep(300)
    return 0

pid, rfd = guard.fork_worker(worker)
print(f"worker {pid}", flush=True)
g = guard.Guard(0, rfd, pid)
for sig in STOP_SIGNALS:
    signal.signal(sig, g._forward)
while not g.eof:
    g._read()
g._reap_worker(kill=False)
doc = g._gone(g._why())
print(json.dumps({"doc": doc, "secret": (g.secret or b"").hex(), "code": g._exit_code()}),
      flush=True)
"""


def _start() -> tuple[subprocess.Popen[str], int, int, list[int]]:
    """The guard running, its worker's pid, the task's, and every process below it."""
    p = subprocess.Popen([sys.executable, "-c", GUARD], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    worker = int(p.stdout.readline().split()[1])
    task = int(p.stdout.readline().split()[1])
    below: list[int] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the task's sleep and its daemon
        below = [c.pid for c in psutil.Process(p.pid).children(recursive=True)]
        if len(below) >= 4:
            break
        time.sleep(0.05)
    assert len(below) >= 4, below  # the worker, the task, its sleep, the daemon
    return p, worker, task, below


def _gone(pids: list[int]) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [q for q in pids if psutil.pid_exists(q)
                and psutil.Process(q).status() != psutil.STATUS_ZOMBIE]
        if not left:
            return True
        time.sleep(0.05)
    return False


def _end(p: subprocess.Popen[str], below: list[int]) -> None:
    if p.poll() is None:
        p.kill()
        p.wait(10)
    for q in below:  # only what this test's guard started
        try:
            os.kill(q, signal.SIGKILL)
        except OSError:
            pass


def test_a_dead_worker_takes_everything_below_it_and_says_what() -> None:
    p, worker, task, below = _start()
    try:
        os.kill(worker, signal.SIGKILL)
        out, _ = p.communicate(timeout=60)
        said = json.loads(out.splitlines()[-1])
        assert said["secret"] == (b"s" * 32).hex()
        doc = said["doc"]
        assert doc["why"] == "its process was killed by SIGKILL"
        assert [(k["key"], k["pid"], k["start"]) for k in doc["killed"]] == [(7, task, 1.5)]
        assert doc["left"] == 0 and said["code"] == 1
        assert _gone(below), "a process below the guard outlived its worker"
    finally:
        _end(p, below)


def test_a_stop_signal_goes_on_to_the_worker() -> None:
    p, worker, _, below = _start()
    try:
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=60)
        assert json.loads(out.splitlines()[-1])["doc"]["why"] == (
            "its process was killed by SIGTERM")
        assert _gone(below)
    finally:
        _end(p, below)


def test_a_dead_guard_is_its_workers_parent_death_signal() -> None:
    p, worker, _, below = _start()
    try:
        p.kill()
        p.wait(10)
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "guard lost"
        assert _gone([worker])
    finally:
        _end(p, below)
