"""The worker directory: chosen like PegasusLite does, created 0700, removed per policy."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

from fluxlite.errors import WorkdirError
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
            try:
                st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            except FileNotFoundError:
                return True
            if not stat.S_ISDIR(st.st_mode) or (st.st_dev, st.st_ino) != self.identity:
                logger.warning("worker directory %s not removed: it is no longer the "
                               "directory fluxlite created", self.path)
                return False
            failed: list[str] = []

            def note(_fn: object, p: str, exc: object) -> None:
                err = exc[1] if isinstance(exc, tuple) else exc  # onerror: exc_info
                why = err.strerror if isinstance(err, OSError) and err.strerror else err
                failed.append(f"{p}: {why}")

            if sys.version_info >= (3, 12):
                shutil.rmtree(name, dir_fd=pfd, onexc=note)
            else:
                shutil.rmtree(name, dir_fd=pfd, onerror=note)
            if failed:
                logger.warning("worker directory %s not fully removed: %s", self.path,
                               failed[0])
                return False
            return True
        finally:
            os.close(pfd)


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
            path = tempfile.mkdtemp(prefix="fluxlite.", dir=base)  # mode 0700
        except OSError as err:
            tried.append((base, err.strerror or str(err)))
            continue
        for cand, why in tried:
            logger.debug("worker directory candidate %s passed over: %s", cand, why)
        st_new = os.lstat(path)
        return Workdir(os.path.realpath(path), base, free_mb, tried,
                       (st_new.st_dev, st_new.st_ino))
    detail = "; ".join(f"{c}: {w}" for c, w in tried)
    raise WorkdirError(f"no usable worker directory ({detail})")
