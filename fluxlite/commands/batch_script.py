"""fluxlite batch-script job.json: the batch script BLAHP would write, running fluxlite."""

from __future__ import annotations

import argparse
import sys

from fluxlite.commands.submit import batch_options, request
from fluxlite.spec import JobSpec


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fluxlite batch-script`` (those of ``fluxlite submit``)."""
    batch_options(p)


def main(args: argparse.Namespace) -> int:
    """Print the batch script that ``fluxlite submit`` would submit for the job."""
    from fluxlite.flux.submit import render_script

    spec = JobSpec.from_file(args.job)
    sys.stdout.write(render_script(spec, args.job, request(args, spec)))
    return 0
