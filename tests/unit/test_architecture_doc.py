"""``docs/architecture.md`` stays true to the code: every package of fluxlite is named in it,
every public method of the four contracts (``Launcher``, ``Executor``, the staging
``Backend``, ``RunStrategy``) is on it, and every module, directory or dotted name of
fluxlite it names in backticks exists. Everything is read from the filesystem and the
sources' syntax trees, so a package or a method added later is asked for without editing
this test."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import fluxlite

PACKAGE = Path(fluxlite.__file__).parent
ROOT = PACKAGE.parent
PAGE = ROOT / "docs" / "architecture.md"

#: the contracts: (module under fluxlite/, class)
CONTRACTS = (
    ("execute/base.py", "Launcher"),
    ("cluster/executors.py", "Executor"),
    ("staging/base.py", "Backend"),
    ("strategy.py", "RunStrategy"),
)

# ``fluxlite/spec.py`` is becoming the package ``fluxlite/spec/``, and with it
# ``staging/transfer_run.py`` and ``staging/localfile.py`` arrive; the page already describes
# that layout. While the module ``spec.py`` is still here, these (and only these) may be
# named without existing; once it is gone, they must exist like every other path.
ARRIVING_WITH_SPEC_PACKAGE = ("spec/", "staging/transfer_run.py", "staging/localfile.py")


def _page() -> str:
    return PAGE.read_text()


def _backticked(text: str) -> list[str]:
    """Every inline code span of the page (a fenced block's lines are not spans)."""
    body = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", body)


def _subpackages() -> list[str]:
    """Every package below fluxlite/ (a directory with an ``__init__.py``, at any depth),
    as ``cluster/pool/``, plus ``spec/`` whether it is a package yet or still a module."""
    found = {p.parent.relative_to(PACKAGE).as_posix() + "/"
             for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE}
    found.add("spec/")
    return sorted(found)


def _tolerated(name: str) -> bool:
    return (PACKAGE / "spec.py").is_file() and any(
        name == a or (a.endswith("/") and name.startswith(a)) for a in ARRIVING_WITH_SPEC_PACKAGE)


def _exists(name: str) -> bool:
    """A path the page names: from the repository's root, from fluxlite/, or (for a short
    form such as ``pool/worker.py`` or ``http.py``) the tail of a path below fluxlite/."""
    name = name.removeprefix("fluxlite/")
    if (ROOT / name).exists() or (PACKAGE / name).exists():
        return True
    want = name.rstrip("/")
    every = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*")
             if "__pycache__" not in p.parts]
    return any(p == want or p.endswith("/" + want) for p in every)


def _public_methods(rel: str, cls: str) -> list[str]:
    tree = ast.parse((PACKAGE / rel).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return [m.name for m in node.body
                    if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and not m.name.startswith("_")]
    raise AssertionError(f"no class {cls} in fluxlite/{rel}")


def test_every_subpackage_is_named() -> None:
    text = _page()
    spans = set(_backticked(text))
    missing = [p for p in _subpackages()
               if p not in spans and f"fluxlite/{p}" not in spans]
    assert not missing, f"packages not named (as `name/`) in docs/architecture.md: {missing}"


def test_every_contract_method_is_on_the_page() -> None:
    text = _page()
    missing = []
    for rel, cls in CONTRACTS:
        methods = _public_methods(rel, cls)
        assert methods, f"{cls} has no public method"
        assert f"`{cls}`" in text, f"{cls} not named in docs/architecture.md"
        missing += [f"{cls}.{m}" for m in methods
                    if not re.search(rf"`(\w+\.)?{re.escape(m)}\b[^`]*`", text)]
    assert not missing, f"contract methods not on docs/architecture.md: {missing}"


def test_every_named_path_exists() -> None:
    names = {tok for span in _backticked(_page()) for tok in span.split()
             if re.fullmatch(r"[\w./-]+(\.py|/)", tok) and "://" not in tok}
    assert len(names) > 20, "too few paths found: the page's form changed?"
    false = sorted(n for n in names if not _exists(n) and not _tolerated(n))
    assert not false, f"docs/architecture.md names paths that do not exist: {false}"


def _resolves(dotted: str) -> bool:
    """``execute.base.Launcher``: the longest importable module of fluxlite, then attributes."""
    parts = dotted.removeprefix("fluxlite.").split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module("fluxlite." + ".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_every_dotted_name_resolves() -> None:
    """A backticked ``module.Name`` whose first part is a module of fluxlite exists."""
    tops = {p.stem for p in PACKAGE.iterdir()
            if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.stem != "__init__"}
    names = set()
    for span in _backticked(_page()):
        m = re.fullmatch(r"(?:fluxlite\.)?([a-z_]+(?:\.\w+)+)(?:\(.*\))?", span)
        # ``flux.job`` is flux-core's own module, which the page names beside fluxlite's ``flux``
        if (m and m.group(1).split(".")[0] in tops and not m.group(1).endswith(".py")
                and not m.group(1).startswith("flux.job")):
            names.add(m.group(1))
    assert names, "no dotted names found: the page's form changed?"
    false = sorted(n for n in names if not _resolves(n))
    assert not false, f"docs/architecture.md names what does not exist: {false}"
