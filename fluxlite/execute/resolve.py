"""Where a task's executable is, or why it cannot be started: the one resolution that
``fluxlite validate``, ``fluxlite run`` and ``fluxlite kickstart`` share.

A name with a slash is the file it names; a bare name is looked up on a PATH. The file can
be started when it is a regular file this process may access as asked (execute; kickstart
asks read and execute, as pegasus-kickstart does). Each command words the answer its own
way: validate and run with :attr:`Resolved.problem`, kickstart with the errno.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Resolved:
    """An executable as resolved: the file it names, and why it cannot be started."""

    name: str  # as given
    path: str | None  # the file it names; None: a bare name not found on the PATH
    errno: int = 0  # 0: it can be started; else why not, as exec would say it
    exists: bool = True  # False: the file cannot be stat'ed

    @property
    def problem(self) -> str | None:
        """Why it cannot be started, in validate's and run's words (None: it can)."""
        if not self.errno:
            return None
        if self.path is None:
            return f"'{self.name}' not found on PATH"
        if not self.exists:
            return f"'{self.path}' does not exist"
        return f"'{self.path}' is not an executable file"


def in_workdir(exe: str, staged: Collection[str]) -> bool:
    """Whether the executable is a file of the worker directory (an lfn staged in, or a
    relative path with a slash), known only once stage-in is over."""
    return exe in staged or (not os.path.isabs(exe) and "/" in exe)


def _which(exe: str, path: str) -> str | None:
    import shutil  # a bare name only: shutil brings zlib, bz2 and lzma with it

    return shutil.which(exe, path=path)


def resolve(exe: str, path: str | None, access: int = os.X_OK) -> Resolved:
    """Resolve ``exe``: itself when it has a slash, else the first executable of that name
    on ``path`` (a PATH value; None: not looked up, a bare name is not found). It can be
    started when it is a regular file this process may ``access``."""
    found = exe if "/" in exe else (_which(exe, path) if path is not None else None)
    if found is None:
        return Resolved(exe, None, errno.ENOENT, exists=False)
    try:
        st = os.stat(found)
    except OSError as err:
        return Resolved(exe, found, err.errno or errno.ENOENT, exists=False)
    if not stat.S_ISREG(st.st_mode) or not os.access(found, access):
        return Resolved(exe, found, errno.EACCES)
    return Resolved(exe, found)
