"""symlink://: the file is on a filesystem the worker sees; link it instead of copying."""

from __future__ import annotations

from fluxlite.staging.file import FileBackend


class SymlinkBackend(FileBackend):
    """symlink:// URLs: a local file linked into the worker directory, never copied."""

    def link_only(self, url: str) -> bool:
        """Always: a symlink:// source is linked, never copied."""
        return True
