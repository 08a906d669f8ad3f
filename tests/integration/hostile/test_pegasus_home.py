"""Hostile worker-package directories and command lines for ``fluxlite pegasus-home``.

DIR may be shared, so what is in it is an adversary's: links where directories should be, a
marker written by hand. The cases run fluxlite as an ordinary user (nobody) in a temporary
directory of their own, with canaries outside DIR that must come through unchanged; the
directory is removed afterwards (links removed, never followed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, Fluxlite
from tests.integration.hostile.test_cluster import in_tmpfs

NOBODY = 65534
MARKER = ".fluxlite-pegasus-home.json"
TOOLS = ["pegasus-config", "pegasus-integrity", "pegasus-kickstart", "pegasus-transfer"]


@pytest.fixture
def sandbox() -> Iterator[Path]:
    """A directory nobody owns, outside the test's 0700 tree, with an interpreter nobody can
    run that imports this checkout's fluxlite (``venv/bin/python``: the system's python3
    and a .pth file naming a copy of the package that nobody can read, wherever the checkout
    lies); skipped unless this runs as root with setpriv and that works."""
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run fluxlite as an ordinary user")
    d = Path(tempfile.mkdtemp(prefix="fluxlite-home-hostile-"))
    d.chmod(0o755)
    try:
        venv = subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip",
                               str(d / "venv")], capture_output=True, timeout=120)
        site = list((d / "venv" / "lib").glob("python3*/site-packages"))
        if venv.returncode == 0 and site:
            shutil.copytree(ROOT / "fluxlite", d / "src" / "fluxlite",
                            ignore=shutil.ignore_patterns("__pycache__"))
            for p in (d / "src").rglob("*"):
                p.chmod(0o755 if p.is_dir() else 0o644)
            (d / "src").chmod(0o755)
            (site[0] / "fluxlite-checkout.pth").write_text(f"{d / 'src'}\n")
        seen = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                               "--clear-groups", str(d / "venv" / "bin" / "python"), "-c",
                               "import sys, fluxlite; assert sys.version_info >= (3, 11)"],
                              cwd="/", capture_output=True, timeout=60)
        if seen.returncode != 0:
            pytest.skip("an ordinary user cannot run fluxlite with /usr/bin/python3 (a "
                        "Python 3.11 or later is needed there)")
        home = d / "sandbox"
        home.mkdir(mode=0o755)
        os.chown(home, NOBODY, NOBODY)
        yield home
    finally:
        for p in d.rglob("*"):  # a test may leave a directory without write permission
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        shutil.rmtree(d)  # made above; rmtree removes links, never what they point to


def nobody_python(sandbox: Path) -> str:
    return str(sandbox.parent / "venv" / "bin" / "python")


def give(*paths: Path) -> None:
    """Hand files made here to nobody, links themselves included (never their targets)."""
    for top in paths:
        for p in [top, *(top.rglob("*") if top.is_dir() and not top.is_symlink() else [])]:
            os.lchown(p, NOBODY, NOBODY)


def home_as_nobody(sandbox: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups", nobody_python(sandbox), "-m", "fluxlite",
                           "pegasus-home",
                           *args], cwd=sandbox, capture_output=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(sandbox)})


def one_line(p: subprocess.CompletedProcess[bytes], code: int, *words: str) -> str:
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == code, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], err
    return lines[0]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def forged_marker(home: Path, files: dict[str, str] | list[str], python: str) -> None:
    """A marker as anyone who can write in DIR could write it, for ``python``."""
    (home / MARKER).write_text(json.dumps({
        "made_by": "fluxlite", "fluxlite": "0.0.0", "pegasus_version": "5.1.3",
        "python": python, "files": files}))


# ------------------------------------------------------------------ links inside DIR

@pytest.mark.parametrize("claim", ["names", "hashes"])
def test_a_marker_naming_a_file_behind_a_link_deletes_nothing(sandbox: Path,
                                                              claim: str) -> None:
    """DIR/etc links to another directory; a hand-written marker lists etc/passwd (as a
    name, or with the right sha256): that passwd is not fluxlite's and stays."""
    other = sandbox / "other"
    other.mkdir()
    canary = other / "passwd"
    canary.write_bytes(b"root:x:0:0::/root:/bin/sh\n")
    home = sandbox / "home"
    home.mkdir()
    (home / "etc").symlink_to(other)
    listed = ["etc/passwd", "bin/pegasus-kickstart"]
    forged_marker(home, listed if claim == "names" else
                  {"etc/passwd": sha(canary.read_bytes()), "bin/pegasus-kickstart": "0" * 64},
                  nobody_python(sandbox))
    give(other, home)
    p = home_as_nobody(sandbox, str(home), "--pegasus-version", "5.1.3")
    err = p.stderr.decode()
    assert p.returncode == 0, err
    assert canary.read_bytes() == b"root:x:0:0::/root:/bin/sh\n"
    assert (home / "etc").is_symlink() and os.readlink(home / "etc") == str(other)
    assert sorted(x.name for x in (home / "bin").iterdir()) == TOOLS
    if claim == "hashes":  # the claim that did not verify is told, in one line
        one_line(p, 0, "left as they are", "etc/passwd")


@pytest.mark.parametrize("force", [False, True])
def test_a_linked_bin_is_never_written_through(sandbox: Path, force: bool) -> None:
    """DIR/bin replaced by a link to another directory: nothing is written there."""
    home = sandbox / "home"
    elsewhere = sandbox / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "pegasus-kickstart").write_text("mine\n")
    give(elsewhere)
    assert home_as_nobody(sandbox, str(home), "--pegasus-version", "5.1.3").returncode == 0
    shutil.rmtree(home / "bin")
    (home / "bin").symlink_to(elsewhere)
    give(home)
    args = ["--pegasus-version", "5.1.2", *(["--force"] if force else [])]
    p = home_as_nobody(sandbox, str(home), *args)
    one_line(p, 2, str(home))
    assert sorted(x.name for x in elsewhere.iterdir()) == ["pegasus-kickstart"]
    assert (elsewhere / "pegasus-kickstart").read_text() == "mine\n"
    assert (home / "bin").is_symlink()
    assert [x.name for x in home.iterdir() if x.name.startswith(".") and x.name != MARKER] == []


def test_a_launcher_replaced_by_a_link_is_not_written_through(sandbox: Path) -> None:
    home = sandbox / "home"
    assert home_as_nobody(sandbox, str(home), "--pegasus-version", "5.1.3").returncode == 0
    target = sandbox / "target"
    target.write_text("keep\n")
    (home / "bin" / "pegasus-kickstart").unlink()
    (home / "bin" / "pegasus-kickstart").symlink_to(target)
    give(target, home)
    p = home_as_nobody(sandbox, str(home), "--pegasus-version", "5.1.2", "--force")
    one_line(p, 2, "bin/pegasus-kickstart")
    assert target.read_text() == "keep\n"
    assert (home / "bin" / "pegasus-kickstart").is_symlink()


# ------------------------------------------------------------------ the marker is a claim

def test_a_listed_file_that_changed_is_not_replaced(sandbox: Path) -> None:
    """A launcher its owner edited after fluxlite wrote it is no longer fluxlite's."""
    home = sandbox / "home"
    assert home_as_nobody(sandbox, str(home), "--pegasus-version", "5.1.3").returncode == 0
    edited = home / "bin" / "pegasus-transfer"
    edited.write_text("#!/bin/sh\n# a site's own pegasus-transfer\n")
    for args in (("5.1.3",), ("5.1.2", "--force")):  # brought up to date, or replaced
        p = home_as_nobody(sandbox, str(home), "--pegasus-version", *args)
        one_line(p, 2, "bin/pegasus-transfer", "refusing to replace it")
        assert edited.read_text() == "#!/bin/sh\n# a site's own pegasus-transfer\n"
    assert b"5.1.3" in subprocess.run([str(home / "bin" / "pegasus-config"), "--version"],
                                      capture_output=True, timeout=30).stdout


def test_a_forged_marker_cannot_remove_another_users_file(sandbox: Path,
                                                          fl: Fluxlite) -> None:
    """nobody may write in DIR/bin but not remove root's file there (sticky, as /tmp): a
    marker nobody forges, listing that file with its right sha256, does not make root's
    pegasus-home --force remove it."""
    home = sandbox / "home"
    assert home_as_nobody(sandbox, str(home), "--pegasus-version", "5.1.3").returncode == 0
    (home / "bin").chmod(0o1777)
    roots = home / "bin" / "pegasus-notes"
    roots.write_text("root's own notes\n")  # root's, written by root
    doc = json.loads((home / MARKER).read_text())
    doc["files"]["bin/pegasus-notes"] = sha(roots.read_bytes())
    (home / MARKER).unlink()
    (home / MARKER).write_text(json.dumps(doc))
    give(home / MARKER)  # the marker is nobody's: whoever forged it
    p = fl.run("pegasus-home", str(home), "--pegasus-version", "5.1.2", "--force")
    assert p.returncode == 0, p.stderr
    assert roots.read_text() == "root's own notes\n"
    one_line(p, 0, "left as they are", "bin/pegasus-notes")


def test_files_a_real_marker_lists_are_replaced_and_removed(sandbox: Path) -> None:
    """What fluxlite wrote is still fluxlite's: --force replaces it, a tool no longer made
    is removed."""
    home = sandbox / "home"
    assert home_as_nobody(sandbox, str(home), "--pegasus-version", "5.1.3").returncode == 0
    old = home / "bin" / "pegasus-retired"
    old.write_text("made by an older fluxlite\n")
    doc = json.loads((home / MARKER).read_text())
    doc["files"]["bin/pegasus-retired"] = sha(old.read_bytes())
    (home / MARKER).write_text(json.dumps(doc))
    give(home)
    p = home_as_nobody(sandbox, str(home), "--pegasus-version", "5.1.2", "--force")
    assert p.returncode == 0 and p.stderr == b"", p.stderr
    assert not old.exists()
    assert sorted(x.name for x in (home / "bin").iterdir()) == TOOLS


# ------------------------------------------------------------------ write failures

def test_a_directory_that_cannot_be_written_is_one_line_and_71(sandbox: Path) -> None:
    home = sandbox / "home"
    assert home_as_nobody(sandbox, str(home), "--pegasus-version", "5.1.3").returncode == 0
    before = {p.name: p.read_bytes() for p in (home / "bin").iterdir()}
    (home / "bin").chmod(0o555)
    p = home_as_nobody(sandbox, str(home), "--pegasus-version", "5.1.2", "--force")
    one_line(p, 71, "cannot write the worker package", "permission denied")
    assert {p.name: p.read_bytes() for p in (home / "bin").iterdir()} == before
    assert json.loads((home / MARKER).read_text())["pegasus_version"] == "5.1.3"
    assert sorted(x.name for x in home.iterdir()) == [MARKER, "bin"]  # no temporaries
    new = sandbox / "ro"
    new.mkdir(mode=0o555)
    give(new)
    p2 = home_as_nobody(sandbox, str(new / "pkg"), "--pegasus-version", "5.1.3")
    one_line(p2, 71, "cannot write the worker package")


def test_a_full_filesystem_is_one_line_and_71_and_leaves_no_temporaries(fl: Fluxlite) -> None:
    mnt = fl.tmp / "mnt"
    py = sys.executable
    p = in_tmpfs(fl, mnt, f"""
{py} -m fluxlite pegasus-home {mnt}/pkg --pegasus-version 5.1.3 || exit 98
dd if=/dev/zero of={mnt}/fill bs=1k count=4096 2>/dev/null
{py} -m fluxlite pegasus-home {mnt}/pkg --pegasus-version 5.1.2 --force
echo "rc=$?" >&2
{py} -m fluxlite pegasus-home {mnt}/new/pkg --pegasus-version 5.1.3
echo "rc=$?" >&2
[ -e {mnt}/new ] && echo "new: left behind" >&2
ls -A {mnt}/pkg {mnt}/pkg/bin >&2
{mnt}/pkg/bin/pegasus-config --version >&2
""", size="64k")
    err = p.stderr.decode()
    assert p.returncode == 0, err
    lines = err.splitlines()
    assert [ln for ln in lines if ln.startswith("rc=")] == ["rc=71", "rc=71"], err
    assert "Traceback" not in err
    errors = [ln for ln in lines if ln.startswith("fluxlite:")]
    assert len(errors) == 2 and all("no space left on device" in e for e in errors), err
    assert "new: left behind" not in lines  # the directories it made are gone again
    assert not any(".tmp-" in ln for ln in lines), err  # no temporary left behind
    assert lines[-1] == "5.1.3"  # the package as it was


# ------------------------------------------------------------------ command line

@pytest.mark.parametrize("version", ["5.1.3\n", "5.1.3\n5.1.2", " 5.1.3", "5.1.3 ",
                                     "5.1", "5.1.3$(id)", "5.1.3;x", "\u0665.1.3",
                                     "5.1.3-", "5..1.3", "5.1.3\x00", "1" * 200 + ".1.1"])
def test_a_version_pegasus_could_not_print_is_refused(fl: Fluxlite, version: str) -> None:
    d = fl.tmp / "pkg"
    p = fl.run("pegasus-home", str(d), "--pegasus-version", version.replace("\x00", "\\0"))
    one_line(p, 2, "--pegasus-version must be a version")
    assert not d.exists()


@pytest.mark.parametrize("python", ["/bin/echo", "/bin/true", "/bin/false", "/dev/null",
                                    "/no/such/python", "fake39", "fake-no-fluxlite"])
def test_python_must_be_a_python_that_imports_fluxlite(fl: Fluxlite, python: str) -> None:
    fakes = {  # programs that answer the probe as an old Python, or one without fluxlite
        "fake39": '#!/bin/sh\necho \'{"answer": 42, "python": [3, 9]}\'\n',
        "fake-no-fluxlite": '#!/bin/sh\necho \'{"answer": 42, "python": [3, 12], '
                            '"error": "ModuleNotFoundError"}\'\n'}
    if python in fakes:
        (fl.tmp / python).write_text(fakes[python])
        (fl.tmp / python).chmod(0o755)
        python = str(fl.tmp / python)
    d = fl.tmp / "pkg"
    p = fl.run("pegasus-home", str(d), "--pegasus-version", "5.1.3", "--python", python)
    line = one_line(p, 2, f"--python {python}")
    if "fake39" in python:
        assert "is Python 3.9; fluxlite needs 3.11 or later" in line
    if "fake-no-fluxlite" in python:
        assert "cannot import fluxlite" in line
    assert not d.exists()
