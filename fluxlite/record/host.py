"""Facts about the machine and the process, gathered cheaply (mostly straight from /proc)."""

from __future__ import annotations

# _socket, not socket: the calls below are the same, and socket's import (its constants
# made enums, selectors) is about 2.5 ms of every job's start
import _socket
import functools
import math
import os
import stat as _stat
import time

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any


def iso(t: float, ms: bool = True) -> str:
    """Local time with offset, as kickstart writes it (2026-11-22T07:57:49.850+00:00).

    What ``datetime.fromtimestamp(t).astimezone().isoformat(timespec=...)`` gives, made
    from ``time.localtime`` (datetime costs a millisecond or two of every job's start):
    the timestamp rounded half-even to microseconds, the milliseconds those truncate to,
    the offset in effect then (with its seconds, when it has any)."""
    frac, whole = math.modf(t)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        us -= 1_000_000
        whole += 1.0
    elif us < 0:
        us += 1_000_000
        whole -= 1.0
    lt = time.localtime(int(whole))
    off = lt.tm_gmtoff or 0
    sign = "-" if off < 0 else "+"
    hh, rest = divmod(abs(off), 3600)
    mm, ss = divmod(rest, 60)
    return (f"{lt.tm_year:04d}-{lt.tm_mon:02d}-{lt.tm_mday:02d}T{lt.tm_hour:02d}:"
            f"{lt.tm_min:02d}:{min(lt.tm_sec, 59):02d}{f'.{us // 1000:03d}' if ms else ''}"
            f"{sign}{hh:02d}:{mm:02d}{f':{ss:02d}' if ss else ''}")


@functools.lru_cache(maxsize=64)
def user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@functools.lru_cache(maxsize=64)
def group_name(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def stat_info(path: str, follow: bool = True) -> dict[str, Any] | None:
    """Kickstart's statinfo fields for a path, or None when it does not exist."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError:
        return None
    return stat_dict(st)


def stat_dict(st: os.stat_result) -> dict[str, Any]:
    """Kickstart's statinfo fields of a stat result."""
    return {
        "mode": st.st_mode, "size": st.st_size, "inode": st.st_ino, "nlink": st.st_nlink,
        "blksize": st.st_blksize, "blocks": st.st_blocks,
        "mtime": iso(st.st_mtime, ms=False), "atime": iso(st.st_atime, ms=False),
        "ctime": iso(st.st_ctime, ms=False),
        "uid": st.st_uid, "user": user_name(st.st_uid), "gid": st.st_gid,
        "group": group_name(st.st_gid),
    }


def is_executable_file(path: str) -> bool:
    """Whether ``path`` is a regular file this process may execute."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return _stat.S_ISREG(st.st_mode) and os.access(path, os.X_OK)


def process_info() -> dict[str, Any]:
    """This process's pid, user, group and umask, as kickstart records them."""
    umask = os.umask(0o022)
    os.umask(umask)
    uid, gid = os.getuid(), os.getgid()
    return {"pid": os.getpid(), "uid": uid, "user": user_name(uid), "gid": gid,
            "group": group_name(gid), "umask": umask}


def network() -> tuple[str, str, str]:
    """(hostname, primary IPv4 address, interface), asking the kernel; nothing is sent."""
    import fcntl
    import struct

    hostname = _socket.gethostname()
    try:
        names = [n for _, n in _socket.if_nameindex() if n != "lo"]
    except OSError:
        names = []
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        for name in names:
            try:
                # SIOCGIFADDR: the interface's IPv4 address
                raw = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue
            return hostname, _socket.inet_ntoa(raw[20:24]), name
    finally:
        s.close()
    return hostname, "127.0.0.1", "lo"


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    """Kickstart's machine section (Linux), in the same units (kB for memory)."""
    u = os.uname()
    out: dict[str, Any] = {"page-size": os.sysconf("SC_PAGE_SIZE"),
                           "uname_system": u.sysname.lower(), "uname_nodename": u.nodename,
                           "uname_release": u.release, "uname_machine": u.machine}
    mem: dict[str, int] = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            mem[key] = int(parts[0])
    out.update({"ram_total": mem.get("MemTotal", 0), "ram_free": mem.get("MemFree", 0),
                "ram_shared": mem.get("Shmem", 0), "ram_buffer": mem.get("Buffers", 0),
                "swap_total": mem.get("SwapTotal", 0), "swap_free": mem.get("SwapFree", 0)})
    cpus = 0
    speed = 0.0
    vendor = model = ""
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, val = line.partition(":")
        key, val = key.strip(), val.strip()
        if key == "processor":
            cpus += 1
        elif key == "cpu MHz" and not speed:
            speed = float(val or 0)
        elif key == "vendor_id" and not vendor:
            vendor = val
        elif key == "model name" and not model:
            model = val
    out.update({"cpu_count": cpus or os.cpu_count() or 1, "cpu_speed": int(speed),
                "cpu_vendor": vendor or "unknown", "cpu_model": model or u.machine})
    l1, l5, l15 = os.getloadavg()
    out.update({"load_min1": round(l1, 2), "load_min5": round(l5, 2),
                "load_min15": round(l15, 2)})
    out.update(_procs())
    return out


def _procs() -> dict[str, int]:
    from fluxlite.execute import procfs

    total = running = sleeping = vmsize = rss = tasks = t_running = t_sleeping = 0
    page_kb = procfs.PAGE_SIZE // 1024
    asleep = (b"S", b"D", b"I")
    for p in procfs.processes():
        total += 1
        if p.state == b"R":
            running += 1
            t_running += 1
        elif p.state in asleep:
            sleeping += 1
            t_sleeping += p.threads
        tasks += p.threads
        vmsize += p.vsize // 1024
        rss += p.rss * page_kb
    return {"procs_total": total, "procs_running": running, "procs_sleeping": sleeping,
            "procs_other": total - running - sleeping, "procs_vmsize": vmsize,
            "procs_rss": rss, "task_total": tasks, "task_running": t_running,
            "task_sleeping": t_sleeping, "task_other": max(0, tasks - t_running - t_sleeping)}


def rlimits() -> dict[str, Any]:
    """Every resource limit of this process, soft and hard, by name."""
    import resource

    out: dict[str, Any] = {}
    names = {getattr(resource, n): n for n in dir(resource) if n.startswith("RLIMIT_")}
    for num in range(max(names) + 1 if names else 0):
        name = names.get(num, f"RESOURCE_{num}")
        try:
            soft, hard = resource.getrlimit(num)
        except (ValueError, OSError):
            continue
        fmt = lambda v: "unlimited" if v == resource.RLIM_INFINITY else v  # noqa: E731
        out[f"{name}_soft"] = fmt(soft)
        out[f"{name}_hard"] = fmt(hard)
    return out


def redacted_env(env: dict[str, str]) -> dict[str, str]:
    """The environment with the values of secret-named variables redacted."""
    from fluxlite import redact

    return redact.env(env)
