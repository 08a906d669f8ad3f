"""fluxlite transfer LIST.json: a stand-in for pegasus-transfer.

Reads pegasus-transfer's JSON list (transfer, mkdir and remove entries) from a file or
standard input, runs it with fluxlite's staging (parallel, verified copies, failover,
bounded retries) and exits 0 when everything worked, 1 otherwise, as pegasus-transfer does.
Attempts are written as YAML into ``$PEGASUS_MULTIPART_DIR`` (as pegasus-transfer does) and,
on request, as JSON.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import math
import os
import random
import re
import shutil
import signal
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from fluxlite.errors import StageError
from fluxlite.redact import deep as redact_deep
from fluxlite.redact import text as redact_text
from fluxlite.signals import Handlers
from fluxlite.staging.base import (
    DEFAULT_MIN_RATE,
    DEFAULT_RATE_WINDOW,
    Policy,
    Request,
    TransferResult,
)
from fluxlite.urls import local_path, redact, scheme_of

logger = logging.getLogger(__name__)

_ENV_VAR = re.compile(r"\$\{?([a-zA-Z][a-zA-Z0-9_]+)\}?")  # as pegasus-transfer expands them


def add_arguments(p: argparse.ArgumentParser) -> None:
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


@dataclass
class TransferList:
    transfers: list[Request] = field(default_factory=list)
    # lfn -> (site label of each redacted source URL, site label of the destination)
    labels: dict[str, tuple[dict[str, str], str]] = field(default_factory=dict)
    mkdirs: list[str] = field(default_factory=list)
    removes: list[tuple[str, bool]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    checksum: set[str] = field(default_factory=set)  # lfns marked generate_checksum


def expand(url: str, empty_ok: bool = True) -> str:
    """A URL without a scheme is a file:// URL; $VARS expand in file and symlink paths.

    A variable that is not set is an error rather than an empty string: ``$PWD/f`` must
    never become ``/f``; with ``empty_ok`` false (the target of a remove), neither may a
    variable that is set but empty. A value is a path, so it is percent-encoded: a '#', '?'
    or '%' in a directory name must not end or change the URL's path when it is parsed.
    """
    from urllib.parse import quote

    if "://" not in url:
        url = "file://" + url
    if scheme_of(url) in ("file", "symlink"):
        def value(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise ValueError(f"${name} is not set")
            if not empty_ok and not os.environ[name].strip("/"):
                raise ValueError(f"${name} is {'empty' if not os.environ[name] else '/'}: "
                                 "refusing to remove what it would leave")
            return quote(os.environ[name], safe="/")

        url = _ENV_VAR.sub(value, url)
    return url


def parse_list(doc: Any, symlink: bool = False, rng: random.Random | None = None
               ) -> TransferList:
    """pegasus-transfer's JSON list as requests; every problem is kept with its path."""
    from fluxlite.staging import supported_schemes

    rng = rng or random.Random()  # noqa: S311 - priorities, not secrets
    out = TransferList()
    if not isinstance(doc, list):
        out.problems.append("the transfer list must be a JSON list")
        return out
    readable, writable = supported_schemes("stage-in"), supported_schemes("stage-out")
    out.problems += _infinite_numbers(doc, "")
    if out.problems:
        return out

    def url_of(x: Any, path: str, schemes: frozenset[str], removing: bool = False
               ) -> str | None:
        raw = x.get("url") if isinstance(x, dict) else None
        if not isinstance(raw, str) or not raw:
            out.problems.append(f"{path}.url: is required")
            return None
        try:
            url = expand(raw, empty_ok=not removing)
        except ValueError as err:
            out.problems.append(f"{path}.url: {err}")
            return None
        if "\x00" in url:
            out.problems.append(f"{path}.url: must not contain a NUL byte")
            return None
        scheme = scheme_of(url)
        if scheme not in schemes:
            out.problems.append(f"{path}.url: unsupported scheme '{scheme}'")
            return None
        if scheme in ("file", "symlink"):
            try:
                p = local_path(url)
            except ValueError as err:
                out.problems.append(f"{path}.url: {err}")
                return None
            if not p.startswith("/"):
                out.problems.append(f"{path}.url: '{redact(raw)}' must name an absolute path")
                return None
            try:
                os.fsencode(p)
            except UnicodeEncodeError:
                out.problems.append(f"{path}.url: is not a path the system can take")
                return None
            if "\x00" in p:  # %00
                out.problems.append(f"{path}.url: must not contain a NUL byte")
                return None
        return url

    for i, entry in enumerate(doc):
        path = f"[{i}]"
        if not isinstance(entry, dict):
            out.problems.append(f"{path}: must be an object")
            continue
        kind = entry.get("type", "transfer")
        if kind in ("mkdir", "remove"):
            target = entry.get("target")
            if not isinstance(target, dict):
                out.problems.append(f"{path}.target: is required")
                continue
            url = url_of(target, f"{path}.target", writable | {"symlink"},
                         removing=kind == "remove")
            if url is None:
                continue
            if kind == "mkdir":
                out.mkdirs.append(url)
            else:
                rec = target.get("recursive", entry.get("recursive", False))
                recursive = rec is True or str(rec).lower() == "true"
                why = refuse_remove(url, recursive)
                if why:
                    out.problems.append(f"{path}.target.url: {why}")
                    continue
                out.removes.append((url, recursive))
            continue
        if kind != "transfer":
            out.problems.append(f"{path}.type: unknown entry type '{kind}'")
            continue
        srcs = entry.get("src_urls")
        dsts = entry.get("dest_urls")
        if not isinstance(srcs, list) or not srcs:
            out.problems.append(f"{path}.src_urls: must be a non-empty list")
            continue
        if not isinstance(dsts, list) or not dsts:
            out.problems.append(f"{path}.dest_urls: must be a non-empty list")
            continue
        ranked: list[tuple[int, int, str, str, bool]] = []
        for j, s in enumerate(srcs):
            url = url_of(s, f"{path}.src_urls[{j}]", readable)
            if url is None:
                continue
            prio = s.get("priority")
            if prio is None:
                prio = rng.randint(1, 100)  # pegasus-transfer's rule for a missing priority
            elif not _whole(prio, PRIORITY_MIN, PRIORITY_MAX):
                out.problems.append(f"{path}.src_urls[{j}].priority: must be a whole number "
                                    f"from {PRIORITY_MIN} to {PRIORITY_MAX}")
                continue
            tls = s.get("tls_verify", True) is not False  # the per-URL opt-out of job.json
            ranked.append((-int(prio), j, url, str(s.get("site_label", "")), tls))
        dst_urls = []
        for j, d in enumerate(dsts):
            url = url_of(d, f"{path}.dest_urls[{j}]", writable | {"symlink"})
            if url is not None:
                dst_urls.append((url, str(d.get("site_label", ""))))
        if not ranked or len(dst_urls) != len(dsts) or len(ranked) != len(srcs):
            continue
        ranked.sort()
        link = symlink or scheme_of(dst_urls[0][0]) == "symlink"
        dests = [local_path(u) if scheme_of(u) in ("file", "symlink") else u
                 for u, _ in dst_urls]
        lfn = entry.get("lfn")
        if not isinstance(lfn, str) or not lfn:
            lfn = os.path.basename(dests[0].rstrip("/")) or f"transfer-{i}"
        out.transfers.append(Request(
            lfn=lfn, sources=tuple((r[2], r[4]) for r in ranked),
            dst=dests[0], fallback_dsts=tuple(dests[1:]),
            # a source that is not local is copied even when linking is asked for
            symlink=link, fsync=True))
        out.labels[lfn] = ({redact(r[2]): r[3] for r in ranked}, dst_urls[0][1])
        if str(entry.get("generate_checksum", "")).lower() == "true":
            out.checksum.add(lfn)
    return out


PRIORITY_MIN, PRIORITY_MAX = -(2**31), 2**31 - 1


def _whole(value: Any, lo: float, hi: float) -> bool:
    """A JSON number that is a whole number within [lo, hi] (NaN and infinities are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return False
    return lo <= value <= hi


def _key_path(path: str, key: str) -> str:
    """The path of an object's member, its key quoted when it is not a plain name (a key
    may hold any character, a line break too, and a message is one line)."""
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{json.dumps(key)}]"


def _infinite_numbers(x: Any, path: str) -> list[str]:
    """Where the list holds a number too large to be finite (JSON's 1e400 reads as inf)."""
    if isinstance(x, float) and not math.isfinite(x):
        return [f"{path or 'the list'}: must be a finite number"]
    if isinstance(x, dict):
        return [p for k, v in x.items() for p in _infinite_numbers(v, _key_path(path, k))]
    if isinstance(x, list):
        return [p for i, v in enumerate(x) for p in _infinite_numbers(v, f"{path}[{i}]")]
    return []


def _mount_points() -> list[str]:
    """Every mount point of this mount namespace (bind mounts included)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 4:
            # spaces, tabs, newlines and backslashes are written as octal escapes
            out.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4]))
    return out


def refuse_remove(url: str, recursive: bool) -> str | None:
    """Why removing this target must not be done, or None.

    Refused, as GNU rm refuses '/', before anything is touched: an empty path, the root,
    a mount point (a path on another device than its parent, or listed as mounted: bind
    mounts too), the current directory or one of its parents, and for a recursive remove
    any tree with a mount point inside it (the delete would cross into that filesystem).
    """
    if scheme_of(url) not in ("file", "symlink"):
        return None
    try:
        raw = local_path(url)
    except ValueError:
        return None
    if not raw.strip():
        return "refusing to remove an empty path"
    norm = os.path.normpath(raw)
    if norm == "/" or norm == "//":
        return "refusing to remove the root directory"
    # the directories leading to it resolved, the last component itself not followed:
    # removing a link removes the link
    parent = os.path.realpath(os.path.dirname(norm))
    target = os.path.join(parent, os.path.basename(norm))
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return None  # nothing there: nothing to refuse
    except OSError:
        return None  # the remove itself reports it
    if stat.S_ISLNK(st.st_mode):
        return None
    if target == "/":
        return "refusing to remove the root directory"
    try:
        pst = os.stat(parent)
    except OSError:
        pst = None
    mounts = _mount_points()
    if (pst is not None and pst.st_dev != st.st_dev) or target in mounts \
            or os.path.ismount(target):
        return f"refusing to remove the mount point {redact(target)}"
    cwd = os.path.realpath(os.getcwd())
    if cwd == target or cwd.startswith(target.rstrip("/") + "/"):
        return f"refusing to remove {redact(target)}: it is the current directory or one " \
               "of its parents"
    if recursive and stat.S_ISDIR(st.st_mode):
        inner = [m for m in mounts if m.startswith(target.rstrip("/") + "/")]
        if inner:
            return (f"refusing to remove {redact(target)}: the mount point "
                    f"{redact(inner[0])} is inside it")
    return None


def _mkdir(url: str) -> None:
    if scheme_of(url) in ("file", "symlink"):
        os.makedirs(local_path(url), exist_ok=True)
    # object stores have no directories: a key's prefix exists once the key does


def _remove(url: str, recursive: bool) -> None:
    scheme = scheme_of(url)
    if scheme in ("file", "symlink"):
        why = refuse_remove(url, recursive)  # again: the transfers ran in between
        if why:
            raise StageError(why, permanent=True)
        p = local_path(url)
        if os.path.isdir(p) and not os.path.islink(p):
            if recursive:
                shutil.rmtree(p)
            else:
                try:
                    os.rmdir(p)  # an empty directory needs no "recursive"
                except OSError as err:
                    if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        raise StageError("the directory is not empty (a directory with "
                                         'content needs "recursive": true)',
                                         permanent=True) from err
                    raise
        else:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass  # already gone is what was asked for
        return
    from fluxlite.staging import backend_for

    backend = backend_for(url)
    remove = getattr(backend, "remove", None)
    if remove is None:
        raise StageError(f"{redact(url)}: scheme '{scheme}' cannot remove", permanent=True)
    remove(url, recursive)


def _read(args: argparse.Namespace) -> Any:
    src = args.file or args.list or "-"
    name = "standard input" if src == "-" else src
    try:
        if src == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(src, "rb") as fh:
                raw = fh.read()
    except OSError as err:
        raise ValueError(f"cannot read {src}: {err.strerror}") from err
    if raw.lstrip().startswith(b"# src"):
        raise ValueError(f"{name}: the old '# src / # dst' text format is not supported; "
                         "use the JSON list")
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except RecursionError as err:
        raise ValueError(f"{name}: not a JSON transfer list: nested too deeply") from err
    except ValueError as err:
        raise ValueError(f"{name}: not a JSON transfer list: {err}") from err


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def main(args: argparse.Namespace) -> int:
    if args.debug:
        logging.getLogger("fluxlite").setLevel(logging.DEBUG)
    try:
        doc = _read(args)
    except ValueError as err:
        sys.stderr.write(redact_text(f"fluxlite: error: {err}") + "\n")
        return 1
    plan = parse_list(doc, symlink=args.symlink)
    for problem in plan.problems:
        sys.stderr.write(redact_text(f"fluxlite: error: {problem}") + "\n")
    if plan.problems:
        return 1
    bad = _bad_option(args)
    if bad:
        sys.stderr.write(f"fluxlite: error: {bad}\n")
        return 2
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
    """TERM, INT and HUP stop the transfers through the cancel event, so that partial
    files are removed and the attempts still written, instead of the default handler
    ending the process with temporary files left in the destinations."""
    def stop(signum: int) -> None:
        if not signalled.is_set():
            logger.error("%s received: stopping the transfers", signal.Signals(signum).name)
        signalled.set()
        cancel.set()

    return Handlers((signal.SIGTERM, signal.SIGINT, signal.SIGHUP), stop)


def _run(args: argparse.Namespace, plan: TransferList, policy: Policy, threads: int,
         cancel: threading.Event, signalled: threading.Event, t0: float) -> int:
    failed = 0
    for url in plan.mkdirs:
        try:
            _mkdir(url)
        except (OSError, StageError) as err:
            logger.error("mkdir %s: %s", redact(url), getattr(err, "strerror", None) or err)
            failed += 1
    results: list[TransferResult] = []
    stage_error: str | None = None
    if plan.transfers:
        from fluxlite.staging.phases import StageResult, run_transfers

        from fluxlite.progress import TransferProgress

        live = TransferProgress("fluxlite transfer", len(plan.transfers), threads)
        st: StageResult | None
        try:
            st = run_transfers("transfer", plan.transfers, policy, threads, cancel,
                               stop_on_error=False, on_progress=live)
        except StageError as err:
            st = getattr(err, "stage", None)
            stage_error = str(err)
        finally:
            live.close()
        if st is not None:
            results = st.results
        bad = [r for r in results if not r.success]
        failed += len(bad) + (len(plan.transfers) - len(results))
        for r in bad:
            logger.error("%s", r.error or f"{r.lfn}: failed")
        if stage_error and not bad:
            logger.error("%s", stage_error)
    if signalled.is_set():
        failed += 1  # stopped by a signal: what is left undone is not done
    for url, recursive in plan.removes if not signalled.is_set() else []:
        try:
            _remove(url, recursive)
        except (OSError, StageError) as err:
            logger.error("remove %s: %s", redact(url), getattr(err, "strerror", None) or err)
            failed += 1
    done = sum(1 for r in results if r.success)
    logger.info("%d of %d transfers done, %d bytes, in %.3f s", done, len(plan.transfers),
                sum(r.bytes for r in results if r.success), time.time() - t0)
    if args.multipart_dir:
        _write_multipart(args.multipart_dir, results, plan.labels)
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
    return 1 if failed else 0


def _write_multipart(directory: str, results: list[TransferResult],
                     labels: dict[str, tuple[dict[str, str], str]]) -> None:
    """The ``- transfer_attempts:`` section pegasus-transfer leaves for pegasus-kickstart."""
    lines = ["- transfer_attempts:"]
    for r in results:
        src_labels, dst_label = labels.get(r.lfn, ({}, ""))
        for a in r.attempts:
            src_label = src_labels.get(a.src, "")
            lines += [f"  - src_url: {json.dumps(redact(a.src))}",
                      f"    src_label: {json.dumps(src_label)}",
                      f"    dst_url: {json.dumps(_as_url(redact(a.dst)))}",
                      f"    dst_label: {json.dumps(dst_label)}",
                      f"    success: {a.success}",
                      f"    start: {a.start:.0f}",
                      f"    duration: {a.duration:.1f}",
                      f"    lfn: {json.dumps(a.lfn)}"]
            if a.bytes > 0:
                lines.append(f"    bytes: {a.bytes}")
    try:
        os.makedirs(directory, exist_ok=True)
        base = os.path.join(directory, f"{int(time.time())}-transfer")
        path, k = base, 0
        while os.path.exists(path):  # two runs in one second must not overwrite each other
            k += 1
            path = f"{base}-{k}"
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
    except OSError as err:
        logger.error("cannot write the attempts to %s: %s", directory, err.strerror)


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
