"""What a job stages, as transfer requests: its description read into the requests of each
staging phase, for the runner to run.

Functions of the job and its worker directory only: the retry policy, the checksums its
.meta files give, the inputs and checkpoints to bring in, and the checkpoints and outputs to
send out (those two look at what the task left in the worker directory, and refuse what
must not leave it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from fluxlite.errors import SpecError, StageError
from fluxlite.integrity import Verification, verify
from fluxlite.staging.base import Policy, Request
from fluxlite.staging.file import check_local_source
from fluxlite.urls import file_url

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from fluxlite.spec import InputFile, JobSpec
    from fluxlite.staging.phases import StageResult

logger = logging.getLogger(__name__)


def policy(spec: JobSpec) -> Policy:
    """The retries, backoff, timeouts and minimum rate of the job's transfers."""
    s = spec.staging
    return Policy(attempts=s.attempts, backoff=s.backoff, max_backoff=s.max_backoff,
                  timeout=s.timeout, min_rate=s.min_rate, rate_window=s.rate_window)


def expected_hashes(spec: JobSpec) -> dict[str, str]:
    """The sha256 of each lfn that the job's .meta files give (SpecError when one cannot be
    read)."""
    if not spec.meta:
        return {}
    from fluxlite.meta import read_meta_files

    return read_meta_files(spec.meta)


def staged_inputs(spec: JobSpec) -> list[InputFile]:
    """The files stage-in brings: the inputs, and the executable when it is staged."""
    files = list(spec.inputs)
    if spec.staged_executable is not None:
        files.append(spec.staged_executable)
    return files


def unverified(spec: JobSpec, expected: dict[str, str]) -> list[str]:
    """The lfns of the staged inputs that no checksum covers, neither the job's nor its
    .meta files'."""
    return [f.lfn for f in staged_inputs(spec) if not (f.sha256 or expected.get(f.lfn))]


def check_unverified(spec: JobSpec, missing: list[str]) -> None:
    """Inputs no checksum covers: refused (SpecError) when the job's integrity is
    "required" (validate and run refuse them earlier where they can), else logged."""
    if not missing:
        return
    if spec.integrity == "required":
        raise SpecError([f"integrity \"required\": no checksum for {', '.join(missing)}"])
    logger.log(logging.WARNING if spec.meta else logging.INFO,
               "not verified (no sha256 in the job%s): %s",
               " or its meta files" if spec.meta else "", ", ".join(missing))


def verifications(st: StageResult) -> list[Verification]:
    """The checks of the files a phase staged against the checksums they were expected to
    have."""
    return [verify(r.lfn, r.expected, r.sha256 or "", r.hash_seconds) for r in st.results
            if r.expected]


def input_requests(spec: JobSpec, workdir: str, expected: dict[str, str]) -> list[Request]:
    """Stage-in: each input (and the staged executable) into the worker directory, checked
    against its sha256 (the job's, else the .meta files' in ``expected``)."""
    exe = spec.staged_executable
    return [Request(
        lfn=f.lfn, sources=tuple((s.url, s.tls_verify) for s in f.sources),
        dst=os.path.join(workdir, f.lfn), expected=f.sha256 or expected.get(f.lfn),
        # the file the task runs is made executable, as Pegasus does
        executable=f.executable or f is exe or f.lfn == spec.executable, symlink=f.symlink,
        optional=f.optional) for f in staged_inputs(spec)]


def checkpoint_requests(spec: JobSpec, workdir: str) -> list[Request]:
    """Checkpoint stage-in: each checkpoint of an earlier attempt, where there is one."""
    return [Request(lfn=c.lfn, sources=((c.url, True),), dst=os.path.join(workdir, c.lfn),
                    optional=True) for c in spec.checkpoints]


def checkpoint_out_requests(spec: JobSpec, workdir: str
                            ) -> tuple[list[Request], StageError | None]:
    """Checkpoint stage-out: each checkpoint the task left, and the first refusal of one
    that must not leave (a link leading out of the worker directory, a FIFO, ...)."""
    reqs: list[Request] = []
    refused: StageError | None = None
    for c in spec.checkpoints:
        src = os.path.join(workdir, c.lfn)
        try:
            if check_local_source(src, workdir, c.lfn):
                reqs.append(Request(lfn=c.lfn, sources=((file_url(src), True),), dst=c.url,
                                    fsync=True, confine=workdir))
        except StageError as err:
            refused = refused or err
    return reqs, refused


@dataclass(slots=True)
class Outputs:
    """Stage-out of the outputs: the requests, the outputs found (lfn, path), the required
    ones the task did not produce, and the first refusal of one that must not leave."""

    requests: list[Request] = field(default_factory=list)
    found: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    refused: StageError | None = None


def output_requests(spec: JobSpec, workdir: str) -> Outputs:
    """Stage-out: each output the task left, to its first URL (the others its fallbacks)."""
    out = Outputs()
    for o in spec.outputs:
        src = os.path.join(workdir, o.lfn)
        try:
            present = check_local_source(src, workdir, o.lfn)
        except StageError as err:  # a link leading out, a FIFO, a directory: refused
            out.refused = out.refused or err
            continue
        if not present:
            if not o.optional:
                out.missing.append(o.lfn)
            continue
        out.found.append((o.lfn, src))
        out.requests.append(Request(lfn=o.lfn, sources=((file_url(src), True),),
                                    dst=o.urls[0], fallback_dsts=tuple(o.urls[1:]),
                                    fsync=True, confine=workdir))
    return out
