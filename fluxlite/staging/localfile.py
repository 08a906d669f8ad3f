"""Local files opened for staging: regular files only, opened without waiting (a FIFO put
where a file was expected cannot block), holes of a sparse file kept, and the sources the
task left confined to the worker directory. The file:// backend reads through it, and so
does the managed transfer for a confined source."""

from __future__ import annotations

import errno
import os
import stat

from fluxlite.errors import StageError

# Past this many data extents a sparse file is copied as if it were dense.
MAX_EXTENTS = 65536
# A file no larger than the kernel's default read-ahead window (128 KiB) is read whole in
# one go anyway: no advice asked for it.
_READAHEAD = 128 * 1024


class FileReader:
    """A regular file, opened without waiting: a FIFO, a device or a socket put where a
    file was expected is refused at once instead of blocking the transfer."""

    def __init__(self, path: str, nofollow: bool = False) -> None:
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0)
        self._fd = os.open(path, flags)
        try:
            st = os.fstat(self._fd)
            if not stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, f"not a regular file ({kind(st.st_mode)})",
                                        path)
            os.set_blocking(self._fd, True)
        except BaseException:
            os.close(self._fd)
            raise
        self.size: int | None = st.st_size
        self.mode: int | None = stat.S_IMODE(st.st_mode)
        # the data extents of a sparse file, so that its holes stay holes in the copy
        self.extents: list[tuple[int, int]] | None = (
            _extents(self._fd, st.st_size) if st.st_blocks * 512 < st.st_size else None)
        if st.st_size > _READAHEAD:
            try:  # a larger read-ahead window
                os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            except (AttributeError, OSError):
                pass

    def readinto(self, buf: bytearray) -> int:
        """Read into ``buf``; the number of bytes read (0 at the end)."""
        return os.readv(self._fd, [buf])

    def close(self) -> None:
        """Close the file (again: nothing)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _extents(fd: int, size: int) -> list[tuple[int, int]] | None:
    """(start, end) of each data region, found with SEEK_DATA/SEEK_HOLE; None when the
    filesystem cannot tell or there are too many to be worth it."""
    if not hasattr(os, "SEEK_DATA"):
        return None
    out: list[tuple[int, int]] = []
    off = 0
    try:
        while off < size:
            try:
                start = os.lseek(fd, off, os.SEEK_DATA)
            except OSError as err:
                if err.errno == errno.ENXIO:  # only a hole from here to the end
                    break
                raise
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            out.append((start, end))
            if len(out) > MAX_EXTENTS:
                return None
            off = end
    except OSError:
        return None
    finally:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
        except OSError:
            pass
    return out


def kind(mode: int) -> str:
    """What a file is, in words, for messages."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISREG, "a regular file")):
        if test(mode):
            return name
    return "not a regular file"


def _inside(path: str, root: str) -> bool:
    root = os.path.realpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_local_source(path: str, root: str, lfn: str) -> bool:
    """Whether ``path`` (an output or checkpoint the task left in ``root``) can be staged.

    False: there is nothing there (a dangling link included). Raises StageError naming the
    lfn when it is something fluxlite refuses to copy: a symbolic link (anywhere on its
    path) that leads outside ``root``, a directory, a FIFO, a socket or a device. A link
    that stays inside ``root`` is followed. Nothing is opened, so a FIFO cannot block.
    """
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise StageError(f"{lfn}: cannot examine {path}: {err.strerror}", lfn=lfn,
                         permanent=True) from err
    real = os.path.realpath(path)
    if not _inside(real, root):
        raise StageError(f"{lfn}: refused: a symbolic link leading outside the worker "
                         "directory", lfn=lfn, permanent=True)
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise StageError(f"{lfn}: cannot examine {path}: {err.strerror}", lfn=lfn,
                         permanent=True) from err
    if not stat.S_ISREG(st.st_mode):
        raise StageError(f"{lfn}: refused: {kind(st.st_mode)}, not a regular file", lfn=lfn,
                         permanent=True)
    return True


def open_confined(path: str, root: str, lfn: str) -> FileReader:
    """Open a local source that must resolve inside ``root`` and be a regular file."""
    if not check_local_source(path, root, lfn):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
    # the resolved path, its last component not followed: a link swapped in since the
    # check is refused rather than followed
    return FileReader(os.path.realpath(path), nofollow=True)
