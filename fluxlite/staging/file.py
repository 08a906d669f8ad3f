"""file:// (and bare paths): read locally, write through the managed transfer."""

from __future__ import annotations

import threading

from fluxlite.staging.base import Backend
from fluxlite.staging.localfile import FileReader, check_local_source
from fluxlite.urls import local_path

__all__ = ["FileBackend", "check_local_source"]


class FileBackend(Backend):
    """file:// URLs and local paths."""

    def local_path(self, url: str) -> str | None:
        """The local path a file URL names."""
        return local_path(url)

    def open_read(self, url: str, *, tls_verify: bool = True, timeout: float = 60.0,
                  cancel: threading.Event | None = None, min_rate: float = 0.0,
                  rate_window: float = 0.0) -> FileReader:
        """Open a local file for reading; anything but a regular file is refused at once."""
        return FileReader(local_path(url))
