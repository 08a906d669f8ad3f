"""The worker directory: chosen like PegasusLite does, created 0700, removed per policy."""

from __future__ import annotations

import logging
import os
import shutil
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
    path: str
    base: str
    free_mb: float
    tried: list[tuple[str, str]]  # (candidate, why it was passed over)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def candidates(spec: WorkdirSpec, env: Mapping[str, str] | None = None) -> list[str]:
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
        return Workdir(os.path.realpath(path), base, free_mb, tried)
    detail = "; ".join(f"{c}: {w}" for c, w in tried)
    raise WorkdirError(f"no usable worker directory ({detail})")
