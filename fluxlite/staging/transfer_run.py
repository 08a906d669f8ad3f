"""A transfer list run as pegasus-transfer runs it (``fluxlite transfer``), and what it
leaves for Pegasus: the attempts as a ``transfer_attempts`` part in
``$PEGASUS_MULTIPART_DIR`` for pegasus-kickstart's record, the checksums of the transfers
marked ``generate_checksum`` in ``$KICKSTART_INTEGRITY_DATA``, and on request every attempt
as JSON. Its exit codes are pegasus-transfer's (0, or 1 when anything failed), and 71 when
the attempts could not be left where kickstart reads them.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fluxlite.errors import EXIT_FAILED, EXIT_INFRA, EXIT_OK
from fluxlite.redact import deep as redact_deep
from fluxlite.signals import STOP_SIGNALS, Handlers
from fluxlite.staging.base import Policy, TransferResult
from fluxlite.staging.transferlist import TransferList, run_list
from fluxlite.urls import local_path, redact, scheme_of

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Leave:
    """Where the outcome of a list goes besides the exit code (None: nowhere)."""

    multipart_dir: str | None = None  # the attempts, for pegasus-kickstart
    integrity_data: str | None = None  # the generated checksums, for pegasus-kickstart
    json_record: str | None = None  # every attempt as JSON ("-": standard output)


def run(plan: TransferList, policy: Policy, threads: int, leave: Leave,
        cancel: threading.Event, signalled: threading.Event,
        progress: Callable[[int], Any]) -> int:
    """Run a parsed list (``run_list``) and leave what pegasus-transfer leaves; the exit
    code: 0 when every entry worked, 1 when one did not (or the JSON record asked for
    cannot be written), 71 when every transfer worked but the attempts could not be
    written to the multipart directory."""
    t0 = time.time()
    out = run_list(plan, policy, threads, cancel, signalled, progress)
    results, stage_error, failed = out.results, out.error, out.failed
    done = sum(1 for r in results if r.success)
    logger.info("%d of %d transfers done, %d bytes, in %.3f s", done, len(plan.transfers),
                sum(r.bytes for r in results if r.success), time.time() - t0)
    lost = bool(leave.multipart_dir) and not write_multipart(leave.multipart_dir, results,
                                                              plan.labels)
    if leave.integrity_data and plan.checksum:
        checksums_for_kickstart(leave.integrity_data, plan, results)
    if leave.json_record:
        try:
            write_json(leave.json_record, results, stage_error, time.time() - t0)
        except OSError as err:
            # the attempts are what a caller asked for: not having them is a failure
            logger.error("cannot write the record %s: %s", leave.json_record,
                         err.strerror or err)
            failed += 1
    # every transfer worked but kickstart's record will not tell of them: not a success
    return EXIT_FAILED if failed else EXIT_INFRA if lost else EXIT_OK


def stop_handlers(cancel: threading.Event, signalled: threading.Event) -> Handlers:
    """A stop signal stops the transfers through the cancel event, so that partial files
    are removed and the attempts still written, instead of the default handler ending the
    process with temporary files left in the destinations."""
    def stop(signum: int) -> None:
        if not signalled.is_set():
            logger.error("%s received: stopping the transfers", signal.Signals(signum).name)
        signalled.set()
        cancel.set()

    return Handlers(STOP_SIGNALS, stop)


def write_multipart(directory: str, results: list[TransferResult],
                     labels: dict[str, tuple[dict[str, str], str]]) -> bool:
    """The ``- transfer_attempts:`` section pegasus-transfer leaves for pegasus-kickstart;
    False (said on stderr, nothing left there) when it cannot be written."""
    from fluxlite.record import multipart

    items = []
    for r in results:
        src_labels, dst_label = labels.get(r.lfn, ({}, ""))
        items += [{"src_url": json.dumps(redact(a.src)),
                   "src_label": json.dumps(src_labels.get(a.src, "")),
                   "dst_url": json.dumps(_as_url(redact(a.dst))),
                   "dst_label": json.dumps(dst_label), "success": str(a.success),
                   "start": f"{a.start:.0f}", "duration": f"{a.duration:.1f}",
                   "lfn": json.dumps(a.lfn), **({"bytes": str(a.bytes)} if a.bytes > 0 else {})}
                  for a in r.attempts]
    try:
        multipart.write_part(directory, "transfer", multipart.section("transfer_attempts",
                                                                      items))
    except OSError as err:
        logger.error("cannot write the attempts to %s: %s", directory, err.strerror or err)
        return False
    return True


def checksums_for_kickstart(side: str, plan: TransferList,
                             results: list[TransferResult]) -> None:
    """generate_checksum: the local end of each such transfer goes into kickstart's
    record (the destination, or for a stage-out the local source), as pegasus-transfer
    does through pegasus-integrity."""
    from fluxlite.pegasus.integrity import append_fullstat

    sources = {q.lfn: q.sources for q in plan.transfers}
    files = []
    for r in results:
        if not r.success or r.lfn not in plan.checksum:
            continue
        if "://" not in r.dst:
            files.append((r.lfn, r.dst, None if r.linked else r.sha256, r.hash_seconds))
        else:
            src = next((u for u, _ in sources.get(r.lfn, ()) if scheme_of(u) == "file"), None)
            if src is not None:
                files.append((r.lfn, local_path(src), r.sha256, r.hash_seconds))
    append_fullstat(side, files)


def _as_url(dst: str) -> str:
    return dst if "://" in dst else "file://" + dst


def write_json(dest: str, results: list[TransferResult], error: str | None,
                secs: float) -> None:
    """Every attempt, the error and the totals as JSON (credentials hidden) to ``dest``
    ("-": standard output), written whole or not at all."""
    import dataclasses

    doc: dict[str, Any] = {"transfers": [dataclasses.asdict(r) for r in results], "error": error,
           "duration": round(secs, 6), "succeeded": sum(1 for r in results if r.success),
           "failed": sum(1 for r in results if not r.success)}
    for t in doc["transfers"]:
        t["dst"] = redact(t["dst"])
        for a in t["attempts"]:
            a["src"], a["dst"] = redact(a["src"]), redact(a["dst"])
    data = json.dumps(redact_deep(doc), indent=1) + "\n"
    if dest == "-":
        sys.stdout.write(data)
        return
    from fluxlite.fsutil import write_atomic

    write_atomic(dest, data.encode("utf-8"), parents=False)
