"""fluxlite run job.json"""

from __future__ import annotations

import argparse
import sys

from fluxlite.runner import RunOptions, run_job
from fluxlite.spec import JobSpec, check_ready, preflight_warnings, with_records


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``fluxlite run``."""
    p.add_argument("job", help="the job description (job.json)")
    p.add_argument("--kickstart-record", metavar="PATH",
                   help="where the kickstart YAML record goes ('-' for stdout; "
                        "default: records.kickstart of the job)")
    p.add_argument("--json", "--json-record", dest="json_record", metavar="PATH",
                   help="where the JSON record goes ('-' for stdout; default: records.json)")
    p.add_argument("--overwrite-records", action="store_true",
                   help="replace the records of an earlier run (default: keep them as "
                        "PATH.000, PATH.001, ...)")
    p.add_argument("--full", action="store_true",
                   help="environment and limits in the record even on success")
    p.add_argument("--no-flux", action="store_true",
                   help="ignore any Flux instance (run as on a machine without Flux)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate and print the resolved plan; run nothing")


def main(args: argparse.Namespace) -> int:
    """``fluxlite run job.json``: check the job, then run it (or show its plan); its exit code."""
    spec = JobSpec.from_file(args.job)
    # what can be known to fail is refused before anything is created; a missing
    # executable is left to the runner, which reports it as kickstart does (127)
    check_ready(with_records(spec, args.kickstart_record, args.json_record),
                executables=args.dry_run)
    if args.dry_run:
        from fluxlite.plan import describe

        sys.stderr.write("".join(f"fluxlite: warning: {args.job}: {w}\n"
                                 for w in preflight_warnings(spec)))

        sys.stdout.buffer.write(describe(spec).encode("utf-8", "backslashreplace"))
        sys.stdout.flush()
        return 0
    opts = RunOptions(full=args.full, use_flux=not args.no_flux,
                      overwrite_records=args.overwrite_records)
    if args.kickstart_record is not None:
        opts.kickstart = args.kickstart_record
    if args.json_record is not None:
        opts.json = args.json_record
    if opts.kickstart == "-" and opts.json == "-":
        from fluxlite.errors import UsageError

        raise UsageError("only one record can go to stdout")
    return run_job(spec, opts)
