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
