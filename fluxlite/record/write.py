"""Writing a job's records where they go: standard output, or a file that a reader sees
whole or not at all (replaced at once, or appended to in one write), an earlier attempt's
record at the same place kept beside it."""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable

from fluxlite.record.model import Record

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)


def write_records(rec: Record, kickstart: str | None, json: str | None, *, stdout: Any,
                  append: bool, overwrite: bool, failed: Callable[[str], None]) -> list[str]:
    """Write the kickstart record to ``kickstart`` (appended to it with ``append``) and the
    JSON record to ``json`` (a path, "-" for ``stdout``, None: not written); the files
    written. A record that cannot be rendered or written is said to ``failed``, and the
    other is still written; an earlier record at a path is kept unless ``overwrite``."""
    written = []
    if kickstart:
        from fluxlite.record import kickstart as yaml_record

        if _emit_record("kickstart", kickstart, lambda: yaml_record.render(rec).encode(
                "utf-8", "backslashreplace"), stdout, append, overwrite, failed):
            written.append(kickstart)
    if json:
        from fluxlite.record import jsonrecord  # orjson: imported only when asked for

        if _emit_record("JSON", json, lambda: jsonrecord.render(rec), stdout, False,
                        overwrite, failed):
            written.append(json)
    return [w for w in written if w != "-"]


def _emit_record(kind: str, dest: str, render: Callable[[], bytes], stdout: Any, append: bool,
                 overwrite: bool, failed: Callable[[str], None]) -> bool:
    if not append and not overwrite and dest != "-":
        kept = keep_earlier(dest)
        if kept:
            logger.info("the earlier %s record is kept as %s", kind, kept)
    try:
        data = render()
    except Exception as err:  # noqa: BLE001 - the cleanup and the exit line must follow
        failed(f"cannot render the {kind} record: {type(err).__name__}: {err}")
        return False
    try:
        emit(dest, data, stdout, append=append)
    except OSError as err:
        failed(f"cannot write the {kind} record to {dest}: {err.strerror or err}")
        return False
    return True


def keep_earlier(dest: str) -> str | None:
    """Rename a non-empty regular file at dest to the first free dest.NNN (000 to 999), as
    pegasus-exitcode keeps the .out of each attempt; its new name, or None. A device, a FIFO
    or anything that is not a regular file is left alone."""
    import stat

    try:
        st = os.lstat(dest)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return None
    for i in range(1000):
        cand = f"{dest}.{i:03d}"
        if os.path.lexists(cand):
            continue
        try:
            os.link(dest, cand)  # never replaces: a concurrent rerun takes the next number
        except FileExistsError:
            continue
        except OSError as err:
            logger.warning("cannot keep the earlier record %s: %s", dest, err.strerror)
            return None
        return cand
    logger.warning("the earlier records of %s are not kept: %s.000 to .999 exist", dest, dest)
    return None


def emit(dest: str, data: bytes, stdout: Any, append: bool = False) -> None:
    """Write ``data`` to ``dest``: "-" is ``stdout`` (else fluxlite's), a path is replaced
    at once, or appended to with ``append``."""
    if dest == "-":
        if stdout is None and sys.stdout is None:  # started with its stdout closed
            raise OSError(errno.EBADF, "standard output is closed")
        out = stdout if stdout is not None else sys.stdout.buffer
        out.write(data)
        out.flush()
        return
    if append:
        # kickstart -l appends: several records may share one file (clustered jobs);
        # one write() with O_APPEND keeps concurrent writers' records whole
        # a FIFO without a reader is an error at once (ENXIO), not a wait
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK, 0o666)
        try:
            os.set_blocking(fd, True)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        return
    from fluxlite.fsutil import write_atomic

    # a reader sees the whole record or none (no fsync: the record is read after the job by
    # the submit host, and an fsync per job costs more than it buys)
    write_atomic(dest, data)
