"""The worker directory: chosen like PegasusLite does, created 0700, removed per policy."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from fluxlite.errors import WorkdirError
from fluxlite.fsutil import mkdtemp
from fluxlite.spec import WorkdirSpec

logger = logging.getLogger(__name__)

# PegasusLite's order (pegasus-lite-common.sh), after the spec's base and Flux's per-job tmp.
CANDIDATE_VARS = ("FLUX_JOB_TMPDIR", "PEGASUS_WN_TMP", "_CONDOR_SCRATCH_DIR", "OSG_WN_TMP",
                  "TG_NODE_SCRATCH", "TG_CLUSTER_SCRATCH", "SCRATCH", "TMPDIR", "TMP")


@dataclass(slots=True)
class Workdir:
    """A worker directory: where it is, the base it was made in, its free space."""

    path: str
    base: str
    free_mb: float
    tried: list[tuple[str, str]]  # (candidate, why it was passed over)
    # (st_dev, st_ino) of the directory fluxlite created; None: not fluxlite's to remove
    identity: tuple[int, int] | None = None

    def remove(self) -> bool:
        """Remove the directory fluxlite created, and only that one.

        The name must still be that very directory (same device and inode as when it was
        created), not a symbolic link or another directory put in its place; the removal
        works through the parent's descriptor and never follows a link. Returns whether
        it was removed.
        """
        if self.identity is None:
            logger.warning("worker directory %s: not created by fluxlite, not removed",
                           self.path)
            return False
        parent, name = os.path.split(self.path)
        try:
            pfd = os.open(parent or "/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            logger.warning("worker directory %s not removed: %s", self.path, err.strerror)
            return False
        try:
            failed: list[str] = []
            try:
                dfd = os.open(name, _DIR_FLAGS, dir_fd=pfd)
            except FileNotFoundError:
                return True
            except OSError as err:
                if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                    logger.warning("worker directory %s not removed: %s", self.path,
                                   err.strerror or err)
                    return False
                dfd = -1  # a link or a file is there now
            try:
                if dfd < 0 or _identity(os.fstat(dfd)) != self.identity:
                    logger.warning("worker directory %s not removed: it is no longer the "
                                   "directory fluxlite created", self.path)
                    return False
                _remove_contents(dfd, name, failed)
            finally:
                if dfd >= 0:
                    os.close(dfd)
            try:
                os.rmdir(name, dir_fd=pfd)
            except OSError as err:
                failed.append(f"{name}: {err.strerror or err}")
            if failed:
                logger.warning("worker directory %s not fully removed: %s", self.path,
                               failed[0])
                return False
            return True
        finally:
            os.close(pfd)


# a directory opened to be emptied: never through a symbolic link
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _remove_contents(dfd: int, path: str, failed: list[str]) -> None:
    """Remove everything in the directory open as ``dfd`` (``path``: its name in messages),
    depth first, by descriptor: a name that has become a link is removed as the link,
    never followed. What cannot be removed is noted in ``failed`` and the rest goes on.
    (shutil.rmtree's fd-based walk, without importing shutil: it brings zlib, bz2 and lzma,
    about 3 ms of every job's start.)"""
    try:
        with os.scandir(dfd) as it:
            entries = [(e.name, _is_dir(e)) for e in it]
    except OSError as err:
        failed.append(f"{path}: {err.strerror or err}")
        return
    for name, is_dir in entries:
        full = os.path.join(path, name)
        try:
            if not is_dir:
                os.unlink(name, dir_fd=dfd)
                continue
            sub = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        except OSError as err:
            failed.append(f"{full}: {err.strerror or err}")
            continue
        try:
            _remove_contents(sub, full, failed)
        finally:
            os.close(sub)
        try:
            os.rmdir(name, dir_fd=dfd)
        except OSError as err:
            failed.append(f"{full}: {err.strerror or err}")


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def candidates(spec: WorkdirSpec, env: Mapping[str, str] | None = None) -> list[str]:
    """The bases a worker directory may be made in, in PegasusLite's order."""
    if env is None:
        env = os.environ
    out: list[str] = []
    if spec.base:
        out.append(spec.base)
    for var in CANDIDATE_VARS:
        val = env.get(var)
        if val:
            out.append(val)
    out.append("/tmp")
    return list(dict.fromkeys(out))  # first occurrence of each, in order


def create(spec: WorkdirSpec, env: Mapping[str, str] | None = None) -> Workdir:
    """Create a unique 0700 directory in the first candidate that is writable and has room."""
    tried: list[tuple[str, str]] = []
    for base in candidates(spec, env):
        if not os.path.isdir(base):
            tried.append((base, "not a directory"))
            continue
        if not os.access(base, os.W_OK | os.X_OK):
            tried.append((base, "not writable"))
            continue
        try:
            st = os.statvfs(base)
        except OSError as err:
            tried.append((base, err.strerror or str(err)))
            continue
        free_mb = st.f_bavail * st.f_frsize / 1e6
        if free_mb < spec.min_free_mb:
            tried.append((base, f"{free_mb:.0f} MB free, {spec.min_free_mb:.0f} MB needed"))
            continue
        try:
            path = mkdtemp(base, "fluxlite.")  # mode 0700
        except OSError as err:
            tried.append((base, err.strerror or str(err)))
            continue
        for cand, why in tried:
            logger.debug("worker directory candidate %s passed over: %s", cand, why)
        return Workdir(os.path.realpath(path), base, free_mb, tried, _identity(os.lstat(path)))
    detail = "; ".join(f"{c}: {w}" for c, w in tried)
    raise WorkdirError(f"no usable worker directory ({detail})")
