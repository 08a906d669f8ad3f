"""One task of a JSON job list: a whole fluxlite job run by the ordinary Runner.

``python -m fluxlite.cluster.jobtask SPEC KICKSTART_OUT JSON_OUT`` runs the job described in
SPEC with its records written to the two files (the kickstart record compact, as for every
cluster task) and exits with the job's exit code. A process of its own per job keeps each
job's task, signal handling and leftover-process cleanup apart from its neighbours'.
"""

from __future__ import annotations

import sys

from fluxlite.errors import EXIT_USAGE


def main(argv: list[str]) -> int:
    """Run the job of SPEC with its records written to the two files; its exit code."""
    if len(argv) != 3:
        sys.stderr.write("usage: python -m fluxlite.cluster.jobtask SPEC KICKSTART_OUT "
                         "JSON_OUT\n")
        return EXIT_USAGE
    from fluxlite.cli import setup_logging
    from fluxlite.errors import FluxliteError
    from fluxlite.runner import RunOptions, run_job
    from fluxlite.spec import JobSpec

    setup_logging(0)
    spec_path, ks, js = argv
    try:
        # a copy of the list's entry: relative paths stay relative to the current directory,
        # as when the list was read, not to the copy's private directory
        spec = JobSpec.from_file(spec_path, relative_to_file=False)
    except FluxliteError as err:
        sys.stderr.write(f"fluxlite: error: {err}\n")
        return err.exit_code
    # the cluster already placed this job (a local slot or a Flux job of its own)
    import dataclasses

    if spec.placement != "local":
        spec = dataclasses.replace(spec, placement="local")
    # A job run in a local slot shares the enclosing Flux job with its neighbours: its phase
    # memos would overwrite the cluster's progress there, so it runs without Flux. A job run
    # as a Flux job of its own keeps its Flux context (job id, memos on its own job).
    import os

    use_flux = os.environ.get("FLUXLITE_CLUSTER_EXECUTOR") != "local"
    return run_job(spec, RunOptions(kickstart=ks, json=js, compact=True, use_flux=use_flux))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
