"""The backend interface and the managed transfer every backend shares.

Backends implement small primitives (open a source for reading; optionally open a remote
destination for writing). Everything that must be right every time lives here: the sha256
computed while the bytes move (one read, never a second pass), a temporary name in the
destination directory followed by fsync and rename, failover across sources, bounded retries
with backoff and jitter, cancellation, and the removal of partial files.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import dataclasses
import errno
import hashlib
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fluxlite.errors import IntegrityError, StageError
from fluxlite.fsutil import NO_UNNAMED, O_TMPFILE, mkstemp, token_hex
from fluxlite.integrity import CHUNK
from fluxlite.urls import redact

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    import random
    from typing import Any, Protocol

    class Reader(Protocol):
        """An open source: read into a buffer, then close; ``size`` when known."""

        size: int | None

        def readinto(self, buf: bytearray) -> int:
            """Read into ``buf``; the number of bytes read, 0 at the end."""

        def close(self) -> None:
            """Release the source."""

    class RemoteWriter(Protocol):
        """A destination that is not a local path (object stores): all-or-nothing on commit."""

        def write(self, data: memoryview) -> None:
            """Send the next bytes."""

        def commit(self) -> str:
            """Make the object appear whole at its destination; the URL it is at."""

        def abort(self) -> None:
            """Leave nothing at the destination."""


logger = logging.getLogger(__name__)


class Cancelled(Exception):
    """Raised inside a transfer when the whole staging phase is being stopped; ``result``
    holds the attempts made before, when there were any."""

    def __init__(self, result: TransferResult | None = None) -> None:
        super().__init__("cancelled")
        self.result = result


class RateCheck:
    """The minimum throughput of one attempt: fewer than ``min_rate`` bytes per second
    over the last ``window`` seconds (once the attempt has lasted that long) fails it."""

    def __init__(self, min_rate: float, window: float) -> None:
        self.min_rate = min_rate
        self.window = window
        self.samples: collections.deque[tuple[float, int]] = collections.deque()
        self.samples.append((time.monotonic(), 0))

    def update(self, total: int) -> str | None:
        """Note ``total`` bytes so far; why the attempt is too slow, or None."""
        now = time.monotonic()
        if now - self.samples[-1][0] >= self.window / 30:
            self.samples.append((now, total))
        # the newest sample at least a window old is where the window starts
        while len(self.samples) > 1 and self.samples[1][0] <= now - self.window:
            self.samples.popleft()
        t0, n0 = self.samples[0]
        if now - t0 < self.window:
            return None
        rate = (total - n0) / (now - t0)
        if rate < self.min_rate:
            return (f"{rate:.0f} bytes/s over the last {now - t0:.0f} s, less than the "
                    f"minimum of {self.min_rate:g} bytes/s")
        return None


class Backend:
    """One URL scheme. Subclasses override what their scheme can do."""

    def local_path(self, url: str) -> str | None:
        """The local filesystem path behind the URL, if there is one."""
        return None

    def open_read(self, url: str, *, tls_verify: bool = True, timeout: float = 60.0,
                  cancel: threading.Event | None = None, min_rate: float = 0.0,
                  rate_window: float = 0.0) -> Reader:
        """Open ``url`` for reading; OSError or StageError when it cannot be."""
        raise StageError(f"{redact(url)}: this scheme cannot be read", permanent=True)

    def open_write(self, url: str, size: int | None) -> RemoteWriter:
        """Open a remote destination for writing (object stores); local paths need none."""
        raise StageError(f"{redact(url)}: this scheme cannot be written", permanent=True)

    def link_only(self, url: str) -> bool:
        """True when the scheme asks for a symbolic link rather than a copy."""
        return False


@dataclass(slots=True)
class Attempt:
    """One try of one source for one file, as the records list it."""

    lfn: str
    src: str
    dst: str
    start: float
    duration: float = 0.0
    bytes: int = 0
    success: bool = False
    error: str | None = None
    round: int = 1


@dataclass(slots=True)
class TransferResult:
    """The outcome of one file's transfer: its attempts, digest, bytes and timing."""

    lfn: str
    dst: str
    success: bool = False
    bytes: int = 0
    sha256: str | None = None
    expected: str | None = None
    verified: bool | None = None  # None: no expected checksum to compare with
    linked: bool = False
    skipped: bool = False  # an optional file that no source had
    duration: float = 0.0
    hash_seconds: float = 0.0
    error: str | None = None
    attempts: list[Attempt] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Request:
    """One file to move: sources tried in order, one destination (local path or URL)."""

    lfn: str
    sources: tuple[tuple[str, bool], ...]  # (url, tls_verify)
    dst: str  # a local path (stage-in) or a URL (stage-out)
    expected: str | None = None
    executable: bool = False
    symlink: bool = False
    optional: bool = False
    fsync: bool = False
    fallback_dsts: tuple[str, ...] = ()  # further destinations tried when dst cannot be written
    # a local source must resolve inside this directory (outputs and checkpoints: the
    # worker directory), and be a regular file
    confine: str | None = None


DEFAULT_MIN_RATE = 1024.0  # bytes/s
DEFAULT_RATE_WINDOW = 60.0  # s


@dataclass(frozen=True, slots=True)
class Policy:
    """Retries, backoff, timeouts and minimum rate of the transfers of a phase."""

    attempts: int = 3
    backoff: float = 1.0
    max_backoff: float = 30.0
    timeout: float = 60.0
    # a network attempt that moves fewer than min_rate bytes/s over any rate_window
    # seconds fails (0: no minimum)
    min_rate: float = DEFAULT_MIN_RATE
    rate_window: float = DEFAULT_RATE_WINDOW


class _SourceFailed(Exception):
    """One source could not be read in one attempt; ``missing``: it has no such file."""

    def __init__(self, message: str, permanent: bool, missing: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.missing = missing


class _DestinationWriteFailed(OSError):
    """A write to the destination failed (not a read of the source)."""


def _is_permanent_oserror(err: OSError) -> bool:
    return err.errno in (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR,
                         errno.ELOOP, errno.ENAMETOOLONG)


def backoff_delay(round_no: int, policy: Policy, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter in its upper half, bounded by max_backoff."""
    base = min(policy.max_backoff, policy.backoff * (2 ** (round_no - 1)))
    if rng is None:
        import random  # only a retry needs it

        r = random.random()  # noqa: S311 - a retry's jitter, not a secret
    else:
        r = rng.random()
    return min(policy.max_backoff, base * (0.5 + 0.5 * r))


RoundObserver = Callable[[bool], None]


def transfer(req: Request, policy: Policy, cancel: threading.Event | None = None,
             on_round: RoundObserver | None = None) -> TransferResult:
    """Move one file with failover and retries; raise StageError when it cannot be done.

    Sources are tried in order within each round; with several destinations, the next one
    is used only when a destination cannot be written at all. ``on_round`` is told the
    outcome of every round (True once the file is there, False for each round in which no
    source worked), which lets a staging phase notice that most of its files are failing.
    """
    if not req.fallback_dsts:
        return _transfer(req, policy, cancel, on_round)
    earlier: list[Attempt] = []
    last: StageError | None = None
    for dst in (req.dst, *req.fallback_dsts):
        try:
            res = _transfer(dataclasses.replace(req, dst=dst, fallback_dsts=()), policy, cancel,
                            on_round)
            res.attempts[:0] = earlier
            return res
        except IntegrityError:
            raise
        except StageError as err:
            last = err
            if err.result is not None:
                earlier.extend(err.result.attempts)
    assert last is not None
    last_res: TransferResult | None = last.result
    if last_res is not None:
        last_res.attempts[:0] = earlier[: len(earlier) - len(last_res.attempts)]
    raise last


def _transfer(req: Request, policy: Policy, cancel: threading.Event | None,
              on_round: RoundObserver | None = None) -> TransferResult:
    from fluxlite.staging import backend_for

    cancel = cancel or threading.Event()
    res = TransferResult(lfn=req.lfn, dst=req.dst, expected=req.expected)
    t0 = time.perf_counter()
    dead: set[int] = set()
    missing = 0
    last_error = "no source"
    mismatches = 0  # sources whose bytes did not have the expected digest
    for round_no in range(1, policy.attempts + 1):
        for i, (url, tls) in enumerate(req.sources):
            if i in dead:
                continue
            if cancel.is_set():
                raise Cancelled()
            att = Attempt(req.lfn, redact(url), redact(req.dst), time.time(), round=round_no)
            a0 = time.perf_counter()
            try:
                backend = backend_for(url)
                _one_attempt(backend, url, tls, req, policy, res, att, cancel)
                att.success = True
            except Cancelled:
                att.error = "cancelled"
                att.duration = time.perf_counter() - a0
                res.attempts.append(att)
                raise
            except IntegrityError as err:
                att.error = str(err)
                mismatches += 1
                # what arrived, for the records: the digest that did not match
                res.sha256, res.verified = err.actual, False
                dead.add(i)
                last_error = str(err)
            except (_SourceFailed, StageError) as err:
                att.error = str(err)
                last_error = str(err)
                if err.permanent:
                    dead.add(i)
                    missing += err.missing
                if isinstance(err, StageError) and err.destination:
                    # no other source will help, and neither will waiting
                    dead.update(range(len(req.sources)))
            att.duration = time.perf_counter() - a0
            res.attempts.append(att)
            if att.success:
                res.success = True
                res.duration = time.perf_counter() - t0
                if on_round is not None:
                    on_round(True)
                return res
        if on_round is not None and not (req.optional and missing == len(req.sources)):
            on_round(False)
        if len(dead) == len(req.sources):
            break
        if round_no < policy.attempts:
            delay = backoff_delay(round_no, policy)
            logger.info("%s: attempt %d failed (%s); retrying in %.1f s", req.lfn, round_no,
                        last_error, delay)
            if cancel.wait(delay):
                # the attempts made so far still belong in the record
                res.error = f"cancelled while waiting to retry ({last_error})"
                res.duration = time.perf_counter() - t0
                raise Cancelled(res)
    res.duration = time.perf_counter() - t0
    if req.optional and missing == len(req.sources):
        res.skipped = True
        res.error = "not present at any source"
        return res
    res.error = _named(req.lfn, last_error)
    if mismatches and mismatches == len(req.sources):
        raise IntegrityError(req.lfn, req.expected or "", res.sha256 or "",
                             where="every source", result=res)
    tried = len(res.attempts)
    raise StageError(f"{_named(req.lfn, last_error)} (after {tried} "
                     f"attempt{'s' * (tried != 1)})", lfn=req.lfn, result=res)


def _one_attempt(backend: Backend, url: str, tls: bool, req: Request, policy: Policy,
                 res: TransferResult, att: Attempt, cancel: threading.Event) -> None:
    from fluxlite.staging import backend_for

    src_path = backend.local_path(url)
    link = req.symlink or backend.link_only(url)
    dst_is_url = "://" in req.dst
    if link and src_path is not None and not dst_is_url:
        _link(src_path, req, res, att)
        return
    try:
        if req.confine is not None and src_path is not None:
            from fluxlite.staging.localfile import open_confined

            reader = open_confined(src_path, req.confine, req.lfn)
        else:
            reader = backend.open_read(url, tls_verify=tls, timeout=policy.timeout,
                                       cancel=cancel, min_rate=policy.min_rate,
                                       rate_window=policy.rate_window)
    except OSError as err:
        raise _SourceFailed(f"{redact(url)}: {err.strerror or err}",
                            _is_permanent_oserror(err),
                            missing=err.errno == errno.ENOENT) from err
    try:
        if dst_is_url:
            dst_backend = backend_for(req.dst)
            dpath = dst_backend.local_path(req.dst)
            if dpath is None:
                _to_remote(reader, dst_backend, req, res, att, cancel)
                return
        else:
            dpath = req.dst
        _to_local(reader, dpath, req, res, att, cancel, url)
    finally:
        reader.close()


def _link(src_path: str, req: Request, res: TransferResult, att: Attempt) -> None:
    """A symbolic link instead of a copy; the source is hashed once if a checksum is expected."""
    if not os.path.exists(src_path):
        raise _SourceFailed(f"{src_path}: No such file or directory", True, missing=True)
    if req.expected:
        from fluxlite.integrity import file_sha256

        digest, n, secs = file_sha256(src_path)
        res.hash_seconds += secs
        if digest != req.expected:
            raise IntegrityError(req.lfn, req.expected, digest, where=src_path)
        res.sha256, res.verified = digest, True
    else:
        n = os.stat(src_path).st_size
    tmp = f"{req.dst}.tmp-{os.getpid()}-{threading.get_ident()}"
    try:
        os.makedirs(os.path.dirname(req.dst) or ".", exist_ok=True)
        os.symlink(src_path, tmp)
        os.replace(tmp, req.dst)
    except OSError as err:
        # e.g. a directory in the way: the link under its temporary name must not stay
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise _dst_error(req, req.dst, err) from err
    res.linked = True
    res.bytes = att.bytes = n


def _named(lfn: str, message: str) -> str:
    """A transfer's message names its file once: an attempt's own message is about a source
    or a destination, and only some (checksum mismatches) already begin with the lfn."""
    return message if message.startswith(f"{lfn}: ") else f"{lfn}: {message}"


def _dst_error(req: Request, dpath: str, err: OSError) -> StageError:
    """The destination is at fault, not the source."""
    return StageError(f"cannot write {redact(dpath)}: {err.strerror or err}", lfn=req.lfn,
                      permanent=True, destination=True)


def _to_local(reader: Reader, dpath: str, req: Request, res: TransferResult, att: Attempt,
              cancel: threading.Event, url: str) -> None:
    ddir = os.path.dirname(dpath) or "."
    try:
        dev = _directory(ddir)
    except OSError as err:
        raise _dst_error(req, dpath, err) from err
    remove_stale_temporaries(dpath)
    extents: list[tuple[int, int]] | None = getattr(reader, "extents", None)
    if reader.size is not None:
        _check_room(reader.size if extents is None else sum(e - b for b, e in extents),
                    ddir, url, req, dpath, local=getattr(reader, "mode", None) is not None)
    try:
        fd, tmp = _open_unnamed(ddir, dpath, dev)
    except OSError as err:
        raise _dst_error(req, dpath, err) from err
    ok = False
    try:
        out = _LocalWriter(fd, req, dpath, reader.size if extents is None else None, extents)
        h = hashlib.sha256()
        try:
            n, hsecs = pump(reader, out.write, h, cancel)
            out.finish(n)
        except OSError as err:
            if isinstance(err, _DestinationWriteFailed):
                raise _dst_error(req, dpath, err) from err
            raise _SourceFailed(f"{redact(url)}: {err.strerror or err}", False) from err
        att.bytes = n
        digest = h.hexdigest()
        res.hash_seconds += hsecs
        if reader.size is not None and n != reader.size:
            raise _SourceFailed(f"{redact(url)}: got {n} bytes, expected {reader.size}", False)
        if req.expected and digest != req.expected:
            raise IntegrityError(req.lfn, req.expected, digest, where=redact(url))
        try:
            os.fchmod(fd, _dst_mode(getattr(reader, "mode", None), req.executable))
            if req.fsync:
                os.fsync(fd)
            _publish(fd, tmp, dpath)
            tmp = None
            os.close(fd)
            fd = -1
        except OSError as err:
            # e.g. a directory in the way, or a full disk found by fsync
            raise _dst_error(req, dpath, err) from err
        if req.fsync:
            _fsync_dir(ddir)
        ok = True
        res.bytes, res.sha256 = n, digest
        res.verified = True if req.expected else None
    finally:
        if fd >= 0:
            os.close(fd)
        if not ok and tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _directory(ddir: str) -> int:
    """Make the destination directory where it is missing; the device it is on."""
    try:
        st = os.stat(ddir)
        if stat.S_ISDIR(st.st_mode):
            return st.st_dev  # there already: one call where makedirs makes three
    except FileNotFoundError:
        pass
    os.makedirs(ddir, exist_ok=True)
    return os.stat(ddir).st_dev


def _dst_mode(src_mode: int | None, executable: bool) -> int:
    """The permission bits of a new destination file, as cp gives them: the source's bits
    (0666 for a source without any) under the umask, never more. An executable input also
    gets the execute bit wherever it can be read, and its owner can always run it."""
    mode = 0o666 if src_mode is None else src_mode & 0o777
    if executable:
        mode |= 0o700 | ((mode & 0o444) >> 2)
    return mode & ~_umask()


# --------------------------------------------------------------------------- temporaries
# mkstemp's names: the prefix, then 8 characters of this set
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.tmp-[a-z0-9_]{8}")
_no_tmpfile: set[int] = set()  # devices whose filesystem refused O_TMPFILE
_swept: dict[str, dict[str, list[str]]] = {}  # directory -> its temporaries not yet seen to
_swept_lock = threading.Lock()


def _open_unnamed(ddir: str, dpath: str, dev: int) -> tuple[int, str | None]:
    """A new file for the destination's bytes: (fd, its temporary name or None).

    Where the filesystem allows it the file has no name at all (O_TMPFILE) until it is
    linked into place, so a process killed in the middle leaves nothing behind. Elsewhere
    it is ``.NAME.tmp-XXXXXXXX`` beside the destination, which a later transfer to the same
    destination removes if it is left over (``remove_stale_temporaries``).
    """
    if O_TMPFILE and dev not in _no_tmpfile and (dev in _tmpfile_ok
                                                  or _probe_tmpfile(dpath, dev)):
        return os.open(ddir, O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600), None
    return mkstemp(ddir, f".{os.path.basename(dpath)}.tmp-")


_tmpfile_ok: set[int] = set()


def _link_fd(fd: int, path: str) -> None:
    """Give the unnamed file open as fd the name path, through /proc/self/fd (open(2)'s
    own way, for any user). Without /proc it fails (ENOENT), and the filesystem's probe
    says unnamed files cannot be used."""
    # src_dir_fd makes os.link call linkat(2), which alone follows the /proc link (an
    # absolute source never reads it); link(2) would try to link the magic link itself
    os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd, follow_symlinks=True)


def _probe_tmpfile(dpath: str, dev: int) -> bool:
    """Whether unnamed files can be made and then linked in this filesystem (tried once
    per filesystem: some accept O_TMPFILE but refuse the link). The probe is linked for a
    moment under the destination's own temporary name, so that if fluxlite is killed just
    then, a later transfer to it removes what is left (``remove_stale_temporaries``)."""
    ddir = os.path.dirname(dpath) or "."
    try:
        fd = os.open(ddir, O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except OSError as err:
        if err.errno in _UNSUPPORTED:
            _no_tmpfile.add(dev)
        return False  # else this directory's own trouble: the named temporary reports it
    name = os.path.join(ddir, f".{os.path.basename(dpath)}.tmp-{token_hex(4)}")
    try:
        _link_fd(fd, name)
        os.unlink(name)
        _tmpfile_ok.add(dev)
        return True
    except OSError as err:
        if err.errno in _UNSUPPORTED:
            _no_tmpfile.add(dev)
        return False
    finally:
        _drop_if_ours(fd, name)  # a stop signal's exception between the link and the unlink
        os.close(fd)


def _drop_if_ours(fd: int, name: str) -> None:
    """Remove ``name`` when it is the very file open as ``fd``: a name linked here that an
    exception (a stop signal's, raised between two steps) kept from being renamed away or
    removed. Anything else there is another's and stays."""
    try:
        st, mine = os.lstat(name), os.fstat(fd)
    except OSError:
        return  # gone: renamed into place or removed, as it should be
    if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
        with contextlib.suppress(OSError):
            os.unlink(name)


# what says the filesystem (or the kernel) cannot make or link unnamed files at all
_UNSUPPORTED = (*NO_UNNAMED, errno.EXDEV, errno.EPERM, errno.ENOENT)


def _publish(fd: int, tmp: str | None, dpath: str) -> None:
    """Give the written file its final name, atomically replacing what was there."""
    if tmp is not None:
        os.replace(tmp, dpath)
        return
    try:
        _link_fd(fd, dpath)
        return
    except FileExistsError:
        pass
    # something is there: link under a temporary name, then rename over it
    ddir = os.path.dirname(dpath) or "."
    for _ in range(100):
        name = os.path.join(ddir, f".{os.path.basename(dpath)}.tmp-{token_hex(4)}")
        try:
            _link_fd(fd, name)
        except FileExistsError:
            continue  # another's name
        try:
            os.replace(name, dpath)
        finally:
            _drop_if_ours(fd, name)  # not renamed: a failure, or a stop signal's exception
        return
    raise FileExistsError(errno.EEXIST, "no free temporary name", dpath)


def _job_start() -> float:
    """When the running job (this process) started, in seconds since the epoch."""
    global _START
    if _START is None:
        _START = _process_start()
    return _START


def _process_start() -> float:
    """This process's start: its start in clock ticks after boot (field 22 of
    /proc/self/stat) plus the boot time (btime in /proc/stat), as psutil computes it.
    psutil (12 ms to import) is asked only where there is no /proc."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            # the fields after the command name, which is in parentheses and may itself
            # hold spaces and parentheses: field 22 is the 20th of them
            ticks = int(fh.read().rpartition(b")")[2].split()[19])
        with open("/proc/stat", "rb") as fh:
            btime = next(float(line.split()[1]) for line in fh if line.startswith(b"btime "))
        return float(ticks) / os.sysconf("SC_CLK_TCK") + btime
    except FileNotFoundError:
        pass
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - psutil missing, or it cannot tell either
        return _IMPORTED


_IMPORTED = time.time()
_START: float | None = None


def remove_stale_temporaries(dpath: str) -> list[str]:
    """Remove temporaries an earlier, killed transfer left beside ``dpath``.

    Only fluxlite's own names for this destination (``.NAME.tmp-XXXXXXXX``), only regular
    files of this user (never a link), and only when last written before this job started:
    a transfer of another job still under way keeps its file. Each directory is listed once
    per process. Returns what was removed.
    """
    ddir, base = os.path.split(os.path.abspath(dpath))
    with _swept_lock:
        found = _swept.get(ddir)
        if found is None:
            found = _swept[ddir] = _temporaries(ddir)
        candidates = found.pop(base, [])
    if not candidates:
        return []
    removed: list[str] = []
    start = _job_start()
    for path in candidates:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                or st.st_mtime >= start):
            continue
        try:
            os.unlink(path)
        except OSError:
            continue
        logger.info("removed %s, left over by an earlier transfer", path)
        removed.append(path)
    return removed


def _temporaries(ddir: str) -> dict[str, list[str]]:
    """Destination name -> paths in ddir named like fluxlite's temporaries for it."""
    out: dict[str, list[str]] = {}
    try:
        with os.scandir(ddir) as it:
            for e in it:
                m = _TEMP_NAME.fullmatch(e.name) if e.name.startswith(".") else None
                if m is not None:
                    out.setdefault(m.group("name"), []).append(e.path)
    except OSError:
        pass
    return out


# --------------------------------------------------------------------------- writing
_RESERVE_STEP = 64 * 1024 * 1024  # reserved ahead of the bytes that have arrived


def _check_room(size: int, ddir: str, url: str, req: Request, dpath: str,
                local: bool) -> None:
    """Fail before copying what cannot fit. A network source announcing more bytes than
    the destination has room for fails as a failure of that source: the next source (or
    a later attempt) may do better. A local file's size is known for sure: then the
    destination is at fault (and a further destination may be tried)."""
    try:
        st = os.statvfs(ddir)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if size <= free:
        return
    if local:
        raise StageError(f"cannot write {redact(dpath)}: {size} bytes do not fit in the "
                         f"{free} bytes free (no space left on device)", lfn=req.lfn,
                         permanent=True, destination=True)
    raise _SourceFailed(f"{redact(url)}: announces {size} bytes, more than the {free} bytes "
                        f"free in {ddir}", False)


class _LocalWriter:
    """Writes the bytes at their offsets: blocks reserved a bounded step ahead of what has
    arrived, and the holes of a sparse source left as holes."""

    def __init__(self, fd: int, req: Request, dpath: str, reserve: int | None,
                 extents: list[tuple[int, int]] | None) -> None:
        self.fd = fd
        self.req = req
        self.dpath = dpath
        self.reserve = reserve if reserve is not None and reserve >= _PREALLOCATE_MIN else 0
        self.reserved = 0
        self.pos = 0
        self.extents = extents
        self._starts = [b for b, _e in extents] if extents is not None else []

    def write(self, view: memoryview) -> None:
        n = len(view)
        if self.reserve and self.pos + n > self.reserved:
            upto = min(self.reserve, self.pos + n + _RESERVE_STEP)
            if upto > self.reserved:
                _preallocate(self.fd, self.reserved, upto - self.reserved, self.req,
                             self.dpath)
                self.reserved = upto
        if self.extents is None:
            _pwrite_all(self.fd, view, self.pos)
        else:
            self._write_data(view)
        self.pos += n

    def _write_data(self, view: memoryview) -> None:
        """Only the parts of the chunk that are data in the source; holes are skipped."""
        lo, hi = self.pos, self.pos + len(view)
        i = max(0, bisect.bisect_right(self._starts, lo) - 1)
        while i < len(self.extents):  # type: ignore[arg-type]
            b, e = self.extents[i]  # type: ignore[index]
            if b >= hi:
                break
            a, z = max(b, lo), min(e, hi)
            if a < z:
                _pwrite_all(self.fd, view[a - lo:z - lo], a)
            i += 1

    def finish(self, total: int) -> None:
        if self.extents is not None or self.reserved > total:
            try:
                os.ftruncate(self.fd, total)  # a trailing hole; no block reserved past the end
            except OSError as err:
                raise _DestinationWriteFailed(err.errno, err.strerror) from err


_PREALLOCATE_MIN = 8 * 1024 * 1024
_fallocate: Any = None  # libc's fallocate, or False where it cannot be had


def _preallocate(fd: int, offset: int, length: int, req: Request, dpath: str) -> None:
    """Reserve the next blocks of the destination in one call before writing them.

    Measured on ext4: a 1 GiB copy costs a third less kernel time. The reservation runs a
    bounded step ahead of the bytes that have arrived, never to a length a server merely
    announced. The raw fallocate(2) is used, not posix_fallocate(3): where the filesystem
    cannot reserve blocks, glibc's fallback would write zeros first, a second write of
    everything. Failing that way is harmless: we just write.
    """
    global _fallocate
    if _fallocate is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_long,
                                       ctypes.c_long)
            _fallocate = libc.fallocate
        except (OSError, AttributeError):
            _fallocate = False
    if not _fallocate:
        return
    if _fallocate(fd, 0, offset, length) != 0:
        import ctypes

        err = ctypes.get_errno()
        if err in (errno.ENOSPC, errno.EDQUOT):
            raise _dst_error(req, dpath, OSError(err, os.strerror(err)))


def _to_remote(reader: Reader, dst_backend: Backend, req: Request, res: TransferResult,
               att: Attempt, cancel: threading.Event) -> None:
    writer = dst_backend.open_write(req.dst, reader.size)
    ok = False
    try:
        h = hashlib.sha256()
        try:
            n, hsecs = pump(reader, writer.write, h, cancel)
        except OSError as err:
            # a remote writer raises StageError itself; an OSError here is the source's
            raise _SourceFailed(f"{att.src}: {err.strerror or err}", False) from err
        att.bytes = n
        if reader.size is not None and n != reader.size:
            raise _SourceFailed(f"{att.src}: got {n} bytes, expected {reader.size}", False)
        res.hash_seconds += hsecs
        digest = h.hexdigest()
        if req.expected and digest != req.expected:
            raise IntegrityError(req.lfn, req.expected, digest)
        writer.commit()
        ok = True
        res.bytes, res.sha256 = n, digest
        res.verified = True if req.expected else None
    finally:
        if not ok:
            writer.abort()


_UMASK: int | None = None


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return _UMASK


# Writes to a local destination are issued 64 KiB at a time, the size in which the kernel's
# own copy (copy_file_range, cp) writes. A larger write makes the page cache take 2 MiB
# folios, from free blocks of that order, which are the ones a virtual machine's balloon
# reports free to its host: each of their pages is then faulted in again by the host.
# Measured on a 2-core VM (1 GiB, 6 rounds): 4 MiB writes 1.1-2.7 s of kernel time, 64 KiB
# writes 0.5-0.6 s (32-128 KiB the same; 256 KiB already 0.9-2.0). Elsewhere the cost is
# 16k calls per GiB, some 10 ms.
WRITE_PIECE = 64 * 1024


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    try:
        while view:
            n = os.pwrite(fd, view[:WRITE_PIECE], offset)
            view = view[n:]
            offset += n
    except OSError as err:
        raise _DestinationWriteFailed(err.errno, err.strerror) from err


def _fsync_dir(path: str) -> None:
    try:
        dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


# A verified copy of a smaller source is one thread: read, hash, write, in turn. From this
# size on (and once this many bytes of a source of unknown size have arrived) a second
# thread hashes while the first one writes and reads on. Measured with
# scripts/bench/b5_threshold.py (TOP_MIB=256; file:// into ext4, 2 cores shared with other
# work at a load of 9-15, the benchmark's own share raised): the wall time per file of the
# pipeline over that of one thread, in three runs,
#   size      8 MiB  16 MiB  32 MiB  64 MiB  128 MiB  256 MiB
#   run 1     1.18   1.08    0.93    0.98    0.77     0.74
#   run 2     1.36   1.19    1.07    0.95    0.90     0.91
#   run 3     1.29   1.24    1.00    1.02    0.93     0.99
# Below 8 MiB the second thread only costs (1 MiB: 2-3x, 64 KiB: 6-8x, starting and
# joining it takes 1-2 ms here); it costs 5-25% more CPU at every size. Where the
# pipeline starts to win depends on how free the second core is: 32, 64 and 128 MiB in
# those runs; the middle one is taken.
PIPELINE_MIN = 64 * 1024 * 1024


def pump(reader: Reader, write, hasher, cancel: threading.Event) -> tuple[int, float]:  # noqa: ANN001
    """Copy reader to write() hashing on the way; return (bytes, seconds spent hashing).

    A source smaller than PIPELINE_MIN is copied by this thread alone, a small one with
    one buffer of its size. A larger one, or one of unknown size once more than that has
    arrived, is hashed by a second thread while this one writes it and reads what
    follows (``_pipeline``). hashlib, reads and writes release the GIL, so on two free
    cores the copy of a large file costs little more than the hash alone; for a small
    one, or in a process bound to one CPU, the second thread would cost more than the
    overlap saves.
    """
    size = reader.size
    if size is not None and size >= PIPELINE_MIN and _several_cpus():
        return _pipeline(reader, write, hasher, cancel)
    # A source of known small size gets a buffer of its size (one more byte, so that the
    # first read already finds the end), not one of CHUNK bytes: zero-filling 4 MiB costs
    # more than copying a small file.
    buf = bytearray(CHUNK if size is None or size >= CHUNK else size + 1)
    view = memoryview(buf)
    total = 0
    hsecs = 0.0
    while True:
        if cancel.is_set():
            raise Cancelled()
        n = _fill(reader, buf)
        if n == 0:
            break
        chunk = view[:n]
        write(chunk)
        h0 = time.perf_counter()
        hasher.update(chunk)
        hsecs += time.perf_counter() - h0
        total += n
        if n < len(buf):
            break  # _fill stops short only where the source ends
        if total >= PIPELINE_MIN and _several_cpus():
            # a large source of unknown size: the rest goes through the pipeline
            n2, h2 = _pipeline(reader, write, hasher, cancel, buf if len(buf) == CHUNK else None)
            return total + n2, hsecs + h2
    return total, hsecs


_CPUS: int | None = None


def _several_cpus() -> bool:
    """Whether the pipeline's threads can run at once: this process may use more than one
    CPU (a job bound to one core copies faster alone, with no hand-overs)."""
    global _CPUS
    if _CPUS is None:
        try:
            _CPUS = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            _CPUS = os.cpu_count() or 1
    return _CPUS > 1


def _pipeline(reader: Reader, write, hasher, cancel: threading.Event,  # noqa: ANN001
              spare: bytearray | None = None) -> tuple[int, float]:
    """Read and write in this thread while another one hashes, from where the source is
    now: the bytes of a buffer are hashed while they are written and the next ones read.

    Three buffers circulate (``spare``, a buffer of CHUNK bytes no longer used, is one of
    them); one is filled again only once its bytes are written and hashed. The hashing
    thread holds the GIL only to take a buffer and give it back, so the writes (many short
    calls) seldom wait for it.
    """
    import queue

    # a source of known smaller size gets buffers of its size (and one byte more)
    size = CHUNK if reader.size is None else min(CHUNK, reader.size + 1)
    free = [spare if spare is not None else bytearray(size), bytearray(size),
            bytearray(size)]
    todo: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
    hashed: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
    herr: list[BaseException] = []
    hsecs = [0.0]

    def hash_behind() -> None:
        while (item := todo.get()) is not None:
            b, got = item
            if not herr:
                try:
                    h0 = time.perf_counter()
                    hasher.update(memoryview(b)[:got])
                    hsecs[0] += time.perf_counter() - h0
                except BaseException as err:  # noqa: BLE001 - handed to the copying thread
                    herr.append(err)
            hashed.put(b)  # always given back: the copying thread may be waiting for it

    ht = threading.Thread(target=hash_behind, name="fluxlite-hasher", daemon=True)
    ht.start()
    total = 0
    try:
        while True:
            if cancel.is_set():
                raise Cancelled()
            b = free.pop() if free else hashed.get()
            if herr:
                raise herr[0]
            got = _fill(reader, b)
            if got == 0:
                break
            todo.put((b, got))
            write(memoryview(b)[:got])
            total += got
            if got < len(b):
                break  # _fill stops short only where the source ends
    finally:
        todo.put(None)
        ht.join()
    if herr:
        raise herr[0]
    return total, hsecs[0]


def _fill(reader: Reader, buf: bytearray) -> int:
    """Fill buf as far as the source allows (short reads are common on sockets)."""
    view = memoryview(buf)
    got = 0
    while got < len(buf):
        n = reader.readinto(view[got:])  # type: ignore[arg-type]
        if not n:
            break
        got += n
    return got
