"""fluxlite transfer LIST.json: a stand-in for pegasus-transfer.

Reads pegasus-transfer's JSON list (transfer, mkdir and remove entries) from a file or
standard input, runs it with fluxlite's staging (parallel, verified copies, failover,
bounded retries) and exits 0 when everything worked, 1 otherwise, as pegasus-transfer does
(71 when every transfer worked but the attempts could not be written to the multipart
directory).
Attempts are written as YAML into ``$PEGASUS_MULTIPART_DIR`` (as pegasus-transfer does) and,
on request, as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from typing import Any

from fluxlite.errors import EXIT_FAILED, EXIT_INFRA, EXIT_OK, UsageError
from fluxlite.redact import deep as redact_deep
from fluxlite.signals import STOP_SIGNALS, Handlers
from fluxlite.staging.base import (
    DEFAULT_MIN_RATE,
    DEFAULT_RATE_WINDOW,
    Policy,
    TransferResult,
)
from fluxlite.staging.transferlist import (
    TransferList,
    TransferListError,
    load,
    parse_list,
    run_list,
)
from fluxlite.urls import local_path, redact, scheme_of

logger = logging.getLogger(__name__)



def add_arguments(p: argparse.ArgumentParser) -> None:
    """pegasus-transfer's options, and fluxlite's retry and record options."""
    p.add_argument("list", nargs="?", default=None, metavar="LIST.json",
                   help="the transfer list ('-' or absent: standard input)")
    p.add_argument("-f", "--file", dest="file", metavar="LIST.json",
                   help="the transfer list (pegasus-transfer's spelling)")
    p.add_argument("-n", "--threads", type=int, default=None,
                   help="parallel transfers (default: $PEGASUS_TRANSFER_THREADS, else "
                        "chosen from the machine)")
    p.add_argument("-m", "--max-attempts", type=int, default=3, dest="attempts",
                   help="rounds over every source of a file (default 3)")
    p.add_argument("--backoff", type=float, default=1.0,
                   help="first wait between rounds in seconds (default 1)")
    p.add_argument("--max-backoff", type=float, default=30.0,
                   help="longest wait between rounds in seconds (default 30)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds without progress before a network transfer is abandoned")
    p.add_argument("--min-rate", type=float, default=DEFAULT_MIN_RATE, metavar="BYTES/S",
                   help="an http(s) attempt moving fewer bytes per second than this over "
                        "--rate-window fails (default %(default)g; 0: no minimum)")
    p.add_argument("--rate-window", type=float, default=DEFAULT_RATE_WINDOW, metavar="S",
                   help="seconds over which --min-rate is measured (default %(default)g)")
    p.add_argument("-s", "--symlink", action="store_true",
                   help="symlink local sources instead of copying them")
    p.add_argument("--json", "--json-record", dest="json_record", metavar="PATH",
                   help="write every attempt as JSON to PATH ('-' for stdout)")
    p.add_argument("--multipart-dir", metavar="DIR",
                   default=os.environ.get("PEGASUS_MULTIPART_DIR"),
                   help="write the attempts as YAML there (default: $PEGASUS_MULTIPART_DIR)")
    p.add_argument("-d", "--debug", action="store_true", help="same as -v")


def _read(args: argparse.Namespace) -> Any:
    src = args.file or args.list or "-"
    try:
        if src == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(src, "rb") as fh:
                raw = fh.read()
    except OSError as err:
        raise TransferListError([f"cannot read {src}: {err.strerror}"]) from err
    return load(raw, "standard input" if src == "-" else src)


def main(args: argparse.Namespace) -> int:
    """Run the list; 0 when every entry worked, 1 otherwise (list problems included)."""
    if args.debug:
        logging.getLogger("fluxlite").setLevel(logging.DEBUG)
    plan = parse_list(_read(args), symlink=args.symlink)
    if plan.problems:
        raise TransferListError(plan.problems)
    bad = _bad_option(args)
    if bad:
        raise UsageError(bad)
    threads = args.threads
    if threads is None:
        env = os.environ.get("PEGASUS_TRANSFER_THREADS", "")
        threads = int(env) if env.isdigit() else 0
    policy = Policy(attempts=args.attempts, backoff=args.backoff,
                    max_backoff=args.max_backoff, timeout=args.timeout,
                    min_rate=args.min_rate, rate_window=args.rate_window)
    t0 = time.time()
    cancel, signalled = threading.Event(), threading.Event()
    with _on_signals(cancel, signalled):
        return _run(args, plan, policy, threads, cancel, signalled, t0)


# the bounds of the command line's numbers (the threads used are at most MAX_THREADS)
OPTION_BOUNDS: dict[str, tuple[str, float, float]] = {
    "threads": ("--threads", 0, 100000), "attempts": ("--max-attempts", 1, 1000),
    "backoff": ("--backoff", 0, 86400), "max_backoff": ("--max-backoff", 0, 86400),
    "timeout": ("--timeout", 0.001, 7 * 86400), "min_rate": ("--min-rate", 0, 1e12),
    "rate_window": ("--rate-window", 0.001, 7 * 86400)}


def _bad_option(args: argparse.Namespace) -> str | None:
    for dest, (flag, lo, hi) in OPTION_BOUNDS.items():
        v = getattr(args, dest)
        if v is not None and not (math.isfinite(v) and lo <= v <= hi):
            return f"{flag} must be a number from {lo:g} to {hi:g}, not {v}"
    return None


def _on_signals(cancel: threading.Event, signalled: threading.Event) -> Handlers:
    """A stop signal stops the transfers through the cancel event, so that partial files
    are removed and the attempts still written, instead of the default handler ending the
    process with temporary files left in the destinations."""
    def stop(signum: int) -> None:
        if not signalled.is_set():
            logger.error("%s received: stopping the transfers", signal.Signals(signum).name)
        signalled.set()
        cancel.set()

    return Handlers(STOP_SIGNALS, stop)


def _run(args: argparse.Namespace, plan: TransferList, policy: Policy, threads: int,
         cancel: threading.Event, signalled: threading.Event, t0: float) -> int:
    from fluxlite.progress import TransferProgress

    out = run_list(plan, policy, threads, cancel, signalled,
                   lambda n: TransferProgress("fluxlite transfer", n, threads))
    results, stage_error, failed = out.results, out.error, out.failed
    done = sum(1 for r in results if r.success)
    logger.info("%d of %d transfers done, %d bytes, in %.3f s", done, len(plan.transfers),
                sum(r.bytes for r in results if r.success), time.time() - t0)
    lost = bool(args.multipart_dir) and not _write_multipart(args.multipart_dir, results,
                                                              plan.labels)
    side = os.environ.get("KICKSTART_INTEGRITY_DATA")
    if side and plan.checksum:
        _checksums_for_kickstart(side, plan, results)
    if args.json_record:
        try:
            _write_json(args.json_record, results, stage_error, time.time() - t0)
        except OSError as err:
            # the attempts are what a caller asked for: not having them is a failure
            logger.error("cannot write the record %s: %s", args.json_record,
                         err.strerror or err)
            failed += 1
    # every transfer worked but kickstart's record will not tell of them: not a success
    return EXIT_FAILED if failed else EXIT_INFRA if lost else EXIT_OK


def _write_multipart(directory: str, results: list[TransferResult],
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


def _checksums_for_kickstart(side: str, plan: TransferList,
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


def _write_json(dest: str, results: list[TransferResult], error: str | None,
                secs: float) -> None:
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
