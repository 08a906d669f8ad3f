"""fluxlite submit job.json: `fluxlite run job.json` as a Flux batch job."""

from __future__ import annotations

import argparse
import os
import sys

from fluxlite.spec import JobSpec


def batch_options(p: argparse.ArgumentParser) -> None:
    """The resource options shared with batch-script; job.json's `resources` are defaults."""
    p.add_argument("job", help="the job description (job.json)")
    p.add_argument("-N", "--nodes", type=int, metavar="N", help="nodes (whole nodes)")
    p.add_argument("-n", "--nslots", type=int, metavar="N",
                   help="resource slots (default: resources.tasks)")
    p.add_argument("-c", "--cores", type=int, metavar="N",
                   help="cores per slot (default: resources.cores_per_task)")
    p.add_argument("-g", "--gpus", type=int, metavar="N",
                   help="GPUs per slot (default: resources.gpus_per_task)")
    p.add_argument("-t", "--time-limit", metavar="FSD",
                   help="time limit: 90s, 30m, 2h, 1d; a bare number is seconds (not minutes, "
                        "as for flux batch) (default: resources.time_limit)")
    p.add_argument("--queue", help="queue (default: resources.queue)")
    p.add_argument("-B", "--bank", help="bank (default: resources.bank)")
    p.add_argument("--exclusive", action="store_true", help="whole nodes")
    p.add_argument("--output", metavar="PATH",
                   help="the batch job's own output (default: fluxlite-{{id}}.out here)")
    p.add_argument("--error", metavar="PATH", help="the batch job's own error output")
    p.add_argument("--dependency", action="append", default=[], metavar="SCHEME:JOBID",
                   help="start only after another Flux job: afterok:JOBID (it succeeded), "
                        "afternotok:, afterany: (it ended), after: (it started); repeatable")
    p.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]",
                   help="export this variable in the batch script (repeatable)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fluxlite submit``: the batch options and ``--wait``."""
    batch_options(p)
    p.add_argument("--wait", action="store_true",
                   help="wait for the job to end and exit with fluxlite's exit code")


def request(args: argparse.Namespace, spec: JobSpec):  # noqa: ANN201
    """The batch request the command line makes for the job (``--env`` checked here)."""
    from fluxlite.errors import UsageError
    from fluxlite.flux.submit import request_from

    env: dict[str, str] = {}
    for item in args.env:
        name, eq, value = item.partition("=")
        if not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise UsageError(f"--env: '{name}' is not a variable name")
        env[name] = value if eq else os.environ.get(name, "")
    return request_from(spec, nodes=args.nodes, slots=args.nslots, cores=args.cores,
                        gpus=args.gpus, time_limit=args.time_limit, queue=args.queue,
                        bank=args.bank, exclusive=args.exclusive, output=args.output,
                        error=args.error, env=env, dependencies=args.dependency)


def main(args: argparse.Namespace) -> int:
    """Submit the job to Flux and print its id; with ``--wait``, fluxlite's exit code."""
    from fluxlite.flux.submit import submit, wait_exit_code

    spec = JobSpec.from_file(args.job)
    h, jobid = submit(spec, args.job, request(args, spec))
    sys.stdout.write(jobid + "\n")
    sys.stdout.flush()
    if not args.wait:
        return 0
    return wait_exit_code(h, jobid)
