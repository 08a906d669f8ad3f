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
import sys

from fluxlite.errors import EXIT_FAILED, EXIT_USAGE

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
    from fluxlite.pegasus import integrity as pi

    if mode == "verify":
        return pi.run_verify(args.verify, args.print_timings, args.debug)
    return pi.run_generate(mode, getattr(args, mode))
