"""fluxlite transfer LIST.json: a stand-in for pegasus-transfer.

Reads pegasus-transfer's JSON list (transfer, mkdir and remove entries) from a file or
standard input, runs it with fluxlite's staging (parallel, verified copies, failover,
bounded retries) and exits 0 when everything worked, 1 otherwise, as pegasus-transfer does
(71 when every transfer worked but the attempts could not be written to the multipart
directory).
Attempts are written as YAML into ``$PEGASUS_MULTIPART_DIR`` (as pegasus-transfer does) and,
on request, as JSON (``fluxlite.staging.transfer_run``).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import threading

from fluxlite.errors import UsageError
from fluxlite.staging.base import DEFAULT_MIN_RATE, DEFAULT_RATE_WINDOW, Policy
from fluxlite.staging.transfer_run import Leave, run, stop_handlers
from fluxlite.staging.transferlist import TransferListError, parse_list, read


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


def main(args: argparse.Namespace) -> int:
    """Run the list; 0 when every entry worked, 1 otherwise (list problems included)."""
    from fluxlite.progress import TransferProgress

    if args.debug:
        logging.getLogger("fluxlite").setLevel(logging.DEBUG)
    plan = parse_list(read(args.file or args.list or "-"), symlink=args.symlink)
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
    leave = Leave(multipart_dir=args.multipart_dir, json_record=args.json_record,
                  integrity_data=os.environ.get("KICKSTART_INTEGRITY_DATA"))
    cancel, signalled = threading.Event(), threading.Event()
    with stop_handlers(cancel, signalled):
        return run(plan, policy, threads, leave, cancel, signalled,
                   lambda n: TransferProgress("fluxlite transfer", n, threads))


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
