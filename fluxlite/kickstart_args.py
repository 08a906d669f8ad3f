"""pegasus-kickstart's command line, read as kickstart reads it.

Kickstart's options are not getopt's: each option is one word (``-n tr`` or ``-ntr``), the
first word that is not an option is the application and everything after it belongs to the
application, ``--`` ends the options, and ``-I file`` replaces the application and its
arguments with the lines of a file. Usage errors exit 127, like every failure of kickstart
to start the application, so that Pegasus reads them as such.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

from fluxlite.errors import EXIT_CANNOT_EXEC, FluxliteError
from fluxlite.numbers import MAX_SECONDS, check_number

logger = logging.getLogger(__name__)

DEFAULT_DATA_SIZE = 262144  # bytes of stdout/stderr kickstart embeds by default
DEFAULT_KILL_TIMEOUT = 5
ALL_DATA = sys.maxsize  # -B all

_WITH_VALUE = frozenset("BeiIlLnNoRSsTwWkKm")
# -F and -c change nothing any more in kickstart; -t, -z and -Z ask for ptrace or library
# interposition, which fluxlite replaces with its process-tree monitor.
_FLAGS = frozenset("HfFqcXtzZ")
_IGNORED = {"t": "ptrace tracing", "z": "system call tracing", "Z": "library call tracing"}
_LONG = {"--help": "h", "--version": "V"}  # the only long options: -h and -V spelled out


class KickstartUsage(FluxliteError):
    """A command line kickstart would refuse."""

    exit_code = EXIT_CANNOT_EXEC

    def __init__(self, message: str, show_help: bool = True) -> None:
        super().__init__(message)
        self.show_help = show_help


@dataclass(slots=True)
class KickstartArgs:
    """pegasus-kickstart's command line, parsed."""

    transformation: str | None = None
    derivation: str | None = None
    resource: str | None = None
    wf_label: str | None = None
    wf_stamp: str | None = None
    stdin: str | None = None
    stdout: str | None = None
    stderr: str | None = None
    logfile: str | None = None
    stat_before: list[tuple[str | None, str]] = field(default_factory=list)  # -S
    stat_after: list[tuple[str | None, str]] = field(default_factory=list)  # -s
    workdir: str | None = None
    create_workdir: bool = False
    make_executable: bool = False
    no_header: bool = False
    full: bool = False
    omit_data: bool = False
    data_size: int = DEFAULT_DATA_SIZE
    term_timeout: int = 0  # 0: never
    kill_timeout: int = DEFAULT_KILL_TIMEOUT
    monitor_interval: float = 0.0  # 0: the default interval
    argfile: str | None = None
    argv: list[str] = field(default_factory=list)  # the application and its arguments
    version: bool = False
    help: bool = False


USAGE = """\
Usage:\tfluxlite kickstart [-i fn] [-o fn] [-e fn] [-l fn] [-n xid] [-N did] \\
\t[-w|-W cwd] [-R res] [-s [l=]p] [-S [l=]p] [-X] [-H] [-L lbl -T iso] \\
\t[-B sz|all] [-f] [-q] [-k S] [-K S] (-I fn | app [appflags])
 -i fn\tConnects stdin of app to file fn ('-': share ours), default is /dev/null.
 -o fn\tConnects stdout of app to file fn ('-': share ours, '!fn': append),
      \tdefault is a temporary file embedded in the record.
 -e fn\tConnects stderr of app to file fn, as -o.
 -l fn\tAppends the invocation record to file fn, default is stdout.
 -n xid\tProvides the TR name.
 -N did\tProvides the DV name.
 -R res\tReflects the resource handle into record.
 -B sz\tBytes of stdout/stderr embedded in the record ('all': everything), default 262144.
 -L lbl\tReflects the workflow label into record.
 -T iso\tReflects the workflow time stamp into record.
 -H\tOmit the machine section from the record (clustered jobs).
 -I fn\tReads job and args from the file fn, one arg per line.
 -V\tDisplays the version and exit.
 -X\tMakes the application executable, no matter what.
 -w dir\tSets a different working directory dir for jobs.
 -W dir\tLike -w, but also creates the directory dir if necessary.
 -S l=p\tProvides filename pairs to stat after start (before any hook and the job), multi-option.
 \tIf the arg is prefixed with '@', it is a list-of-filenames file.
 -s l=p\tProvides filename pairs to stat (and checksum) before exit, multi-option.
 \tIf the arg is prefixed with '@', it is a list-of-filenames file.
 -f\tFull record: environment and limits. If the job fails, then -f is implied.
 -q\tOmit the stdout and stderr data if the job succeeds.
 -k S\tSend TERM signal to job after S seconds. Default is 0, which means never.
 -K S\tSend KILL signal to job S seconds after a TERM signal. Default is 5.
 -m S\tSample the job's processes every S seconds (fractions allowed, at most 3600).
Environment: KICKSTART_SETUP, KICKSTART_PREJOB, KICKSTART_POSTJOB, KICKSTART_CLEANUP
(or GRIDSTART_*) name commands to run around the job; KICKSTART_PREPEND_PATH is put
before PATH; KICKSTART_WRAPPER is a command the application is run under.
"""


def noquote(s: str) -> str:
    """kickstart strips one pair of surrounding quotes from names and directories."""
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def _number(flag: str, value: str, minimum: int, maximum: int | None = None) -> int:
    try:
        n = int(value, 0)  # like strtoul(..., 0): 0x10 and 010 are accepted
    except ValueError:
        n = -1
    if n < minimum or (maximum is not None and n > maximum):
        # kickstart's own words ("ERROR: Invalid -B argument: x"), which scripts look for
        raise KickstartUsage(f"Invalid -{flag} argument: {value}", show_help=False)
    return n


def _entry(text: str) -> tuple[str | None, str]:
    lfn, sep, pfn = text.partition("=")
    if not sep:
        return None, text
    return (lfn or None), pfn


def _seconds(flag: str, value: str, minimum: float, maximum: float) -> float:
    """A decimal number of seconds, fractions allowed; 0 stands for the default."""
    try:
        n = float(value)
    except ValueError:
        n = -1.0
    if n != 0 and check_number(n, minimum=minimum, maximum=maximum):
        raise KickstartUsage(f"Invalid -{flag} argument: {value}", show_help=False)
    return n


def _stat_entries(flag: str, value: str) -> list[tuple[str | None, str]]:
    """One ``[lfn=]pfn`` or, for ``@file``, one per line of the file."""
    if not value.startswith("@"):
        return [_entry(value)]
    path = value[1:]
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.read().splitlines()
    except OSError as err:
        raise KickstartUsage(f"-{flag} {value}: cannot read {path}: {err.strerror}",
                             show_help=False) from err
    return [_entry(ln.strip()) for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def read_argfile(path: str) -> list[str]:
    """-I: the application and its arguments, one per line (empty lines skipped)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            text = fh.read()
    except OSError as err:
        raise KickstartUsage(f"-I {path}: cannot read argument file: {err.strerror}",
                             show_help=False) from err
    argv = [ln.rstrip("\r") for ln in text.split("\n")]
    return [a for a in argv if a]


def parse(argv: list[str]) -> KickstartArgs:
    """Read a kickstart command line; raise KickstartUsage where kickstart would exit 127."""
    a = KickstartArgs()
    if not argv:
        raise KickstartUsage("no application to run")
    i = 0
    while i < len(argv) and argv[i].startswith("-") and len(argv[i]) > 1:
        word = argv[i]
        c = word[1]
        if word == "--":  # ends the options
            i += 1
            break
        if c == "-":
            # kickstart takes any word starting "--" for "--" and runs what follows, so a
            # mistyped long option went unnoticed; only the two long options people try
            # are understood, any other is reported by name
            long_option = _LONG.get(word)
            if long_option is None:
                raise KickstartUsage(f"unknown option '{word}'")
            c = long_option
        if c in ("h", "?"):
            a.help = True
            return a
        if c == "V":
            a.version = True
            return a
        if c not in _WITH_VALUE and c not in _FLAGS:
            raise KickstartUsage(f"unknown option '{word}'")
        value = ""
        if c in _WITH_VALUE:
            if len(word) > 2:
                value = word[2:]
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise KickstartUsage(f"-{c} argument missing")
        i += 1
        if c == "I":
            if i < len(argv):
                raise KickstartUsage(f"no arguments allowed after -I {value}")
            a.argfile = value
            a.argv = read_argfile(value)
            if not a.argv:
                raise KickstartUsage(f"-I {value}: the argument file names no application",
                                     show_help=False)
            return a
        _apply(a, c, value)
    a.argv = list(argv[i:])
    if not a.argv:
        raise KickstartUsage("no application to run")
    return a


# the options that set one field of KickstartArgs: names (kickstart strips their quotes),
# file names (kept as they are), switches
_NAMES = {"n": "transformation", "N": "derivation", "R": "resource", "L": "wf_label",
          "T": "wf_stamp"}
_FILES = {"i": "stdin", "o": "stdout", "e": "stderr", "l": "logfile"}
_SWITCHES = {"X": "make_executable", "H": "no_header", "f": "full", "q": "omit_data"}


def _apply(a: KickstartArgs, c: str, value: str) -> None:
    if c in _NAMES:
        setattr(a, _NAMES[c], noquote(value))
    elif c in _FILES:
        setattr(a, _FILES[c], value)
    elif c in _SWITCHES:
        setattr(a, _SWITCHES[c], True)
    elif c == "s":
        a.stat_after += _stat_entries(c, value)
    elif c == "S":
        a.stat_before += _stat_entries(c, value)
    elif c in ("w", "W"):
        a.workdir = noquote(value)
        a.create_workdir = c == "W"
    elif c == "B":
        a.data_size = ALL_DATA if value == "all" else _number(c, value, 1, ALL_DATA)
    elif c == "k":
        a.term_timeout = _number(c, value, 0, int(MAX_SECONDS))
    elif c == "K":
        a.kill_timeout = _number(c, value, 1, 86400)
    elif c == "m":
        a.monitor_interval = _seconds(c, value, 0.01, 3600)
    elif c in _IGNORED:
        logger.warning("-%s (%s) is not supported: fluxlite monitors the process tree "
                       "instead", c, _IGNORED[c])
    # -F and -c: accepted and ignored, as kickstart does


def stream(value: str | None) -> tuple[str | None, bool, bool]:
    """An -o/-e value as (path, append, share): ``-`` shares ours, ``!fn`` appends.

    kickstart also accepts ``^fn`` (and ``!^fn``); fluxlite treats ``^`` as no prefix.
    """
    if value is None:
        return None, False, False
    if value == "-":
        return None, False, True
    append = False
    rest = value
    while rest[:1] in ("!", "^") and len(rest) > 1:
        append = append or rest[0] == "!"
        rest = rest[1:]
    return rest, append, False


def pathfind(name: str, path_var: str) -> str | None:
    """Where kickstart finds an application: as given when it is a file (absolute, or
    relative to the current directory), else the first file of that name on PATH."""
    if os.path.isabs(name) or os.path.isfile(name):
        return os.path.abspath(name) if os.path.isfile(name) else None
    if "/" in name:
        return None
    for d in path_var.split(":"):
        cand = os.path.join(d or ".", name)
        if os.path.isfile(cand):
            return os.path.abspath(cand)
    return None
