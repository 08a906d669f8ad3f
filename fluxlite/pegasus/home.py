"""A Pegasus worker package made of fluxlite: ``DIR/bin`` with the tools PegasusLite calls.

PegasusLite puts ``$PEGASUS_HOME/bin`` first on PATH and uses the tools there when
``pegasus-config --version`` prints the workflow's Pegasus version. Each tool here is a
launcher of the fluxlite installed for one interpreter, named by its absolute path and run
isolated (``-I``), so that neither the caller's PATH nor a PYTHONPATH or virtualenv leaking
into the job changes which fluxlite runs.

DIR may be shared with others, so nothing inside it is trusted: every name is opened
relative to DIR's descriptor, one component at a time, never following a link; files are
written under a temporary name and renamed. The marker lists each file written with its
sha256 at write time; it is a claim, checked before anything it lists is replaced or
removed: only a regular file whose content still has that hash counts as fluxlite's.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shlex
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from fluxlite import __version__
from fluxlite.errors import FluxliteError, UsageError

logger = logging.getLogger(__name__)

MARKER = ".fluxlite-pegasus-home.json"
MARKER_LIMIT = 1 << 16  # a marker is a few hundred bytes; anything larger is not ours
# the tool PegasusLite calls -> the fluxlite command it runs
TOOLS = {"pegasus-kickstart": "kickstart", "pegasus-transfer": "transfer",
         "pegasus-integrity": "integrity"}
MODE = stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH  # 0755
MIN_PYTHON = (3, 11)
# the only names any fluxlite writes in DIR besides its marker
_LAYOUT = re.compile(r"bin/pegasus-[a-z0-9-]{1,40}")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# the longest "#!INTERPRETER -I" line every Linux reads whole (BINPRM_BUF_SIZE before 5.1)
_SHEBANG_MAX = 127


class HomeError(UsageError):
    """A directory the worker package is refused to be written into."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class HomeWriteError(FluxliteError):
    """The worker package could not be written (the operating system refused): exit 71."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: cannot write the worker package: {reason}")
        self.path = path
        self.reason = reason


# -- Pegasus's version strings --------------------------------------------------------------
# what Pegasus prints: X.Y.Z, then a tag as its builds name them (5.1.3-dev.0 from
# pegasus-config, 5.1.3.dev0 from its Python packages, 5.2.0rc1)
_VERSION = re.compile(r"([0-9]{1,9})\.([0-9]{1,9})\.([0-9]{1,9}(?:[-.]?[A-Za-z0-9]{1,20}){0,6})")


@dataclass(frozen=True, slots=True)
class PegasusVersion:
    """A Pegasus version as the planner writes it into a PegasusLite job script.

    The planner splits its version at the first two dots (``major``, ``minor`` and the rest
    as ``patch``: ``5.1.3-dev.0`` -> 5, 1, ``3-dev.0``), and PegasusLite accepts a worker
    package when a line of its ``pegasus-config --version`` output matches the extended
    regular expression ``major\\.minor\\.patch$`` (pegasus_lite_internal_wp_in_env): the
    dots of the patch part match any character, and the line may start with anything.
    """

    text: str
    major: str
    minor: str
    patch: str

    @classmethod
    def parse(cls, text: str) -> PegasusVersion:
        """The version ``text`` names, or a UsageError (exit 2) naming it."""
        m = _VERSION.fullmatch(text)
        if m is None:
            raise UsageError(f"--pegasus-version must be a version as pegasus-version prints "
                             f"it (X.Y.Z, 5.1.3-dev.0, 5.1.3.dev0): {text!r}")
        return cls(text, m.group(1), m.group(2), m.group(3))

    def pattern(self) -> re.Pattern[str]:
        """PegasusLite's check, as Python: ``major\\.minor\\.patch$`` in ERE."""
        patch = "".join("." if c == "." else re.escape(c) for c in self.patch)
        return re.compile(rf"{re.escape(self.major)}\.{re.escape(self.minor)}\.{patch}\Z")

    def accepts(self, printed: str) -> bool:
        """Whether PegasusLite of this (planner) version uses a worker package whose
        ``pegasus-config --version`` prints ``printed``: grep matches line by line."""
        pat = self.pattern()
        return any(pat.search(line) for line in printed.split("\n"))


@dataclass(frozen=True, slots=True)
class Package:
    """A worker package written: where, and for which Pegasus version."""

    path: Path
    pegasus_version: str
    python: str
    changed: bool  # False: an identical package was already there
    left: tuple[str, ...] = ()  # entries the marker listed that were not fluxlite's: left


def _launcher(python: str, command: str, python_dir: str) -> str:
    """A tool: a Python script run by ``python -I`` itself, so that the job's environment
    reaches fluxlite as it is (a shell in between drops variables whose names it cannot
    hold, which kickstart records). ``python_dir``, where fluxlite was found, goes first on
    the path: the tool runs that fluxlite, also when it was installed with ``pip install
    --prefix`` (which ``-I`` would not see). An interpreter path no ``#!`` line can carry
    (blanks, too long) gets a sh launcher."""
    head = f"# pegasus worker tool made by fluxlite {__version__}: fluxlite {command}\n"
    body = (f"import sys\n\nsys.path.insert(0, {python_dir!r})\n"
            f"from fluxlite.cli import main  # noqa: E402\n\n"
            f"sys.exit(main([{command!r}, *sys.argv[1:]]))\n")
    shebang = f"#!{python} -I"
    if len(shebang) <= _SHEBANG_MAX and not re.search(r"\s", python):
        return f"{shebang}\n{head}{body}"
    return (f"#!/bin/sh\n{head}"
            f"exec {shlex.quote(python)} -I -c {shlex.quote(body)} \"$@\"\n")


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


# the probe --python must answer: it shows a Python of some version ran it (echo cannot
# print 42 for 6 * 7) and where it imports fluxlite from (the directory given after -c
# first on its path, as the launchers put it); written for any Python
_PROBE = """import json, os, sys
out = {"answer": 6 * 7, "python": list(sys.version_info[:2])}
if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])
try:
    import fluxlite
    out["path"] = os.path.dirname(os.path.dirname(os.path.abspath(fluxlite.__file__)))
except Exception as err:
    out["error"] = type(err).__name__
print(json.dumps(out))
"""


def _python_dir(python: str) -> str:
    """The directory ``python`` imports fluxlite from, run as the launchers run it: its own
    (a virtualenv, the system's), else, for the Python running this fluxlite, where this
    fluxlite lies (an install with ``--prefix``). Anything that is not a Python >= 3.11
    importing fluxlite is refused (exit 2)."""
    import sys

    own = str(Path(__file__).resolve().parents[2])  # the directory holding fluxlite/
    same = os.path.realpath(python) == os.path.realpath(sys.executable)
    path = _probe(python, [])
    if path is None and same:
        path = _probe(python, [own])
    if path is None:
        raise UsageError(f"--python {python}: cannot import fluxlite")
    return path


def _probe(python: str, first: list[str]) -> str | None:
    """Run the probe with ``python -I`` (``first`` on its path): where it imports fluxlite
    from, None when it cannot; a program that is not a Python >= 3.11 is refused."""
    import subprocess

    try:
        p = subprocess.run([python, "-I", "-c", _PROBE, *first], capture_output=True,
                           timeout=60, env={"PATH": os.defpath}, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as err:
        raise UsageError(f"--python {python}: did not answer within 60 s") from err
    except OSError as err:
        raise UsageError(f"--python {python}: cannot be run: "
                         f"{(err.strerror or str(err)).lower()}") from err
    try:
        doc = json.loads(p.stdout.decode("utf-8"))
        ok = (isinstance(doc, dict) and doc.get("answer") == 42
              and isinstance(doc.get("python"), list) and len(doc["python"]) == 2
              and all(type(n) is int for n in doc["python"]))
    except (UnicodeDecodeError, ValueError):
        ok = False
    if p.returncode != 0 or not ok:
        raise UsageError(f"--python {python}: is not a Python interpreter "
                         "(it does not run python -c)")
    version = tuple(doc["python"])
    if version < MIN_PYTHON:
        raise UsageError(f"--python {python}: is Python {version[0]}.{version[1]}; "
                         f"fluxlite needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later")
    path = doc.get("path")
    return path if isinstance(path, str) and path else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _contents(home: Path, version: PegasusVersion, python: str) -> dict[str, bytes]:
    python_dir = _python_dir(python)
    files = {f"bin/{tool}": _launcher(python, cmd, python_dir) for tool, cmd in TOOLS.items()}
    files["bin/pegasus-config"] = _config_script(home, version.text, python_dir)
    return {rel: text.encode() for rel, text in files.items()}


# -- DIR, opened without following links ----------------------------------------------------
def _parts(rel: str) -> list[str] | None:
    """The components of a relative name inside DIR, or None for a name that is not one
    (absolute, empty, ``.``, ``..``, a NUL)."""
    parts = rel.split("/")
    if not rel or "\0" in rel or any(p in ("", ".", "..") for p in parts):
        return None
    return parts


def _open_parent(dfd: int, parts: list[str], made: list[str] | None = None) -> int:
    """A descriptor of the directory holding ``parts[-1]``, reached from ``dfd`` one
    component at a time with O_NOFOLLOW: a link on the way is ELOOP/ENOTDIR, never
    followed. ``made``: create missing directories (0755, under the umask) and add their
    names (relative to DIR) to it."""
    fd = os.dup(dfd)
    try:
        for i, name in enumerate(parts[:-1]):
            try:
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if made is None:
                    raise
                os.mkdir(name, 0o755, dir_fd=fd)
                made.append("/".join(parts[:i + 1]))
                nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _read_regular(dfd: int, rel: str, limit: int) -> tuple[bytes, os.stat_result] | None:
    """The bytes and status of DIR/rel when it is a regular file reached without a link, of
    at most ``limit`` bytes; None for anything else (missing, a link, a FIFO, a directory)."""
    parts = _parts(rel)
    if parts is None:
        return None
    try:
        pfd = _open_parent(dfd, parts)
    except OSError:
        return None
    try:
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                     | os.O_NOCTTY, dir_fd=pfd)
    except OSError:
        return None
    finally:
        os.close(pfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        chunks, size = [], 0
        while size <= limit:
            b = os.read(fd, 1 << 16)
            if not b:
                break
            chunks.append(b)
            size += len(b)
        return (b"".join(chunks), st) if size <= limit else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _lexists(dfd: int, rel: str) -> bool:
    """Whether anything (a link included) is at DIR/rel, or something in the way of it (a
    link or a file where a directory should be)."""
    parts = _parts(rel)
    if parts is None:
        return True
    try:
        pfd = _open_parent(dfd, parts)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        os.stat(parts[-1], dir_fd=pfd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False
    except OSError:
        return True
    finally:
        os.close(pfd)


@dataclass(frozen=True, slots=True)
class Marker:
    """What a marker claims: the package it describes and the hash of each file."""

    pegasus_version: str
    python: str
    fluxlite: str
    files: dict[str, str]  # relative name -> sha256 at write time (unverified)
    owner: int  # the uid that wrote the marker, and so the files it lists


def read_marker(dfd: int) -> Marker | None:
    """The marker in the directory open at ``dfd``, or None when there is none that
    fluxlite could have written (a link, not JSON, another shape)."""
    found = _read_regular(dfd, MARKER, MARKER_LIMIT)
    if found is None:
        return None
    data, owner = found[0], found[1].st_uid
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("made_by") != "fluxlite":
        return None
    files = doc.get("files")
    # a marker of an older fluxlite lists names without hashes: nothing it lists verifies
    claimed = ({k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)}
               if isinstance(files, dict) else {})
    return Marker(str(doc.get("pegasus_version", "")), str(doc.get("python", "")),
                  str(doc.get("fluxlite", "")), claimed, owner)


def _verified(dfd: int, marker: Marker | None, rel: str) -> os.stat_result | None:
    """The status of DIR/rel when it is a file fluxlite wrote: a name fluxlite writes
    (``bin/pegasus-*``), listed in the marker, a regular file reached without a link, owned
    by whoever wrote the marker, with the content whose hash the marker recorded."""
    if marker is None or rel not in marker.files or _LAYOUT.fullmatch(rel) is None:
        return None
    found = _read_regular(dfd, rel, 1 << 20)
    if found is None or found[1].st_uid != marker.owner:
        return None
    return found[1] if _sha256(found[0]) == marker.files[rel] else None


def _ours(dfd: int, marker: Marker | None, rel: str) -> bool:
    return _verified(dfd, marker, rel) is not None


def _current(dfd: int, marker: Marker, rel: str, data: bytes) -> bool:
    """Whether DIR/rel is fluxlite's and already is ``data`` with the tools' mode."""
    st = _verified(dfd, marker, rel)
    return (st is not None and marker.files[rel] == _sha256(data)
            and stat.S_IMODE(st.st_mode) == MODE)


# -- making the package ---------------------------------------------------------------------
def make(directory: str, pegasus_version: str, force: bool = False,
         python: str | None = None) -> Package:
    """Create (or bring up to date) the worker package in ``directory``.

    A directory that holds anything else than a package made by fluxlite is refused, with or
    without ``force``: nothing fluxlite did not write is ever replaced or removed, and
    nothing is written through a link. An existing package for another Pegasus version or
    interpreter is replaced only with ``force``. Everything is checked before the first
    write; a write that fails leaves no temporary file (HomeWriteError, exit 71).
    """
    version = PegasusVersion.parse(pegasus_version)
    python = os.path.abspath(python or sys.executable)
    home = Path(os.path.abspath(directory))
    files = _contents(home, version, python)  # the --python probe, before any change
    try:
        st = os.stat(home)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise HomeError(f"{home}: cannot be examined: {_why(err)}", str(home)) from err
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise HomeError(f"{home}: exists and is not a directory", str(home))
    made: list[Path] = []  # DIR and the parents made for it: removed again on a failure
    if st is None:
        missing = [home, *(p for p in home.parents if not p.exists())]
        try:
            for d in reversed(missing):
                os.mkdir(d, 0o755)
                made.append(d)
        except OSError as err:
            _rmdirs(made)
            raise HomeWriteError(str(home), _why(err)) from err
    try:
        dfd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        _rmdirs(made)
        raise HomeError(f"{home}: cannot be opened: {_why(err)}", str(home)) from err
    try:
        return _make_in(dfd, home, version, python, files, force)
    except FluxliteError:
        _rmdirs(made)
        raise
    finally:
        os.close(dfd)


def _rmdirs(made: list[Path]) -> None:
    """Remove the directories this run made, innermost first (rmdir: only when empty)."""
    for d in reversed(made):
        try:
            os.rmdir(d)
        except OSError:
            return


def _why(err: OSError) -> str:
    return (err.strerror or str(err)).lower()


def _make_in(dfd: int, home: Path, version: PegasusVersion, python: str,
             files: dict[str, bytes], force: bool) -> Package:
    marker = read_marker(dfd)
    try:
        entries = os.listdir(dfd)
    except OSError as err:
        raise HomeError(f"{home}: cannot be read: {_why(err)}", str(home)) from err
    if marker is None and entries:
        raise HomeError(f"{home}: not empty and not a worker package made by fluxlite; "
                        "refusing to write into it", str(home))
    if marker is not None:
        same_package = marker.pegasus_version == version.text and marker.python == python
        if (same_package and marker.fluxlite == __version__
                and all(_current(dfd, marker, rel, data) for rel, data in files.items())):
            return Package(home, version.text, python, changed=False)
        if not force and not same_package:
            raise HomeError(f"{home}: holds a worker package for Pegasus "
                            f"{marker.pegasus_version} ({marker.python}); --force replaces it",
                            str(home))
    # every place a file goes must be free or hold a file fluxlite wrote
    for rel in files:
        if _lexists(dfd, rel) and not _ours(dfd, marker, rel):
            raise HomeError(f"{home / rel}: not a file this package's marker shows fluxlite "
                            "wrote (a link, or changed since); refusing to replace it",
                            str(home))
    stale = [rel for rel in (marker.files if marker else {}) if rel not in files]
    removable = [rel for rel in stale if _ours(dfd, marker, rel)]
    left = tuple(rel for rel in stale if rel not in removable and _lexists(dfd, rel))
    doc = {"made_by": "fluxlite", "fluxlite": __version__, "pegasus_version": version.text,
           "python": python, "files": {rel: _sha256(data) for rel, data in sorted(files.items())}}
    _write_all(dfd, home, {**files, MARKER: json.dumps(doc, indent=1).encode() + b"\n"})
    for rel in removable:
        _unlink(dfd, home, rel)
    if left:
        shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
        logger.warning("%s: left as they are, not files fluxlite wrote (links, or changed "
                       "since): %s", home, shown)
    logger.debug("worker package for Pegasus %s in %s", version.text, home)
    return Package(home, version.text, python, changed=True, left=left)


def _write_all(dfd: int, home: Path, files: dict[str, bytes]) -> None:
    """Write every file under a temporary name first, then rename each over its place (the
    marker last): a failure before the renames changes nothing and leaves nothing."""
    staged: list[tuple[int, str, str]] = []  # (parent fd, temporary name, final name)
    made: list[str] = []  # directories made inside DIR (bin): removed again on a failure
    done = False
    try:
        for rel, data in files.items():
            parts = _parts(rel)
            assert parts is not None
            where = home / rel
            try:
                pfd = _open_parent(dfd, parts, made)
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise HomeError(f"{where.parent}: is a link or not a directory; "
                                    "refusing to write through it", str(home)) from err
                raise HomeWriteError(str(where.parent), _why(err)) from err
            tmp = f".{parts[-1]}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
            staged.append((pfd, tmp, parts[-1]))
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=pfd)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fchmod(fd, MODE if rel != MARKER else 0o644)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as err:
                raise HomeWriteError(str(where), _why(err)) from err
        for i, (pfd, tmp, name) in enumerate(staged):
            try:
                os.replace(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
            except OSError as err:
                raise HomeWriteError(str(home / name), _why(err)) from err
            staged[i] = (pfd, "", name)
        done = True
    finally:
        for pfd, tmp, _ in staged:
            if tmp:
                try:
                    os.unlink(tmp, dir_fd=pfd)
                except OSError:
                    pass
            os.close(pfd)
        for rel in reversed(made if not done else []):
            try:
                os.rmdir(rel, dir_fd=dfd)
            except OSError:
                break


def _unlink(dfd: int, home: Path, rel: str) -> None:
    """Remove DIR/rel, a file verified as fluxlite's; unlink never follows a link."""
    parts = _parts(rel)
    assert parts is not None
    try:
        pfd = _open_parent(dfd, parts)
    except OSError:
        return
    try:
        os.unlink(parts[-1], dir_fd=pfd)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise HomeWriteError(str(home / rel), f"cannot remove: {_why(err)}") from err
    finally:
        os.close(pfd)
