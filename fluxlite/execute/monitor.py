"""Process-tree sampling while the task runs (peak memory, CPU, threads, I/O): from /proc
(:mod:`fluxlite.execute.procfs`) on Linux, through psutil elsewhere."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from fluxlite.execute import procfs

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any


@dataclass(slots=True)
class ResourceUsage:
    """What sampling the task's process tree saw: peaks and totals for the record."""

    samples: int = 0
    interval: float = 0.0
    peak_rss: int = 0  # bytes, summed over the tree at one sample
    peak_vms: int = 0
    peak_threads: int = 0
    peak_procs: int = 0
    cpu_seconds: float = 0.0  # user + system of every process seen, at its last sample
    read_bytes: int = 0
    write_bytes: int = 0
    pids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """The usage as the JSON record keeps it (the pids seen as a count)."""
        return {k: getattr(self, k) for k in self.__slots__ if k != "pids"} | {
            "pids_seen": len(self.pids)}


def tree(root: Any) -> list[Any]:
    """Every process below root (fluxlite is a subreaper, so orphans stay below it)."""
    import psutil

    try:
        return root.children(recursive=True)
    except psutil.Error:
        return []


class Monitor:
    """Samples the processes below this one in a daemon thread until stopped."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.usage = ResourceUsage(interval=interval)
        self._stop = threading.Event()
        self._cpu: dict[int, float] = {}
        self._io: dict[int, tuple[int, int]] = {}
        self._me: Any = None  # psutil's Process of fluxlite, where there is no /proc
        self._procfs: bool | None = None  # whether /proc is read (known at the first sample)
        self._exclude: set[int] = set()
        self._thread = threading.Thread(target=self._run, name="fluxlite-monitor", daemon=True)

    def start(self, exclude: tuple[int, ...] = ()) -> None:
        """Sample from now on; ``exclude``: fluxlite's own helpers (the task's supervisor)."""
        self._exclude = set(exclude)
        self._thread.start()

    def stop(self) -> ResourceUsage:
        """Stop sampling (one last sample) and return what was seen."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        u = self.usage
        u.cpu_seconds = round(sum(self._cpu.values()), 3)
        u.read_bytes = sum(r for r, _ in self._io.values())
        u.write_bytes = sum(w for _, w in self._io.values())
        u.pids = sorted(self._cpu)
        return u

    def _run(self) -> None:
        # Sample early so that short tasks are seen, then at the configured interval.
        delays = [d for d in (0.05, 0.25) if d < self.interval] + [self.interval]
        i = 0
        while not self._stop.wait(delays[min(i, len(delays) - 1)]):
            self.sample()
            i += 1

    def sample(self) -> None:
        """Take one sample of the process tree below fluxlite, helpers excluded."""
        if self._procfs is None:
            self._procfs = procfs.available()
        if not self._procfs:
            self._sample_psutil()
            return
        procs = [p for p in procfs.descendants(procfs.processes(), os.getpid())
                 if p.pid not in self._exclude]
        for p in procs:
            io = procfs.io_bytes(p.pid)
            if io is not None:
                self._io[p.pid] = io
            self._cpu[p.pid] = p.cpu_seconds
        self._note(sum(p.rss for p in procs) * procfs.PAGE_SIZE, sum(p.vsize for p in procs),
                   sum(p.threads for p in procs), len(procs))

    def _sample_psutil(self) -> None:
        import psutil

        if self._me is None:
            self._me = psutil.Process(os.getpid())
        rss = vms = threads = 0
        procs = [p for p in tree(self._me) if p.pid not in self._exclude]
        for p in procs:
            try:
                with p.oneshot():
                    mi = p.memory_info()
                    ct = p.cpu_times()
                    nt = p.num_threads()
                    try:
                        io = p.io_counters()
                        self._io[p.pid] = (io.read_bytes, io.write_bytes)
                    except (psutil.AccessDenied, AttributeError):
                        pass
            except psutil.Error:
                continue
            rss += mi.rss
            vms += mi.vms
            threads += nt
            self._cpu[p.pid] = ct.user + ct.system
        self._note(rss, vms, threads, len(procs))

    def _note(self, rss: int, vms: int, threads: int, procs: int) -> None:
        """One sample's sums over the tree: the peaks so far."""
        u = self.usage
        u.samples += 1
        u.peak_rss = max(u.peak_rss, rss)
        u.peak_vms = max(u.peak_vms, vms)
        u.peak_threads = max(u.peak_threads, threads)
        u.peak_procs = max(u.peak_procs, procs)
