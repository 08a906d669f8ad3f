"""The site-catalog entry of a Flux site whose jobs use a fluxlite worker package.

Pegasus's planner submits to Flux through HTCondor's BLAHP when the site says
``pegasus.style: glite`` and ``condor.grid_resource: batch flux``; PegasusLite finds the
worker package through the site's ``env.PEGASUS_HOME``. What the rest of the entry must say
depends on the data configuration (docs/pegasus-on-flux.md):

- nonsharedfs: the jobs pull their inputs from the staging site with pegasus-transfer;
  ``auxillary.local: true`` tells the planner that the site sees the submit host's files,
  so ``file://`` inputs and executables of the local site are used in place.
- sharedfs: the jobs run in the site's shared scratch directory, which must be named
  (with a ``file://`` server, as the planner's create-dir and stage-in jobs write there).
- condorio: HTCondor's file transfer moves the data; nothing more is needed.
"""

from __future__ import annotations

import re
from pathlib import Path

from fluxlite.errors import UsageError

DATA_CONFIGURATIONS = ("nonsharedfs", "sharedfs", "condorio")
SITE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def site_entry(home: str | Path, data_configuration: str = "nonsharedfs",
               site: str = "flux", shared_scratch: str | Path | None = None) -> dict[str, object]:
    """The site's entry (a mapping for the ``sites`` list of a 5.0 site catalog)."""
    if data_configuration not in DATA_CONFIGURATIONS:
        raise UsageError(f"--data-configuration {data_configuration!r}: must be one of "
                         f"{', '.join(DATA_CONFIGURATIONS)}")
    if not SITE_NAME_RE.fullmatch(site):  # not match: '$' would let a newline end it
        raise UsageError(f"--site {site!r}: not a site name (letters, digits, _ . -)")
    if data_configuration == "sharedfs" and shared_scratch is None:
        raise UsageError("--shared-scratch: needed for a sharedfs site (the directory the "
                         "jobs run in, seen by the submit host and every node)")
    pegasus: dict[str, object] = {"style": "glite", "data.configuration": data_configuration}
    if data_configuration != "condorio":
        pegasus["auxillary.local"] = "true"  # the schema takes strings or numbers only
    entry: dict[str, object] = {"name": site, "arch": "x86_64", "os.type": "linux"}
    if shared_scratch is not None:
        scratch = Path(shared_scratch)
        if not scratch.is_absolute():
            raise UsageError(f"--shared-scratch {shared_scratch}: must be an absolute path")
        entry["directories"] = [{
            "type": "sharedScratch", "path": str(scratch),
            "fileServers": [{"url": scratch.as_uri(), "operation": "all"}]}]
    entry["profiles"] = {
        "pegasus": pegasus,
        "condor": {"grid_resource": "batch flux"},
        "env": {"PEGASUS_HOME": str(Path(home).absolute())},
    }
    return entry


def site_catalog_yaml(entry: dict[str, object]) -> str:
    """A site catalog holding just this site: add the local site (and others) beside it."""
    import yaml  # only when a catalog is printed: making a package needs none

    doc = {"pegasus": "5.0", "sites": [entry]}
    return ("# the Flux site of a fluxlite worker package (fluxlite pegasus-home --site-catalog)\n"
            + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
