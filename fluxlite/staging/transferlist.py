"""pegasus-transfer's JSON transfer list: parsing it into requests, and its mkdir and
remove entries with the checks that keep a remove from reaching what it must not."""

from __future__ import annotations

import errno
import logging
import json
import math
import os
import random
import re
import shutil
import stat
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from fluxlite.errors import EXIT_FAILED, SpecError, StageError
from fluxlite.staging.base import Policy, Request, TransferResult
from fluxlite.urls import local_path, redact, scheme_of
from fluxlite.numbers import check_number

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)

_ENV_VAR = re.compile(r"\$\{?([a-zA-Z][a-zA-Z0-9_]+)\}?")  # as pegasus-transfer expands them


class TransferListError(SpecError):
    """A transfer list that cannot be read or used; pegasus-transfer exits 1 for it."""

    exit_code = EXIT_FAILED


def read(src: str) -> Any:
    """The JSON document of the transfer list at ``src`` (a path, or "-": standard input)."""
    try:
        if src == "-":
            raw = sys.stdin.buffer.read()
        else:
            with open(src, "rb") as fh:
                raw = fh.read()
    except OSError as err:
        raise TransferListError([f"cannot read {src}: {err.strerror}"]) from err
    return load(raw, "standard input" if src == "-" else src)


def load(raw: bytes, name: str) -> Any:
    """The JSON document of a transfer list read from ``name`` (a file or standard input)."""
    if raw.lstrip().startswith(b"# src"):
        raise TransferListError([f"{name}: the old '# src / # dst' text format is not "
                                 "supported; use the JSON list"])
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except RecursionError as err:
        raise TransferListError([f"{name}: not a JSON transfer list: nested too deeply"]
                                ) from err
    except ValueError as err:
        raise TransferListError([f"{name}: not a JSON transfer list: {err}"]) from err


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


@dataclass
class TransferList:
    """A parsed list: the transfers as requests, the directories to make, the paths to
    remove, and every problem found, each with its JSON path."""

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
    out.problems += _infinite_numbers(doc, "")
    if out.problems:
        return out
    schemes = _Schemes(supported_schemes("stage-in"),
                       supported_schemes("stage-out") | {"symlink"})
    for i, entry in enumerate(doc):
        path = f"[{i}]"
        if not isinstance(entry, dict):
            out.problems.append(f"{path}: must be an object")
            continue
        kind = entry.get("type", "transfer")
        if kind in ("mkdir", "remove"):
            _target_entry(out, entry, path, kind, schemes.write)
        elif kind == "transfer":
            _transfer_entry(out, entry, i, schemes, symlink, rng)
        else:
            out.problems.append(f"{path}.type: unknown entry type '{kind}'")
    return out


@dataclass(frozen=True, slots=True)
class _Schemes:
    read: frozenset[str]  # of a source
    write: frozenset[str]  # of a destination or a target (symlink:// included)


def _target_entry(out: TransferList, entry: dict[str, Any], path: str, kind: str,
                  schemes: frozenset[str]) -> None:
    """A mkdir or remove entry: its target, and for a remove the checks of refuse_remove."""
    target = entry.get("target")
    if not isinstance(target, dict):
        out.problems.append(f"{path}.target: is required")
        return
    url = _entry_url(out.problems, target, f"{path}.target", schemes,
                     removing=kind == "remove")
    if url is None:
        return
    if kind == "mkdir":
        out.mkdirs.append(url)
        return
    rec = target.get("recursive", entry.get("recursive", False))
    recursive = rec is True or str(rec).lower() == "true"
    why = refuse_remove(url, recursive)
    if why:
        out.problems.append(f"{path}.target.url: {why}")
        return
    out.removes.append((url, recursive))


def _transfer_entry(out: TransferList, entry: dict[str, Any], i: int, schemes: _Schemes,
                    symlink: bool, rng: random.Random) -> None:
    """A transfer entry as a request: its sources by priority, its destinations in order."""
    path = f"[{i}]"
    srcs = entry.get("src_urls")
    dsts = entry.get("dest_urls")
    if not isinstance(srcs, list) or not srcs:
        out.problems.append(f"{path}.src_urls: must be a non-empty list")
        return
    if not isinstance(dsts, list) or not dsts:
        out.problems.append(f"{path}.dest_urls: must be a non-empty list")
        return
    ranked = _ranked_sources(out.problems, srcs, path, schemes.read, rng)
    dst_urls = []
    for j, d in enumerate(dsts):
        url = _entry_url(out.problems, d, f"{path}.dest_urls[{j}]", schemes.write)
        if url is not None:
            dst_urls.append((url, str(d.get("site_label", ""))))
    if not ranked or len(dst_urls) != len(dsts) or len(ranked) != len(srcs):
        return
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


def _ranked_sources(problems: list[str], srcs: list[Any], path: str,
                    schemes: frozenset[str], rng: random.Random
                    ) -> list[tuple[int, int, str, str, bool]]:
    """The usable sources, highest priority first (then in list order), each as
    (-priority, index, url, site label, tls_verify)."""
    ranked: list[tuple[int, int, str, str, bool]] = []
    for j, s in enumerate(srcs):
        url = _entry_url(problems, s, f"{path}.src_urls[{j}]", schemes)
        if url is None:
            continue
        prio = s.get("priority")
        if prio is None:
            prio = rng.randint(1, 100)  # pegasus-transfer's rule for a missing priority
        elif check_number(prio, minimum=PRIORITY_MIN, maximum=PRIORITY_MAX,
                          integer=True) is not None:
            problems.append(f"{path}.src_urls[{j}].priority: must be a whole number "
                            f"from {PRIORITY_MIN} to {PRIORITY_MAX}")
            continue
        tls = s.get("tls_verify", True) is not False  # the per-URL opt-out of job.json
        ranked.append((-int(prio), j, url, str(s.get("site_label", "")), tls))
    ranked.sort()
    return ranked


def _entry_url(problems: list[str], x: Any, path: str, schemes: frozenset[str],
               removing: bool = False) -> str | None:
    """The expanded URL of an entry's ``url``, or None with the problem kept."""
    raw = x.get("url") if isinstance(x, dict) else None
    if not isinstance(raw, str) or not raw:
        problems.append(f"{path}.url: is required")
        return None
    try:
        url = expand(raw, empty_ok=not removing)
    except ValueError as err:
        problems.append(f"{path}.url: {err}")
        return None
    if "\x00" in url:
        problems.append(f"{path}.url: must not contain a NUL byte")
        return None
    scheme = scheme_of(url)
    if scheme not in schemes:
        problems.append(f"{path}.url: unsupported scheme '{scheme}'")
        return None
    if scheme in ("file", "symlink"):
        why = _local_problem(url, raw)
        if why:
            problems.append(f"{path}.url: {why}")
            return None
    return url


def _local_problem(url: str, raw: str) -> str | None:
    """Why a file:// or symlink:// URL names no usable local path, or None."""
    try:
        p = local_path(url)
    except ValueError as err:
        return str(err)
    if not p.startswith("/"):
        return f"'{redact(raw)}' must name an absolute path"
    try:
        os.fsencode(p)
    except UnicodeEncodeError:
        return "is not a path the system can take"
    if "\x00" in p:  # %00
        return "must not contain a NUL byte"
    return None


PRIORITY_MIN, PRIORITY_MAX = -(2**31), 2**31 - 1


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


def mkdir(url: str) -> None:
    """Make a local directory (and its parents); object stores need none."""
    if scheme_of(url) in ("file", "symlink"):
        os.makedirs(local_path(url), exist_ok=True)
    # object stores have no directories: a key's prefix exists once the key does


def remove(url: str, recursive: bool) -> None:
    """Remove what a remove entry names, after the safety checks of refuse_remove."""
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


@dataclass
class ListOutcome:
    """What running a list did: each file's result, how many entries failed, and the
    error that ended the transfers, if one did."""

    results: list[TransferResult]
    failed: int
    error: str | None


def _reason(err: OSError | StageError) -> str:
    return (err.strerror if isinstance(err, OSError) else None) or str(err)


def run_list(plan: TransferList, policy: Policy, threads: int, cancel: threading.Event,
             signalled: threading.Event, progress: Callable[[int], Any]) -> ListOutcome:
    """Make the directories, run the transfers, then the removes (none once ``signalled``:
    what is left undone is not done); every failure is logged and counted.
    ``progress(n)`` gives the observer of n transfers (``run_transfers``'s on_progress,
    closed when they end)."""
    failed = 0
    for url in plan.mkdirs:
        try:
            mkdir(url)
        except (OSError, StageError) as err:
            logger.error("mkdir %s: %s", redact(url), _reason(err))
            failed += 1
    results: list[TransferResult] = []
    stage_error: str | None = None
    if plan.transfers:
        from fluxlite.staging.phases import StageResult, run_transfers

        live = progress(len(plan.transfers))
        st: StageResult | None
        try:
            st = run_transfers("transfer", plan.transfers, policy, threads, cancel,
                               stop_on_error=False, on_progress=live)
        except StageError as err:
            st = err.stage
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
            remove(url, recursive)
        except (OSError, StageError) as err:
            logger.error("remove %s: %s", redact(url), _reason(err))
            failed += 1
    return ListOutcome(results, failed, stage_error)
