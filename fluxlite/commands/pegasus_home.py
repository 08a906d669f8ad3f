"""fluxlite pegasus-home DIR --pegasus-version VERSION: a Pegasus worker package of fluxlite.

Point a site's ``env.PEGASUS_HOME`` profile at DIR and PegasusLite runs fluxlite's
pegasus-kickstart, pegasus-transfer and pegasus-integrity (docs/pegasus-home.md).
With ``--site-catalog`` it prints, on stdout, the site-catalog entry of a Flux site whose
jobs use the package (docs/pegasus-on-flux.md).
"""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger(__name__)


def _site_catalog_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``--site-catalog`` (shown in a group of their own)."""
    from fluxlite.pegasus.sitecatalog import DATA_CONFIGURATIONS

    sc = p.add_argument_group("site catalog")
    sc.add_argument("--site-catalog", action="store_true",
                    help="print the site-catalog YAML of a Flux site using this package "
                         "(the status line goes to stderr)")
    sc.add_argument("--site", default="flux", metavar="NAME",
                    help="the site's name in the catalog (default: flux)")
    sc.add_argument("--data-configuration", choices=DATA_CONFIGURATIONS,
                    default="nonsharedfs", help="the site's data configuration "
                                                "(default: nonsharedfs)")
    sc.add_argument("--shared-scratch", metavar="DIR", default=None,
                    help="the site's shared scratch directory (needed for sharedfs)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fluxlite pegasus-home``."""
    _site_catalog_arguments(p)
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
    import sys

    from fluxlite.pegasus.home import make

    from fluxlite.pegasus.sitecatalog import site_catalog_yaml, site_entry

    def entry(home: str) -> dict[str, object]:
        return site_entry(home, args.data_configuration, args.site, args.shared_scratch)

    if args.site_catalog:  # refused options end the command before the package is written
        entry(args.directory)
    pkg = make(args.directory, args.pegasus_version, force=args.force, python=args.python)
    state = "written" if pkg.changed else "already up to date"
    print(f"{pkg.path}: worker package for Pegasus {pkg.pegasus_version} {state}; "
          f"set PEGASUS_HOME={pkg.path}", file=sys.stderr if args.site_catalog else sys.stdout)
    if args.site_catalog:  # the entry of the package as it was made
        sys.stdout.write(site_catalog_yaml(entry(str(pkg.path))))
    return 0
