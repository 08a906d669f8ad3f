"""pegasus-integrity's work: verify files against the ``*.meta`` checksums of the current
directory, or generate checksums in the forms kickstart and PegasusLite read
(:func:`run_verify`, :func:`run_generate`: what ``fluxlite integrity`` runs).

Hashing is fluxlite's (``fluxlite.integrity.file_sha256``: large reads, one pass, hashlib
releasing the GIL), and several files are hashed at once, one thread each.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass

from fluxlite.errors import EXIT_FAILED, EXIT_OK, SpecError
from fluxlite.integrity import file_sha256
from fluxlite.record import multipart
from fluxlite.record.host import group_name, iso, user_name
from fluxlite.record.kickstart import q

logger = logging.getLogger(__name__)

SEPARATOR = ";;;"  # Pegasus >= 5.1; 5.0 separated the entries with ':'
MAX_THREADS = 4


@dataclass(slots=True)
class Check:
    """One file to verify or hash: its expected and actual sha256, timing, error."""

    lfn: str
    pfn: str
    expected: str | None = None
    actual: str | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the file's sha256 is the one expected."""
        return self.expected is not None and self.actual == self.expected


def split_entries(text: str, known: Iterable[str] = ()) -> list[tuple[str | None, str]]:
    """``lfn=pfn`` entries of a list as Pegasus 5.1 (``;;;``) or 5.0 (``:``) writes it.

    ``;;;`` always separates. An entry without one that holds a ``:`` is split on ``:`` (the
    5.0 form) unless it is itself an lfn of the metadata or an existing file, so that a
    name with a colon in a 5.1 list stays whole. Empty entries are skipped.
    """
    known = set(known)
    out: list[tuple[str | None, str]] = []
    for chunk in text.strip().split(SEPARATOR):
        for line in chunk.splitlines():
            line = line.strip()
            if not line:
                continue
            whole = _entry(line)
            if ":" in line and (whole[0] or whole[1]) not in known \
                    and not os.path.exists(whole[1]):
                out += [_entry(p) for p in line.split(":") if p.strip()]
            else:
                out.append(whole)
    return out


def _entry(text: str) -> tuple[str | None, str]:
    lfn, sep, pfn = text.strip().partition("=")
    return (lfn, pfn) if sep else (None, text.strip())


def load_meta(directory: str = ".") -> dict[str, str]:
    """lfn -> expected sha256 from every ``*.meta`` file of ``directory`` (sorted by name;
    a later file wins). A file that cannot be read is reported and skipped, as
    pegasus-integrity does."""
    from fluxlite.meta import read_meta_files

    expected: dict[str, str] = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(directory), "*.meta"))):
        logger.debug("loading metadata from %s", path)
        try:
            if os.path.getsize(path) <= 2:  # pegasus-integrity skips empty files too
                continue
            expected.update(read_meta_files([path]))
        except (OSError, SpecError) as err:
            logger.error("cannot use the metadata file %s: %s", path, err)
    return expected


def verify(entries: list[tuple[str | None, str]], expected: dict[str, str]) -> list[Check]:
    """Hash every entry that has an expected checksum; the others fail without reading."""
    checks = [Check(lfn or pfn, pfn, expected.get(lfn or pfn)) for lfn, pfn in entries]
    todo = []
    for c in checks:
        if c.expected is None:
            c.error = f"No checksum in the meta data for {c.lfn}"
        elif not os.path.isfile(c.pfn):
            c.error = f"File {c.pfn} does not exist"
        else:
            todo.append(c)
    _hash_all(todo)
    return checks


def _hash_all(checks: list[Check]) -> None:
    def one(c: Check) -> None:
        t0 = time.perf_counter()
        try:
            c.actual, _, _ = file_sha256(c.pfn)
        except OSError as err:
            c.error = f"Unable to determine sha256 of {c.pfn}: {err.strerror}"
        c.seconds = time.perf_counter() - t0

    if len(checks) <= 1:
        for c in checks:
            one(c)
        return
    from concurrent.futures import ThreadPoolExecutor

    workers = min(MAX_THREADS, len(checks), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, checks))


def hash_files(pfns: list[str]) -> list[Check]:
    """The sha256 of each file (in parallel); a missing file is a check with an error."""
    checks = [Check(p, p) for p in pfns]
    missing = [c for c in checks if not os.path.isfile(c.pfn)]
    for c in missing:
        c.error = f"File {c.pfn} does not exist"
    _hash_all([c for c in checks if c.error is None])
    return checks


def attempts_yaml(checks: list[Check], duration: float) -> str:
    """The multipart file pegasus-integrity writes: each attempt, then the summary. An entry
    without an expected checksum is no attempt (pegasus-integrity reports it and goes on);
    a file that could not be read is one, with ``sha256: None``."""
    checks = [c for c in checks if c.expected is not None]
    items = [{"lfn": q(c.lfn), "pfn": q(c.pfn), "sha256": c.actual or "None",
              "success": str(c.ok), **({} if c.ok else {"sha256_expected": str(c.expected)})}
             for c in checks]
    return multipart.text(multipart.integrity(items, sum(1 for c in checks if c.ok),
                                              f"{duration:.3f}"))


def write_multipart(directory: str, text: str) -> str | None:
    """The attempts as ``<epoch>-integrity`` in the multipart directory; None (logged as
    pegasus-integrity does) when it cannot be written."""
    try:
        return multipart.write_part(directory, "integrity", [text.rstrip("\n")])
    except OSError as err:
        logger.error("Unable to write stats to $PEGASUS_MULTIPART_DIR: %s", err.strerror)
        return None


def short_yaml(c: Check) -> str:
    """--generate-yaml: the sha256 lines of a kickstart ``files`` entry."""
    return f"      sha256: {c.actual}\n      checksum_timing: {c.seconds:.3f}\n"


def fullstat_yaml(lfn: str, c: Check) -> str | None:
    """--generate-fullstat-yaml: one kickstart ``files`` entry (stat, sha256, output)."""
    try:
        st = os.stat(c.pfn)
    except OSError:
        return None
    return (f"    {q(lfn)}:\n"
            "      comment: entry generated by pegasus-integrity\n"
            f"      file_name: {q(c.pfn)}\n"
            f"      mode: 0o{st.st_mode:o}\n"
            f"      size: {st.st_size}\n"
            f"      inode: {st.st_ino}\n"
            f"      nlink: {st.st_nlink}\n"
            f"      mtime: {iso(st.st_mtime, ms=False)}\n"
            f"      atime: {iso(st.st_atime, ms=False)}\n"
            f"      ctime: {iso(st.st_ctime, ms=False)}\n"
            f"      uid: {st.st_uid}\n"
            f"      user: {q(user_name(st.st_uid))}\n"
            f"      gid: {st.st_gid}\n"
            f"      group: {q(group_name(st.st_gid))}\n"
            "      output: True\n"
            f"      sha256: {c.actual}\n"
            f"      checksum_timing: {c.seconds:.3f}\n")


def append_fullstat(side_file: str, files: list[tuple[str, str, str | None, float]]) -> None:
    """Append kickstart ``files`` entries for (lfn, path, sha256 or None, seconds) to
    ``$KICKSTART_INTEGRITY_DATA``, as pegasus-transfer has pegasus-integrity do for the
    transfers marked ``generate_checksum``. A digest not known yet is computed here."""
    checks = [Check(lfn, path, actual=sha, seconds=secs) for lfn, path, sha, secs in files]
    _hash_all([c for c in checks if c.actual is None and os.path.isfile(c.pfn)])
    text = "".join(entry for c in checks if c.actual
                   for entry in [fullstat_yaml(c.lfn, c)] if entry)
    if text:
        append_side_file(side_file, text)


def append_side_file(side_file: str, text: str) -> bool:
    """Append to $KICKSTART_INTEGRITY_DATA; False (said on stderr) when it cannot be."""
    try:
        with open(side_file, "a", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as err:
        logger.error("cannot append to $KICKSTART_INTEGRITY_DATA (%s): %s", side_file,
                     err.strerror)
        return False
    return True


def run_verify(files: str, print_timings: bool = False, debug: bool = False) -> int:
    """pegasus-integrity ``--verify=FILES`` (``stdin``: the list read from standard input):
    each entry checked against the ``*.meta`` files of the current directory, a line for
    each that fails; with ``print_timings`` the attempts go to ``$PEGASUS_MULTIPART_DIR``.
    0 when every file verified, else 1."""
    t0 = time.perf_counter()
    expected = load_meta(".")
    if debug:
        for lfn, digest in sorted(expected.items()):
            logger.debug("expected %s %s", digest, lfn)
    text = sys.stdin.read() if files == "stdin" else files
    entries = split_entries(text, expected)
    checks = verify(entries, expected)
    for c in checks:
        if c.error:
            logger.error("%s", c.error)
        elif not c.ok:
            logger.error("%s: Expected checksum (%s) does not match the calculated checksum "
                         "(%s) (timing: %.3f)", c.pfn, c.expected, c.actual, c.seconds)
        else:
            logger.debug("%s: verified (%s, %.3f s)", c.pfn, c.actual, c.seconds)
    parts = os.environ.get("PEGASUS_MULTIPART_DIR")
    if print_timings and parts:
        duration = sum(c.seconds for c in checks) if len(checks) <= 1 else (
            time.perf_counter() - t0)
        write_multipart(parts, attempts_yaml(checks, duration))
    return EXIT_OK if all(c.ok for c in checks) else EXIT_FAILED


def run_generate(mode: str, value: str) -> int:
    """pegasus-integrity ``--generate`` (``mode`` "generate"), ``--generate-yaml``
    ("generate_yaml") or ``--generate-fullstat-yaml`` ("generate_fullstat_yaml") of the
    entries in ``value``: printed, or appended to ``$KICKSTART_INTEGRITY_DATA`` for the
    last when it is set. 0 when every file was hashed, else 1."""
    entries = split_entries(value)
    if mode == "generate":
        pfns = [f"{lfn}={pfn}" if lfn is not None else pfn for lfn, pfn in entries]
    else:
        pfns = [pfn for _, pfn in entries]
    checks = hash_files(pfns)
    out: list[str] = []
    rc = EXIT_OK
    for (lfn, _), c in zip(entries, checks, strict=True):
        if c.error:
            logger.error("%s", c.error)
            rc = EXIT_FAILED
            break
        if mode == "generate":
            out.append(f"{c.actual}  {c.pfn}\n")
        elif mode == "generate_yaml":
            out.append(short_yaml(c) + "\n")
        else:
            entry = fullstat_yaml(lfn or c.pfn, c)
            if entry is None:
                logger.error("cannot stat %s", c.pfn)
                rc = EXIT_FAILED
                break
            out.append(entry)
    side = os.environ.get("KICKSTART_INTEGRITY_DATA") if mode == "generate_fullstat_yaml" \
        else None
    text = "".join(out)
    if side:
        if not append_side_file(side, text):
            return EXIT_FAILED
    else:
        sys.stdout.write(text + ("\n" if mode == "generate_fullstat_yaml" and text else ""))
    return rc
