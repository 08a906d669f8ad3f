"""pegasus-kickstart's command line and environment read into a job for fluxlite's runner:
the JobSpec and the KickstartOptions that make it do what kickstart would.

It creates no worker directory and stages nothing: like kickstart, the application runs in
the current directory (or the one given with -w/-W), found as kickstart finds it.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat

from fluxlite.kickstart_args import KickstartArgs, KickstartUsage, pathfind, stream
from fluxlite.pegasus.kickstart import KickstartOptions, Stdio
from fluxlite.spec import JobSpec, Limits, RecordsSpec, Workflow

logger = logging.getLogger(__name__)

HOOK_VARS = {name: (f"KICKSTART_{name.upper()}", f"GRIDSTART_{name.upper()}")
             for name in ("setup", "prejob", "postjob", "cleanup")}


def build(args: KickstartArgs, environ: dict[str, str]) -> tuple[JobSpec, KickstartOptions]:
    """The JobSpec and KickstartOptions that make the runner do what kickstart would."""
    extra_env: dict[str, str] = {}
    path_var = environ.get("PATH", os.defpath)
    prepend = environ.get("KICKSTART_PREPEND_PATH")
    if prepend:
        path_var = f"{prepend}:{path_var}" if path_var else prepend
        extra_env["PATH"] = path_var
    # what kickstart tells the application about itself (used by monitoring tools)
    for var, value in (("PEGASUS_WF_LABEL", args.wf_label),
                       ("PEGASUS_XFORMATION", args.transformation),
                       ("PEGASUS_TASK_ID", args.derivation)):
        if value is not None:
            extra_env[var] = value

    argv = list(args.argv)
    wrapper = environ.get("KICKSTART_WRAPPER")
    if wrapper:
        argv = _split(wrapper, "KICKSTART_WRAPPER") + argv
    # -w/-W: kickstart changes directory first, then finds the application there; a
    # directory that cannot be entered is reported by the runner, with a record
    workdir = os.path.abspath(args.workdir) if args.workdir else os.getcwd()
    exe = _executable(argv[0], path_var, args.make_executable, workdir)

    stdio: dict[str, Stdio] = {"stdin": Stdio(fd=0) if args.stdin == "-" else Stdio(args.stdin)}
    for name, value, fd in (("stdout", args.stdout, 1), ("stderr", args.stderr, 2)):
        path, append, share = stream(value)
        stdio[name] = Stdio(fd=fd) if share else Stdio(path, append)

    record = "-"
    if args.logfile and args.logfile != "-":
        record = os.path.join(workdir, args.logfile)

    k, big_k = args.term_timeout, args.kill_timeout
    # The planner derives -k and -K from the walltime W and checkpoint time C
    # (-k C, -K (W - C) / 2); giving the runner W = k + 2K back reproduces kickstart's
    # TERM at k and KILL K seconds later, and keeps a Flux time limit from overriding it.
    # (KickstartStrategy runs that clock from kickstart's start, across the hooks.)
    limits = Limits(maxwalltime=float(k + 2 * big_k), checkpoint_time=float(k),
                    kill_grace=float(big_k)) if k > 0 else Limits(kill_grace=float(big_k))

    spec = JobSpec(
        executable=exe,
        name=args.transformation or "",
        id=args.derivation or "",
        site=args.resource or "",
        workflow=Workflow(args.wf_label, args.wf_stamp),
        arguments=tuple(argv[1:]),
        limits=limits,
        records=RecordsSpec(kickstart=record, json=None, stdio_bytes=args.data_size),
        monitor_interval=float(args.monitor_interval) if args.monitor_interval else 1.0,
        source="kickstart",
    )
    opts = KickstartOptions(
        kickstart=record, json=None, full=args.full, compact=args.no_header,
        extra_env=extra_env, cwd=workdir, make_cwd=args.create_workdir, stdio=stdio,
        stat_before=_under(workdir, args.stat_before),
        stat_after=_under(workdir, args.stat_after),
        hooks=_hooks(environ, path_var), omit_data_on_success=args.omit_data,
        term_timeout=k, kill_timeout=big_k)
    return spec, opts


def _split(text: str, what: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as err:
        raise KickstartUsage(f"{what}: cannot split '{text}': {err}", show_help=False) from err


def _executable(name: str, path_var: str, make_executable: bool, base: str) -> str:
    """The application as kickstart finds it, a relative name in ``base`` (the -w
    directory); a name it cannot find is left for the runner, which reports it in the
    record and exits 127."""
    cand = os.path.normpath(os.path.join(base, name))
    if "/" in name or os.path.isfile(cand):
        found: str | None = cand if os.path.isfile(cand) else None
    else:
        found = pathfind(name, path_var)
    if found is None:
        return cand if "/" in name else name
    if make_executable and not os.access(found, os.R_OK | os.X_OK):
        try:
            mode = os.stat(found).st_mode
            # kickstart -X is chmod a+rx
            rx = (stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP
                  | stat.S_IROTH | stat.S_IXOTH)
            os.chmod(found, mode | rx)  # noqa: S103
        except OSError as err:
            logger.warning("cannot make %s executable: %s", found, err.strerror)
    return found


def _under(workdir: str, files: list[tuple[str | None, str]]) -> list[tuple[str | None, str]]:
    """-s/-S names are looked up after the change of directory, as in kickstart; a file
    given without an lfn is recorded under the name it was given."""
    return [(lfn or pfn, os.path.join(workdir, pfn)) for lfn, pfn in files]


def _hooks(environ: dict[str, str], path_var: str) -> dict[str, list[str]]:
    """KICKSTART_SETUP & co.: command lines split into words with quotes honoured and run
    without a shell, exactly as kickstart parses and runs them. A hook whose program cannot
    be found or run is skipped, as kickstart skips it."""
    hooks: dict[str, list[str]] = {}
    for name, (var, old_var) in HOOK_VARS.items():
        text = environ.get(var)
        if text is None:
            text = environ.get(old_var)
            var = old_var
        if not text or not text.strip():
            continue
        words = _split(text, var)
        found = pathfind(words[0], path_var)
        if found is None or not os.access(found, os.X_OK):
            logger.warning("%s: cannot run '%s': not found or not executable; skipped",
                           var, words[0])
            continue
        hooks[name] = [found, *words[1:]]
    return hooks
