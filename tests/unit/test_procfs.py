"""The task monitor's /proc reading against psutil's, on real processes of this test."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from fluxlite.execute import procfs
from fluxlite.execute.monitor import Monitor

pytestmark = pytest.mark.skipif(not procfs.available(), reason="needs Linux's /proc")


def test_a_process_reads_as_psutil_reads_it() -> None:
    import psutil

    me = psutil.Process()
    p = procfs.process(os.getpid())
    assert p is not None
    assert p.ppid == os.getppid() == me.ppid()
    assert p.threads == me.num_threads()
    assert p.start / procfs.CLOCK_TICKS == pytest.approx(me.create_time() - psutil.boot_time(),
                                                         abs=1.0)
    mi = me.memory_info()
    assert p.vsize == pytest.approx(mi.vms, rel=0.05)
    assert p.rss * procfs.PAGE_SIZE == pytest.approx(mi.rss, rel=0.05)
    ct = me.cpu_times()
    assert p.cpu_seconds == pytest.approx(ct.user + ct.system, abs=0.05)
    io = procfs.io_bytes(os.getpid())
    assert io is not None and all(isinstance(n, int) and n >= 0 for n in io)


def test_a_name_with_blanks_and_parentheses_is_read_past(tmp_path) -> None:
    exe = tmp_path / "a (b) c)"
    os.symlink("/bin/sleep", exe)
    child = subprocess.Popen([str(exe), "5"])
    try:
        p = procfs.process(child.pid)
        assert p is not None and p.ppid == os.getpid() and p.threads == 1
    finally:
        child.kill()
        child.wait()


def test_descendants_are_psutils_children() -> None:
    import psutil

    tree = subprocess.Popen(["sh", "-c", "sleep 5 & (sleep 5 & wait) & wait"])
    try:
        deadline = time.monotonic() + 10
        while len(psutil.Process().children(recursive=True)) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        want = {c.pid for c in psutil.Process().children(recursive=True)}
        got = {p.pid for p in procfs.descendants(procfs.processes(), os.getpid())}
        assert len(want) == 4 and got == want
    finally:
        for c in psutil.Process().children(recursive=True):
            c.kill()
        tree.wait()


def test_a_gone_process_reads_as_none() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert procfs.process(child.pid) is None and procfs.io_bytes(child.pid) is None
    assert procfs.descendants([], os.getpid()) == []


def test_the_monitor_sees_the_tree_its_memory_and_threads() -> None:
    """A task's child holding 64 MiB in a process with a second thread: the peaks show it;
    an excluded helper (here the shell) is not counted."""
    code = ("import threading, time\n"
            "b = bytearray(64 << 20)\n"
            "for i in range(0, len(b), 4096): b[i] = 1\n"
            "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
            "print('ready', flush=True)\n"
            "time.sleep(30)\n")
    # what this process already runs (an earlier test's server or helper) is not the task's
    before = {p.pid for p in procfs.descendants(procfs.processes(), os.getpid())}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        mon = Monitor(0.05)
        mon._exclude = set(before)
        mon.sample()
        mon.sample()
        u = mon.stop()
        assert u.samples == 2
        assert u.peak_rss >= 64 << 20 and u.peak_vms >= u.peak_rss
        assert u.peak_procs == 1 and u.peak_threads == 2
        assert u.pids == [child.pid]
        excluded = Monitor(0.05)
        excluded._exclude = {child.pid, *before}
        excluded.sample()
        assert excluded.stop().peak_procs == 0
        # where there is no /proc psutil is asked, and says the same
        other = Monitor(0.05)
        other._procfs = False
        other._exclude = set(before)
        other.sample()
        v = other.stop()
        assert (v.samples, v.peak_procs, v.peak_threads, v.pids) == (1, 1, 2, [child.pid])
        assert v.peak_rss == pytest.approx(u.peak_rss, rel=0.1)
        assert v.peak_vms == pytest.approx(u.peak_vms, rel=0.1)
        assert v.cpu_seconds == pytest.approx(u.cpu_seconds, abs=0.1)
    finally:
        child.kill()
        child.wait()
