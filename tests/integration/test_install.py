"""Installing fluxlite as a site would: under the distribution name that is ours, from a
wheel built from this checkout into a virtualenv of its own; and the docs that say how."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# "fluxlite" on PyPI is another project: a user following our docs must never get it
NAME = "fluxlite-runtime"
# the other distributions the docs rightly tell a user to install, and why
OTHERS = {
    "flux-python": "the Flux bindings, pinned to the site's own flux-core (docs/flux.md)",
    "ply": "a dependency of the Flux bindings",
    "build": "PyPA's build frontend, to build the wheel and the sdist",
}
_PIP_INSTALL = re.compile(r"\bpip[x3]?\s+install\s+([^`\n]*)")
# options of pip install and pipx install that take a value (that is not a requirement)
_VALUED = {"--prefix", "--target", "-t", "--root", "-c", "--constraint", "-i", "--index-url",
           "--extra-index-url", "-f", "--find-links", "--python", "--src", "--upgrade-strategy",
           "--platform", "--python-version", "--implementation", "--abi", "--progress-bar",
           "--cache-dir", "--log", "--timeout", "--retries", "--proxy", "--cert",
           "--client-cert", "--trusted-host", "--exists-action", "--pip-args", "--suffix"}
_REQUIREMENT = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(?:[<>=!~;@].*)?$")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _is_local(word: str) -> bool:
    """A path of this checkout, a wheel or an sdist: what a site built itself."""
    path = re.sub(r"\[[^\]]*\]$", "", word)
    return (path in (".", "..") or path.startswith(("./", "../", "/", "$", "dist/"))
            or path.endswith((".whl", ".tar.gz", ".zip")))


def _words(args: str) -> list[str]:
    """The shell words of a command's arguments, up to the first operator (``&&``, ``|``,
    ``;``, a closing parenthesis of the sentence around it); a quote left open by the text
    around the command (a string in code) ends it there."""
    while True:
        lexer = shlex.shlex(args, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            words = list(lexer)
        except ValueError:
            args = args[:max(args.rfind("'"), args.rfind('"'))]
            continue
        end = next((i for i, w in enumerate(words) if set(w) <= set("();<>|&")), len(words))
        return words[:end]


def pip_installs(text: str) -> list[tuple[int, str]]:
    """Every distribution a text tells to install: (line, requirement) of each ``pip install``
    (``pip3``, ``pipx``, ``python -m pip``), in code blocks and inline code alike."""
    found = []
    for number, line in enumerate(text.split("\n"), 1):
        for match in _PIP_INSTALL.finditer(line):
            skip = False
            for word in _words(match.group(1)):
                if skip:
                    skip = False
                elif word in _VALUED:
                    skip = True
                elif not word.startswith("-"):
                    found.append((number, word))
    return found


def wrong_installs(text: str) -> list[str]:
    wrong = []
    for number, word in pip_installs(text):
        if _is_local(word):
            continue
        m = _REQUIREMENT.match(word)
        name = _normalized(m.group(1)) if m else word
        if name != NAME and name not in OTHERS:
            wrong.append(f"line {number}: pip install {word}")
    return wrong


def _texts() -> list[Path]:
    """What a user reads: the README, docs/, and the messages of the code itself."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
            *sorted((ROOT / "fluxlite").rglob("*.py"))]


def test_the_distribution_is_ours_and_its_license_an_spdx_expression() -> None:
    project = PYPROJECT["project"]
    assert project["name"] == NAME
    # a table is deprecated by setuptools (PEP 639): an SPDX expression, which needs 77
    assert project["license"] == "Apache-2.0"
    assert any(re.fullmatch(r"setuptools>=(7[7-9]|[89]\d)(\.\S*)?", r)
               for r in PYPROJECT["build-system"]["requires"])


def test_the_check_finds_every_form_of_a_wrong_name() -> None:
    text = ("pip install 'fluxlite[s3]'\n"
            "`python -m pip install --no-deps fluxlite==0.1`\n"
            "pipx install fluxlite-wms\n"
            "pip3 install -U --prefix /opt/x fluxlite_runtime[plot] requests\n")
    assert wrong_installs(text) == ["line 1: pip install fluxlite[s3]",
                                    "line 2: pip install fluxlite==0.1",
                                    "line 3: pip install fluxlite-wms",
                                    "line 4: pip install requests"]
    ours = ("pip install -e '.[test,s3]'\n`pip install 'fluxlite-runtime[s3]'`\n"
            "pip install dist/fluxlite_runtime-0.1.0-py3-none-any.whl\n"
            "pipx install \"$WHEEL[s3]\"\n"
            "pip install \"flux-python==$(flux version | awk '/^commands:/ {print $2}')\" ply\n")
    assert wrong_installs(ours) == []
    assert len(pip_installs(ours)) == 6


def test_every_pip_install_users_are_shown_names_our_distribution() -> None:
    wrong = {}
    seen = 0
    for path in _texts():
        text = path.read_text(encoding="utf-8")
        seen += len(pip_installs(text))
        if bad := wrong_installs(text):
            wrong[str(path.relative_to(ROOT))] = bad
    assert not wrong, f"install {NAME} (or a local wheel), never another name: {wrong}"
    assert seen >= 5  # the README's Install section, the extras in docs/, the messages


def test_every_page_of_the_docs_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Documentation\n", 1)[1].split("\n## ", 1)[0]
    linked = set(re.findall(r"\]\((docs/[^)#]+\.md)\)", section))
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages - linked == set(), "missing from README's Documentation list"
    assert linked - pages == set(), "listed but not in docs/"


def _venv_paths(venv: Path) -> tuple[Path, Path]:
    """(bin, site-packages) of a virtualenv, as this interpreter lays them out."""
    paths = sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})
    return Path(paths["scripts"]), Path(paths["purelib"])


def _env(venv_bin: Path) -> dict[str, str]:
    """A user's shell: the new installation's bin/ first, nothing of the test's virtualenv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("FLUX_")}
    path = [d for d in env.get("PATH", os.defpath).split(os.pathsep)
            if d and Path(d).resolve() != Path(sys.executable).parent.resolve()]
    env["PATH"] = os.pathsep.join([str(venv_bin), *path])
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``python -m build`` makes, through the sdist, from a copy of the checkout's
    sources (the build leaves its egg-info where it runs)."""
    pytest.importorskip("build", reason="the build package is not installed (the test extra)")
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (src / name).write_bytes((ROOT / name).read_bytes())
    shutil.copytree(ROOT / "fluxlite", src / "fluxlite",
                    ignore=shutil.ignore_patterns("__pycache__"))
    p = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir",
                        str(tmp / "dist"), str(src)], capture_output=True, text=True,
                       timeout=300, cwd=tmp)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    # setuptools' deprecations (a license table, ...) are warnings a site sees on every build
    assert "deprecat" not in (p.stdout + p.stderr).lower(), p.stdout + p.stderr
    (whl,) = (tmp / "dist").glob("*.whl")
    (sdist,) = (tmp / "dist").glob("*.tar.gz")
    assert whl.name.startswith("fluxlite_runtime-") and sdist.name.startswith("fluxlite_runtime-")
    return whl


def test_the_wheel_carries_every_file_of_the_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = z.read(meta).decode()
        entry_points = z.read(meta.replace("METADATA", "entry_points.txt")).decode()
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "fluxlite").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert sources - names == set()
    assert "fluxlite/schema/job.schema.json" in names and "fluxlite/stats/report.html" in names
    assert f"Name: {NAME}\n" in metadata and "License-Expression: Apache-2.0\n" in metadata
    for script in PYPROJECT["project"]["scripts"]:
        assert f"{script} = " in entry_points


def test_the_wheel_installed_in_a_fresh_virtualenv_runs_the_example(
        wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    vbin, site = _venv_paths(venv)
    p = subprocess.run([sys.executable, "-m", "pip", "--python", str(vbin / "python"),
                        "install", "-q", "--no-deps", "--no-index", str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    # the runtime dependencies, without a registry: the test virtualenv's, after the new
    # installation on sys.path (a .pth adds a directory, not the editable checkout it names)
    ours = sysconfig.get_paths()
    (site / "zz-runtime-deps.pth").write_text(
        "".join(f"{d}\n" for d in dict.fromkeys((ours["purelib"], ours["platlib"]))))
    env = _env(vbin)
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    probe = ("import sys, fluxlite, fluxlite.schema as s; print(fluxlite.__file__); "
             "print(s.SHIPPED.is_file()); print('\\n'.join(sys.path))")
    p = subprocess.run([str(vbin / "python"), "-c", probe], env=env, cwd=cwd,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    where, shipped, *path = p.stdout.splitlines()
    assert Path(where).is_relative_to(site), where
    assert shipped == "True"
    assert not any(Path(d).resolve() == ROOT for d in path if d)

    # the example job (examples/findrange), as run-example.sh runs it
    out = tmp_path / "example"
    job = subprocess.run([str(vbin / "python"), str(ROOT / "examples" / "make_job.py"),
                          str(ROOT / "examples" / "findrange"), str(out)], env=env, cwd=cwd,
                         capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    p = subprocess.run(["fluxlite", "run", job], env=env, cwd=cwd, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stderr.rstrip().endswith("PegasusLite: exitcode 0")
    assert (out / "results").is_dir() and any((out / "results").iterdir())
    p = subprocess.run(["fluxlite", "validate", job], env=env, cwd=cwd, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    # the report's page is a data file of the package
    p = subprocess.run(["fluxlite", "report", str(out), "-o", str(tmp_path / "r.html")],
                       env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "<html" in (tmp_path / "r.html").read_text()

    # the worker package a Pegasus site points PEGASUS_HOME at, whose tools run this
    # installation (named by its interpreter), and the gridstart script
    home = tmp_path / "pegasus-5.1.3"
    p = subprocess.run(["fluxlite", "pegasus-home", str(home), "--pegasus-version", "5.1.3"],
                       env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert str(vbin / "python") in (home / "bin" / "pegasus-kickstart").read_text()
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    p = subprocess.run([str(home / "bin" / "pegasus-config"), "--version"], env=bare,
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "5.1.3", p.stderr
    for kickstart in (home / "bin" / "pegasus-kickstart", vbin / "fluxlite-kickstart"):
        p = subprocess.run([str(kickstart), "-n", "tr", "-N", "ID1", "/bin/echo", "installed"],
                           env=bare, cwd=cwd, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert "installed" in p.stdout and "transformation: \"tr\"" in p.stdout


def test_a_prefix_install_makes_a_worker_package_whose_tools_run(
        wheel: Path, tmp_path: Path) -> None:
    """``pip install --prefix``: the commands run with the prefix on PYTHONPATH, and the
    worker package's tools, which start Python isolated (no PYTHONPATH in a job), still
    find that installation."""
    venv = tmp_path / "python"  # the site's interpreter, with the runtime dependencies only
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    vbin, site = _venv_paths(venv)
    ours = sysconfig.get_paths()
    (site / "zz-runtime-deps.pth").write_text(
        "".join(f"{d}\n" for d in dict.fromkeys((ours["purelib"], ours["platlib"]))))
    prefix = tmp_path / "prefix"
    p = subprocess.run([sys.executable, "-m", "pip", "--python", str(vbin / "python"),
                        "install", "-q", "--no-deps", "--no-index", "--prefix", str(prefix),
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    pbin, psite = _venv_paths(prefix)
    env = _env(pbin)
    env["PYTHONPATH"] = str(psite)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    home = tmp_path / "pegasus-5.1.3"
    p = subprocess.run(["fluxlite", "pegasus-home", str(home), "--pegasus-version", "5.1.3"],
                       env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    p = subprocess.run([str(home / "bin" / "pegasus-config"), "--python"], env=bare,
                       capture_output=True, text=True, timeout=60)
    assert Path(p.stdout.strip()) == psite, p.stderr
    p = subprocess.run([str(home / "bin" / "pegasus-kickstart"), "-n", "tr", "-N", "ID1",
                        "/bin/echo", "from the prefix"], env=bare, cwd=cwd,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "from the prefix" in p.stdout
