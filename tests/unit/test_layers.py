"""Which module may do what, read from the sources' syntax trees (imports inside functions
included): ``fluxlite.flux`` is a leaf adapter that imports nothing of ``fluxlite.cluster``,
and ``execute`` neither of them; every Flux job verb (submit, the eventlog watches, kill,
cancel, the result, job-list) is called in ``flux/jobs.py`` only; every local fork and kill
is ``execute/``'s."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import fluxlite

PACKAGE = Path(fluxlite.__file__).parent

#: the calls of flux-core's ``flux.job`` that submit, follow, signal or wait for a job
JOB_VERBS = frozenset({
    "submit", "submit_async", "event_watch", "event_watch_async", "event_wait",
    "event_wait_async", "kill", "kill_async", "cancel", "cancel_async", "result",
    "result_async", "wait", "wait_async", "job_list", "job_list_id", "FluxExecutor"})
#: the calls of ``os`` that start or signal local processes
PROCESS_CALLS = frozenset({"fork", "forkpty", "kill", "killpg"})


def _sources(under: Path = PACKAGE) -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(under.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        yield rel, ast.parse(path.read_text(), filename=str(path))


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for an attribute chain over a name (the chain's text), else ''."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    return ".".join([node.id, *reversed(parts)])


def _job_verb_uses(tree: ast.Module) -> list[str]:
    """Where a module names a job verb of ``flux.job``: imported from it, or called on it
    (``flux.job.submit``, ``self.flux.job.cancel``, an alias of ``flux.job``)."""
    aliases = {"flux.job"}
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update(a.asname for a in node.names if a.name == "flux.job" and a.asname)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "flux":
                aliases.update(a.asname or a.name for a in node.names if a.name == "job")
            elif node.module.startswith("flux.job"):
                found += [f"line {node.lineno}: from {node.module} import {a.name}"
                          for a in node.names if a.name in JOB_VERBS]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in JOB_VERBS:
            owner = _dotted(node.value)
            if owner in aliases or owner.endswith(".flux.job") or owner == "flux.job":
                found.append(f"line {node.lineno}: {owner}.{node.attr}")
    return found


def test_only_flux_jobs_calls_the_flux_job_verbs() -> None:
    bad = {rel: uses for rel, tree in _sources() if rel != "flux/jobs.py"
           for uses in [_job_verb_uses(tree)] if uses}
    assert bad == {}, "Flux job traffic outside flux/jobs.py (FluxJobs)"


def test_the_check_of_job_verbs_sees_every_spelling() -> None:
    tree = ast.parse("import flux.job\nimport flux.job as fj\nfrom flux import job\n"
                     "from flux.job import event_watch\n"
                     "flux.job.submit(h, js)\nfj.cancel(h, 1)\njob.kill_async(h, 1)\n"
                     "self.flux.job.event_watch_async(h, 1)\nflux.job.JobID(1)\n")
    assert [u.split(":")[0] for u in _job_verb_uses(tree)] == [
        "line 4", "line 5", "line 6", "line 7", "line 8"]


def _imports_of(package: str, above: tuple[str, ...]) -> list[str]:
    """Where a subpackage imports one of the packages ``above`` it."""
    bad: list[str] = []
    for rel, tree in _sources(PACKAGE / package):
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{rel}:{node.lineno}: {n}" for n in names
                    if any(n == p or n.startswith(p + ".") for p in above)]
    return bad


def test_flux_imports_nothing_of_cluster() -> None:
    assert _imports_of("flux", ("fluxlite.cluster",)) == [], (
        "fluxlite.flux is a leaf adapter: it imports nothing of cluster")


def test_execute_imports_neither_flux_nor_cluster() -> None:
    assert _imports_of("execute", ("fluxlite.flux", "fluxlite.cluster")) == [], (
        "execute/ (the local processes) sits below flux/ and cluster/")


def test_every_local_fork_and_kill_is_in_execute() -> None:
    bad: list[str] = []
    for rel, tree in _sources():
        if rel.startswith("execute/"):
            continue
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr in PROCESS_CALLS
                    and _dotted(node.value) == "os"):
                bad.append(f"{rel}:{node.lineno}: os.{node.attr}")
            elif isinstance(node, ast.ImportFrom) and node.module == "os":
                bad += [f"{rel}:{node.lineno}: from os import {a.name}" for a in node.names
                        if a.name in PROCESS_CALLS]
    assert bad == [], "a local fork or kill outside execute/"
