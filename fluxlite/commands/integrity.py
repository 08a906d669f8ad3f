"""fluxlite integrity: pegasus-integrity's command line on fluxlite's hashing.

``--verify=FILES|stdin`` checks files against the ``*.meta`` files of the current directory
(lists as PegasusLite 5.0 writes them, ``lfn:lfn``, or 5.1, ``lfn=pfn;;;lfn=pfn``);
``--generate``, ``--generate-yaml`` and ``--generate-fullstat-yaml`` print checksums (the
last appends to ``$KICKSTART_INTEGRITY_DATA`` when set, for kickstart's record). Exit 0 when
every file verified (or was hashed), 1 otherwise, 2 for a command line it cannot read.
Messages start with ``Integrity check:``, as pegasus-integrity's do.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from fluxlite.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE

logger = logging.getLogger("fluxlite.pegasus.integrity")

PROG = "pegasus-integrity"
_MODES = ("generate", "generate_yaml", "generate_fullstat_yaml", "generate_xmls",
          "generate_fullstat_xmls", "verify")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def parser() -> argparse.ArgumentParser:
    """pegasus-integrity's command line (long options, never abbreviated)."""
    p = _Parser(prog=PROG, description="Verify or generate sha256 checksums of files "
                                       "(fluxlite's pegasus-integrity).", allow_abbrev=False)
    p.add_argument("--generate", dest="generate", metavar="FILES",
                   help="print 'sha256  file' for each of FILES (';;;' separated)")
    p.add_argument("--generate-yaml", dest="generate_yaml", metavar="[LFN=]PFN...",
                   help="print the sha256 and checksum_timing lines of kickstart's record")
    p.add_argument("--generate-fullstat-yaml", dest="generate_fullstat_yaml",
                   metavar="[LFN=]PFN...",
                   help="print kickstart 'files' entries (stat and sha256); appended to "
                        "$KICKSTART_INTEGRITY_DATA instead when it is set")
    p.add_argument("--generate-xmls", dest="generate_xmls", help=argparse.SUPPRESS)
    p.add_argument("--generate-fullstat-xmls", dest="generate_fullstat_xmls",
                   help=argparse.SUPPRESS)
    p.add_argument("--verify", dest="verify", metavar="FILES|stdin",
                   help="verify [LFN=]PFN entries against the *.meta files of the current "
                        "directory ('stdin': read the list from standard input)")
    p.add_argument("--print-timings", action="store_true",
                   help="write the attempts and a summary into $PEGASUS_MULTIPART_DIR")
    p.add_argument("--debug", action="store_true", help="more detail")
    return p


def _setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("Integrity check: %(message)s"))
    root = logging.getLogger("fluxlite")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False


def main_argv(argv: list[str]) -> int:
    """``fluxlite integrity ARGS``: pegasus-integrity's command line; its exit code."""
    args = parser().parse_args(argv)
    _setup_logging(args.debug)
    given = [m for m in _MODES if getattr(args, m) is not None]
    if len(given) != 1:
        logger.error("One, and only one, of --generate-* and --verify needs to be specified")
        return EXIT_FAILED
    mode = given[0]
    if mode in ("generate_xmls", "generate_fullstat_xmls"):
        logger.error("--%s: XML kickstart records are not supported; use the YAML form "
                     "(--generate-yaml, --generate-fullstat-yaml)", mode.replace("_", "-"))
        return EXIT_FAILED
    if mode == "verify":
        return _verify(args.verify, args.print_timings, args.debug)
    return _generate(mode, getattr(args, mode))


def _verify(files: str, print_timings: bool, debug: bool) -> int:
    from fluxlite.pegasus import integrity as pi

    t0 = time.perf_counter()
    expected = pi.load_meta(".")
    if debug:
        for lfn, digest in sorted(expected.items()):
            logger.debug("expected %s %s", digest, lfn)
    text = sys.stdin.read() if files == "stdin" else files
    entries = pi.split_entries(text, expected)
    checks = pi.verify(entries, expected)
    for c in checks:
        if c.error:
            logger.error("%s", c.error)
        elif not c.ok:
            logger.error("%s: Expected checksum (%s) does not match the calculated checksum "
                         "(%s) (timing: %.3f)", c.pfn, c.expected, c.actual, c.seconds)
        else:
            logger.debug("%s: verified (%s, %.3f s)", c.pfn, c.actual, c.seconds)
    multipart = os.environ.get("PEGASUS_MULTIPART_DIR")
    if print_timings and multipart:
        duration = sum(c.seconds for c in checks) if len(checks) <= 1 else (
            time.perf_counter() - t0)
        pi.write_multipart(multipart, pi.attempts_yaml(checks, duration))
    return EXIT_OK if all(c.ok for c in checks) else EXIT_FAILED


def _generate(mode: str, value: str) -> int:
    from fluxlite.pegasus import integrity as pi

    entries = pi.split_entries(value)
    if mode == "generate":
        pfns = [f"{lfn}={pfn}" if lfn is not None else pfn for lfn, pfn in entries]
    else:
        pfns = [pfn for _, pfn in entries]
    checks = pi.hash_files(pfns)
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
            out.append(pi.short_yaml(c) + "\n")
        else:
            entry = pi.fullstat_yaml(lfn or c.pfn, c)
            if entry is None:
                logger.error("cannot stat %s", c.pfn)
                rc = EXIT_FAILED
                break
            out.append(entry)
    side = os.environ.get("KICKSTART_INTEGRITY_DATA") if mode == "generate_fullstat_yaml" \
        else None
    text = "".join(out)
    if side:
        if not pi.append_side_file(side, text):
            return EXIT_FAILED
    else:
        sys.stdout.write(text + ("\n" if mode == "generate_fullstat_yaml" and text else ""))
    return rc
