"""A Pegasus worker package made of fluxlite: ``DIR/bin`` with the tools PegasusLite calls.

PegasusLite puts ``$PEGASUS_HOME/bin`` first on PATH and uses the tools there when
``pegasus-config --version`` prints the workflow's Pegasus version. Each tool here is a
launcher of the fluxlite installed for one interpreter, named by its absolute path and run
isolated (``-I``), so that neither the caller's PATH nor a PYTHONPATH or virtualenv leaking
into the job changes which fluxlite runs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from fluxlite import __version__
from fluxlite.errors import FluxliteError, UsageError
from fluxlite.fsutil import write_atomic

logger = logging.getLogger(__name__)

MARKER = ".fluxlite-pegasus-home.json"
VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
# the tool PegasusLite calls -> the fluxlite command it runs
TOOLS = {"pegasus-kickstart": "kickstart", "pegasus-transfer": "transfer",
         "pegasus-integrity": "integrity"}
MODE = stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH  # 0755


class HomeError(UsageError):
    """A directory the worker package is refused to be written into."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass(frozen=True, slots=True)
class Package:
    """A worker package written: where, and for which Pegasus version."""

    path: Path
    pegasus_version: str
    python: str
    changed: bool  # False: an identical package was already there


def _launcher(python: str, command: str) -> str:
    return ("#!/bin/sh\n"
            f"# pegasus worker tool made by fluxlite {__version__}: fluxlite {command}\n"
            f"exec {shlex.quote(python)} -I -m fluxlite {command} \"$@\"\n")


def _config_script(home: Path, pegasus_version: str, python_dir: str) -> str:
    """pegasus-config in sh: PegasusLite runs it for every job, so it starts no Python.

    It answers the options of Pegasus's own pegasus-config with this package's layout.
    """
    q = shlex.quote
    paths = {
        "--bin": str(home / "bin"),
        "--conf": str(home / "etc"),
        "--java": str(home / "share" / "pegasus" / "java"),
        "--python": python_dir,
        "--python-externals": python_dir,
        "--schema": str(home / "share" / "pegasus" / "schema"),
        "--r": "",
        "--classpath": "",
    }
    cases = "".join(f"    {opt}) value={q(val)} ;;\n" for opt, val in paths.items())
    dump = "".join(
        f"{name}={q(paths[opt])}\nexport {name}\n"
        for name, opt in (("PEGASUS_BIN_DIR", "--bin"), ("PEGASUS_CONF_DIR", "--conf"),
                          ("PEGASUS_JAVA_DIR", "--java"), ("PEGASUS_PYTHONPATH", "--python"),
                          ("PEGASUS_SCHEMA_DIR", "--schema")))
    return f"""#!/bin/sh
# pegasus-config of a Pegasus {pegasus_version} worker package made by fluxlite {__version__}
eol='\\n'
want=''
for arg in "$@"; do
  case "$arg" in
    --noeoln) eol='' ;;
    -h|--help)
      echo 'usage: pegasus-config [-h] [--version] [--bin] [--conf] [--java] [--python]'
      echo '                      [--python-externals] [--schema] [--r] [--classpath]'
      echo '                      [--sh-dump] [--python-hash] [--noeoln]'
      echo 'Queries a Pegasus worker package made by fluxlite.'
      exit 0 ;;
    -V|--version|--bin|--conf|--java|--python|--python-externals|--schema|--r|--classpath|\\
--sh-dump|--python-hash)
      [ -n "$want" ] || want="$arg" ;;
    *) echo "pegasus-config: error: unrecognized arguments: $arg" >&2; exit 2 ;;
  esac
done
case "$want" in
    '') echo 'usage: pegasus-config [-h] [--version] [--bin] ... (--help lists them)' >&2
        exit 1 ;;
    -V|--version) value={q(pegasus_version)} ;;
{cases}    --sh-dump)
        cat <<'EOF'
{dump}EOF
        exit 0 ;;
    --python-hash)
        printf '%s\\n' {q(f"bin_dir = {paths['--bin']!r}")} {q(f"python_dir = {python_dir!r}")}
        exit 0 ;;
esac
printf "%s$eol" "$value"
"""


def _python_dir(python: str) -> str:
    """The directory ``python`` imports fluxlite from (what PYTHONPATH would need), run as
    the launchers run it; an interpreter without fluxlite is refused."""
    import subprocess

    probe = "import fluxlite, os; print(os.path.dirname(os.path.dirname(fluxlite.__file__)))"
    try:
        p = subprocess.run([python, "-I", "-c", probe], capture_output=True, text=True,
                           timeout=60, env={"PATH": os.defpath})
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UsageError(f"--python {python}: cannot be run: {err}") from err
    if p.returncode != 0 or not p.stdout.strip():
        raise UsageError(f"--python {python}: cannot import fluxlite")
    return p.stdout.strip()


def read_marker(home: Path) -> dict[str, object] | None:
    """The marker file of a package fluxlite wrote, or None when there is none."""
    try:
        doc = json.loads((home / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("made_by") == "fluxlite" else None


def _contents(home: Path, pegasus_version: str, python: str) -> dict[str, str]:
    files = {f"bin/{tool}": _launcher(python, cmd) for tool, cmd in TOOLS.items()}
    files["bin/pegasus-config"] = _config_script(home, pegasus_version, _python_dir(python))
    return files


def make(directory: str, pegasus_version: str, force: bool = False,
         python: str | None = None) -> Package:
    """Create (or bring up to date) the worker package in ``directory``.

    A directory that holds anything else than a package made by fluxlite is refused, with or
    without ``force``: nothing fluxlite did not create is ever replaced. An existing package
    for another Pegasus version or interpreter is replaced only with ``force``.
    """
    if not VERSION_RE.match(pegasus_version):
        raise UsageError(f"--pegasus-version must be X.Y.Z, as pegasus-config --version "
                         f"prints it: '{pegasus_version}'")
    python = os.path.abspath(python or sys.executable)
    home = Path(os.path.abspath(directory))
    if home.exists() and not home.is_dir():
        raise HomeError(f"{home}: exists and is not a directory", str(home))
    files = _contents(home, pegasus_version, python)
    marker = read_marker(home) if home.is_dir() else None
    if marker is None and home.is_dir() and any(home.iterdir()):
        raise HomeError(f"{home}: not empty and not a worker package made by fluxlite; "
                        "refusing to write into it", str(home))
    if marker is not None:
        same = (marker.get("pegasus_version") == pegasus_version
                and marker.get("python") == python and marker.get("fluxlite") == __version__
                and all(_unchanged(home / rel, text) for rel, text in files.items()))
        if same:
            return Package(home, pegasus_version, python, changed=False)
        if not force and (marker.get("pegasus_version") != pegasus_version
                          or marker.get("python") != python):
            raise HomeError(f"{home}: holds a worker package for Pegasus "
                            f"{marker.get('pegasus_version')} ({marker.get('python')}); "
                            "--force replaces it", str(home))
        _remove_ours(home, marker)
    try:
        (home / "bin").mkdir(parents=True, exist_ok=True)
        for rel, text in files.items():
            path = home / rel
            write_atomic(str(path), text.encode())
            os.chmod(path, MODE)
        doc = {"made_by": "fluxlite", "fluxlite": __version__,
               "pegasus_version": pegasus_version, "python": python,
               "files": sorted(files)}
        write_atomic(str(home / MARKER), json.dumps(doc, indent=1).encode())
    except OSError as err:
        raise FluxliteError(f"{home}: cannot write the worker package: "
                            f"{err.strerror or err}", path=str(home)) from err
    logger.debug("worker package for Pegasus %s in %s", pegasus_version, home)
    return Package(home, pegasus_version, python, changed=True)


def _unchanged(path: Path, text: str) -> bool:
    try:
        return path.read_text() == text and os.access(path, os.X_OK)
    except OSError:
        return False


def _remove_ours(home: Path, marker: dict[str, object]) -> None:
    """Remove the files an earlier run listed in its marker (and only those)."""
    listed = marker.get("files")
    for rel in listed if isinstance(listed, list) else []:
        if not isinstance(rel, str) or rel.startswith("/") or ".." in Path(rel).parts:
            continue
        try:
            (home / rel).unlink()
        except FileNotFoundError:
            pass
        except OSError as err:
            raise FluxliteError(f"{home / rel}: cannot replace: {err.strerror}",
                                path=str(home)) from err
