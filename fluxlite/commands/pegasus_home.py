"""fluxlite pegasus-home DIR --pegasus-version X.Y.Z: a Pegasus worker package of fluxlite.

Point a site's ``env.PEGASUS_HOME`` profile at DIR and PegasusLite runs fluxlite's
pegasus-kickstart, pegasus-transfer and pegasus-integrity (docs/pegasus-home.md).
"""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fluxlite pegasus-home``."""
    p.add_argument("directory", metavar="DIR", help="where the package goes (DIR/bin)")
    p.add_argument("--pegasus-version", required=True, metavar="X.Y.Z",
                   help="the planner's Pegasus version: PegasusLite uses the package only "
                        "when pegasus-config --version prints exactly this")
    p.add_argument("--force", action="store_true",
                   help="replace a package made by fluxlite for another version or "
                        "interpreter")
    p.add_argument("--python", metavar="PATH", default=None,
                   help="the interpreter the tools run with (default: this one)")


def main(args: argparse.Namespace) -> int:
    """Write (or check) the worker package PegasusLite finds as PEGASUS_HOME."""
    from fluxlite.pegasus.home import make

    pkg = make(args.directory, args.pegasus_version, force=args.force, python=args.python)
    state = "written" if pkg.changed else "already up to date"
    print(f"{pkg.path}: worker package for Pegasus {pkg.pegasus_version} {state}; "
          f"set PEGASUS_HOME={pkg.path}")
    return 0
