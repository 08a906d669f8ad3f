"""file:// (and bare paths): read locally, write through the managed transfer."""

from __future__ import annotations

import os
import threading

from fluxlite.staging.base import Backend
from fluxlite.urls import local_path


class _FileReader:
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        st = os.fstat(self._fd)
        if not _is_regular(st.st_mode):
            os.close(self._fd)
            raise IsADirectoryError(21, "not a regular file", path)
        self.size: int | None = st.st_size
        try:  # sequential read-ahead
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except (AttributeError, OSError):
            pass

    def readinto(self, buf: bytearray) -> int:
        return os.readv(self._fd, [buf])

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)


class FileBackend(Backend):
    def local_path(self, url: str) -> str | None:
        return local_path(url)

    def open_read(self, url: str, *, tls_verify: bool = True, timeout: float = 60.0,
                  cancel: threading.Event | None = None) -> _FileReader:
        return _FileReader(local_path(url))
