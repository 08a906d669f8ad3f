"""The processes of this machine as Linux's /proc tells them, read cheaply: one read of
``/proc/PID/stat`` each, as bytes (what a process calls itself is never decoded).

The task monitor and the record's machine section read them here rather than through
psutil, whose import alone costs 12-17 ms of every job that runs for more than a moment;
the figures are the ones psutil reads from the same files (``memory_info``'s rss and vms,
``cpu_times``, ``num_threads``, ``io_counters``' bytes, ``children`` by parent pid and start
time). Where there is no /proc (:func:`available` is False) the monitor asks psutil.
"""

from __future__ import annotations

import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class Proc:
    """One process, from its ``/proc/PID/stat`` line."""

    __slots__ = ("pid", "ppid", "rss", "start", "state", "stime", "threads", "utime", "vsize")

    def __init__(self, pid: int, fields: list[bytes]) -> None:
        # fields[0] is the line's third field (the state), after the command's "(name)"
        self.pid = pid
        self.state = fields[0]  # b"R", b"S", b"D", b"I", b"Z", ...
        self.ppid = int(fields[1])
        self.utime = int(fields[11])  # clock ticks
        self.stime = int(fields[12])
        self.threads = int(fields[17])
        self.start = int(fields[19])  # clock ticks after boot
        self.vsize = int(fields[20])  # bytes
        self.rss = int(fields[21])  # pages

    @property
    def cpu_seconds(self) -> float:
        """User plus system CPU time, in seconds (psutil's ``cpu_times()`` user + system)."""
        return self.utime / CLOCK_TICKS + self.stime / CLOCK_TICKS


def available() -> bool:
    """Whether this system has Linux's /proc."""
    return os.path.exists("/proc/self/stat")


def _read(path: str) -> bytes:
    """A /proc file of one record (a process's stat line, its io counters): the kernel
    makes it whole at the first read, so a read shorter than asked is all of it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        chunks = [os.read(fd, 4096)]
        while len(chunks[-1]) == 4096:
            chunks.append(os.read(fd, 4096))
        return b"".join(chunks)
    except OSError:
        return b""
    finally:
        os.close(fd)


def process(pid: int) -> Proc | None:
    """The process ``pid`` (None when it is gone or its line cannot be read)."""
    raw = _read(f"/proc/{pid}/stat")
    # the command name is in parentheses and may itself hold spaces and parentheses
    fields = raw[raw.rfind(b")") + 2:].split()
    if len(fields) < 22:
        return None
    try:
        return Proc(pid, fields)
    except ValueError:
        return None


def processes() -> list[Proc]:
    """Every process of the machine that could be read."""
    try:
        pids = [int(e) for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    return [p for p in map(process, pids) if p is not None]


def descendants(procs: list[Proc], root: int) -> list[Proc]:
    """The processes below ``root`` (children, theirs, ...), as psutil's
    ``children(recursive=True)`` finds them: by parent pid, each started no earlier than
    ``root`` (an older one has a reused pid)."""
    by_pid = {p.pid: p for p in procs}
    me = by_pid.get(root)
    if me is None:
        return []
    kids: dict[int, list[Proc]] = {}
    for p in procs:
        kids.setdefault(p.ppid, []).append(p)
    out: list[Proc] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue  # pids reused while /proc was read can make a cycle
        seen.add(pid)
        for child in kids.get(pid, ()):
            if me.start <= child.start:
                out.append(child)
                stack.append(child.pid)
    return out


def io_bytes(pid: int) -> tuple[int, int] | None:
    """(read_bytes, write_bytes) from ``/proc/PID/io``: None when it cannot be read
    (another user's process, or gone)."""
    got: dict[bytes, int] = {}
    for line in _read(f"/proc/{pid}/io").splitlines():
        key, _, val = line.partition(b":")
        if key in (b"read_bytes", b"write_bytes"):
            got[key] = int(val)
    if len(got) < 2:
        return None
    return got[b"read_bytes"], got[b"write_bytes"]
