"""Small filesystem helpers shared by the record, .meta and transfer writers."""

from __future__ import annotations

import os


def write_atomic(path: str, data: bytes, *, fsync: bool = False, parents: bool = True) -> None:
    """Write ``data`` to ``path`` so that a reader sees the whole file or the old one.

    The data goes to a temporary name beside ``path`` and is renamed over it; on any error
    the temporary file is removed and the OSError is raised for the caller to word.
    ``parents``: create missing parent directories first.
    """
    if parents:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


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
