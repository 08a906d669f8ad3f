"""Small filesystem helpers shared by the record, .meta and transfer writers.

Temporary names are made here rather than by ``secrets`` and ``tempfile``: those import
hmac, base64, random and shutil (with bz2 and lzma), several milliseconds that every job
would pay for eight random characters.
"""

from __future__ import annotations

import errno
import os
import stat

# tempfile's alphabet and length for the random part of a name
_TEMP_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"
_TEMP_TRIES = 10000  # tempfile.TMP_MAX

#: open(2)'s flag for a file with no name in a directory (0 where the system has none)
O_TMPFILE = getattr(os, "O_TMPFILE", 0)
#: what an open with O_TMPFILE fails with where the filesystem (or the kernel) makes no
#: unnamed files; anything else is the directory's own trouble
NO_UNNAMED = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOSYS)


def tmpdir() -> str:
    """Where temporary files go: $TMPDIR, else /tmp (``tempfile.gettempdir``'s first
    choices)."""
    return os.environ.get("TMPDIR") or "/tmp"


def token_hex(nbytes: int) -> str:
    """``nbytes`` random bytes from the system's source, as hex (``secrets.token_hex``)."""
    return os.urandom(nbytes).hex()


def _temp_chars() -> str:
    """8 random characters of tempfile's alphabet."""
    n = int.from_bytes(os.urandom(8))  # 2**64 values: 37**8 of them map evenly enough
    out = []
    for _ in range(8):
        n, i = divmod(n, len(_TEMP_CHARS))
        out.append(_TEMP_CHARS[i])
    return "".join(out)


def mkstemp(directory: str, prefix: str) -> tuple[int, str]:
    """A new file ``PREFIX`` + 8 random characters in ``directory``, made 0600 by this call
    alone (O_EXCL, no link followed), open for reading and writing: (fd, absolute path).
    ``tempfile.mkstemp(prefix=prefix, dir=directory)``."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(_TEMP_TRIES):
        path = os.path.join(directory, prefix + _temp_chars())
        try:
            return os.open(path, flags, 0o600), os.path.abspath(path)
        except FileExistsError:
            continue  # another's name
    raise FileExistsError(errno.EEXIST, "no usable temporary file name found")


def mkdtemp(directory: str, prefix: str) -> str:
    """A new 0700 directory ``PREFIX`` + 8 random characters in ``directory``, made by this
    call alone: its absolute path. ``tempfile.mkdtemp(prefix=prefix, dir=directory)``."""
    for _ in range(_TEMP_TRIES):
        path = os.path.join(directory, prefix + _temp_chars())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return os.path.abspath(path)
    raise FileExistsError(errno.EEXIST, "no usable temporary directory name found")


def read_tail(fd: int, limit: int, st: os.stat_result | None = None
              ) -> tuple[bytes, bool, int]:
    """The last ``limit`` bytes of the file open at ``fd`` (0: none; ``st`` its fstat, when
    the caller has it): (data, whether that is less than all of it, its size)."""
    size = (os.fstat(fd) if st is None else st).st_size
    if limit and size > limit:
        return os.pread(fd, limit, size - limit), True, size
    if limit == 0:
        return b"", size > 0, size
    return (os.pread(fd, size, 0) if size else b""), False, size


def unlink_quietly(path: str) -> None:
    """Remove a file fluxlite made, if it is still there (a failure is of no consequence)."""
    try:
        os.unlink(path)
    except OSError:
        pass


def write_atomic(path: str, data: bytes, *, fsync: bool = False, parents: bool = True) -> None:
    """Write ``data`` to ``path`` so that a reader sees the whole file or the old one.

    The data goes to a new temporary name beside ``path`` and is renamed over it; on any
    error the temporary file is removed and the OSError is raised for the caller to word.
    A ``path`` that exists and is not a regular file (``/dev/null``, a FIFO, a terminal) is
    never replaced: the data is written into it. A FIFO without a reader is an error
    (ENXIO) rather than a wait. ``parents``: create missing parent directories first.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        write_in_place(path, data)
        return
    if parents:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}-{token_hex(4)}"
    # a name of our own: never a link or a file someone put there
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o666)
    try:
        _write_fd(fd, data)
        if fsync:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except OSError:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_in_place(path: str, data: bytes) -> None:
    """Write into an existing non-regular file (a device, a FIFO) without waiting for it to
    be opened by a reader and without truncating or replacing it."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    try:
        os.set_blocking(fd, True)
        _write_fd(fd, data)
    finally:
        os.close(fd)


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_small_file(path: str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, read without blocking on a
    FIFO or a device (a job file or a .meta file named ``/dev/zero`` must not hang). Raises
    OSError for a file that cannot be read, ValueError for one that is not regular or is
    too large."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file")
        if st.st_size > limit:
            raise ValueError(f"larger than {limit // (1 << 20)} MiB")
        chunks = []
        total = 0
        while chunk := os.read(fd, 1 << 20):
            total += len(chunk)
            if total > limit:
                raise ValueError(f"larger than {limit // (1 << 20)} MiB")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
