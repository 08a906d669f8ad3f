"""fluxlite pegasus-home DIR --pegasus-version VERSION: a Pegasus worker package of fluxlite.

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
    p.add_argument("--pegasus-version", required=True, metavar="VERSION",
                   help="the planner's Pegasus version as pegasus-version prints it (5.1.2, "
                        "5.1.3-dev.0): PegasusLite uses the package only when "
                        "pegasus-config --version prints it")
    p.add_argument("--force", action="store_true",
                   help="replace a package made by fluxlite for another version or "
                        "interpreter")
    p.add_argument("--python", metavar="PATH", default=None,
                   help="the interpreter the tools run with, a Python >= 3.11 with fluxlite "
                        "(default: this one)")


def main(args: argparse.Namespace) -> int:
    """Write (or check) the worker package PegasusLite finds as PEGASUS_HOME."""
    from fluxlite.pegasus.home import make

    pkg = make(args.directory, args.pegasus_version, force=args.force, python=args.python)
    state = "written" if pkg.changed else "already up to date"
    print(f"{pkg.path}: worker package for Pegasus {pkg.pegasus_version} {state}; "
          f"set PEGASUS_HOME={pkg.path}")
    return 0
