"""Runs a DAG that Pegasus's planner wrote, job by job, as HTCondor would run it here.

What stands in for HTCondor (none of HTCondor is installed):
- DAGMan: the ``.dag``'s JOB, PARENT/CHILD and SCRIPT POST lines; nodes run one at a time
  in an order that respects the edges; each node is judged by its own POST script
  (pegasus-exitcode, as the planner wrote its command line) with ``$RETURN`` and ``$JOB``.
- the local universe: the ``.sub``'s executable, arguments, environment (nothing else of
  ours leaks in), initialdir, input, output and error.
- the gridmanager for ``grid_resource = batch flux``: it copies the executable and
  ``transfer_input_files`` into a sandbox, which becomes the job's initial directory, hands
  the job to BLAHP's own ``flux_submit.sh`` with the options blahpd gives it, waits for the
  Flux job, asks ``flux_status.sh`` for the exit code, and copies stdout, stderr and
  ``transfer_output_files`` back to the job's initial directory.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

MACRO_RE = re.compile(r"\$\(([A-Za-z0-9_.+-]+)\)")


def condor_words(value: str) -> list[str]:
    """An arguments or environment value in HTCondor's syntax: the new one (in double
    quotes, split on spaces, single quotes group, doubled quotes are literal) or the old
    one (split on spaces, or on ``;`` for an environment)."""
    v = value.strip()
    if not (len(v) >= 2 and v[0] == '"' and v[-1] == '"'):
        return v.split()
    v = v[1:-1].replace('""', '"')
    words: list[str] = []
    cur: list[str] = []
    quoted = started = False
    i = 0
    while i < len(v):
        c = v[i]
        if quoted:
            if c == "'" and v[i + 1:i + 2] == "'":
                cur.append("'")
                i += 1
            elif c == "'":
                quoted = False
            else:
                cur.append(c)
        elif c == "'":
            quoted = started = True
        elif c.isspace():
            if started:
                words.append("".join(cur))
                cur, started = [], False
        else:
            cur.append(c)
            started = True
        i += 1
    if started:
        words.append("".join(cur))
    return words


def condor_env(value: str) -> dict[str, str]:
    v = value.strip()
    words = condor_words(v) if v.startswith('"') else [w for w in v.split(";") if w]
    return dict(w.split("=", 1) for w in words if "=" in w)


@dataclass
class Submit:
    """A ``.sub`` file: its commands, with macros expanded."""

    path: Path
    cmds: dict[str, str]

    @classmethod
    def read(cls, path: Path, cluster: int) -> Submit:
        raw: dict[str, str] = {}
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or line == "queue" or "=" not in line:
                continue
            k, v = line.split("=", 1)
            raw[k.strip().lower()] = v.strip()
        builtins = {"cluster": str(cluster), "process": "0"}

        def expand(v: str, depth: int = 0) -> str:
            def one(m: re.Match[str]) -> str:
                name = m.group(1).lower()
                if name in builtins:
                    return builtins[name]
                for key in (name, "+" + name):  # +attr is also $(attr)
                    if key in raw and depth < 10:
                        return expand(raw[key], depth + 1)
                return m.group(0)
            return MACRO_RE.sub(one, v)
        return cls(path, {k: expand(v) for k, v in raw.items()})

    def get(self, key: str, default: str = "") -> str:
        return self.cmds.get(key, default)

    def flag(self, key: str, default: bool) -> bool:
        v = self.cmds.get(key)
        return default if v is None else v.strip().lower() in ("true", "yes", "1")

    def iwd(self, dagdir: Path) -> Path:
        d = self.get("initialdir")
        return dagdir / d if d else dagdir

    def path_in(self, key: str, base: Path) -> Path | None:
        v = self.get(key)
        if not v:
            return None
        p = Path(v)
        return p if p.is_absolute() else base / p


@dataclass
class Node:
    name: str
    sub: str
    post: list[str] = field(default_factory=list)
    parents: set[str] = field(default_factory=set)


@dataclass
class NodeResult:
    name: str
    universe: str
    job_exit: int
    post_exit: int
    post_output: str
    out: Path | None
    seconds: float


def read_dag(path: Path) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    for line in path.read_text().splitlines():
        w = line.split()
        if not w or w[0].startswith("#"):
            continue
        if w[0] == "JOB":
            nodes[w[1]] = Node(w[1], w[2])
        elif w[0] == "SCRIPT" and w[1] == "POST":
            nodes[w[2]].post = w[3:]
        elif w[0] == "PARENT":
            cut = w.index("CHILD")
            for child in w[cut + 1:]:
                nodes[child].parents.update(w[1:cut])
    return nodes


def order(nodes: dict[str, Node]) -> list[Node]:
    done: set[str] = set()
    out: list[Node] = []
    pending = list(nodes.values())
    while pending:
        ready = [n for n in pending if n.parents <= done]
        assert ready, f"the DAG has a cycle among {[n.name for n in pending]}"
        for n in ready:
            out.append(n)
            done.add(n.name)
            pending.remove(n)
    return out


@dataclass
class Gridmanager:
    """What HTCondor's gridmanager does for a ``batch flux`` job, with BLAHP's scripts."""

    scripts: Path
    config: Path  # blah.config
    sandboxes: Path
    env: dict[str, str]  # FLUX_URI, PATH with flux, LD_LIBRARY_PATH, HOME
    timeout: float = 180

    def run(self, name: str, sub: Submit, dagdir: Path, cluster: int) -> int:
        iwd = sub.iwd(dagdir)
        box = self.sandboxes / f"{name}.{cluster}"
        box.mkdir(parents=True)
        exe = Path(sub.get("executable"))
        if not exe.is_absolute():
            exe = iwd / exe
        if sub.flag("transfer_executable", True):
            shutil.copy2(exe, box / exe.name)
            exe = box / exe.name
        inputs = []
        for f in filter(None, (x.strip() for x in sub.get("transfer_input_files").split(","))):
            src = Path(f) if Path(f).is_absolute() else iwd / f
            assert src.is_file(), f"{name}: transfer_input_files: no {src} (HTCondor holds the job)"
            shutil.copy2(src, box / src.name)
            inputs.append(src.name)
        stdin = sub.path_in("input", iwd)
        if stdin is not None:  # the job's stdin travels with it, as HTCondor sends it
            shutil.copyfile(stdin, box / "_condor_stdin")
        outputs = [x.strip() for x in sub.get("transfer_output_files").split(",") if x.strip()]
        (box / "_blahp_inputs").write_text("".join(f"{f}\n" for f in inputs))
        (box / "_blahp_outputs").write_text("".join(f"{f}\n" for f in outputs))
        # remote_ attributes replace their plain names in what the gridmanager gives blahpd
        env = condor_env(sub.get("+remote_environment") or sub.get("environment"))
        args = condor_words(sub.get("+remote_arguments") or sub.get("arguments"))
        cores = sub.get("request_cpus") or sub.get("+pegasus_cores") or "1"
        cmd = [str(self.scripts / "flux_submit.sh"), "-c", str(exe), "-w", str(box),
               "-T", str(box), "-o", "_condor_stdout", "-e", "_condor_stderr",
               *(["-i", "_condor_stdin"] if stdin is not None else []),
               "-n", cores, "-I", str(box / "_blahp_inputs"),
               "-O", str(box / "_blahp_outputs")]
        if env:
            cmd += ["-V", " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())]
        if args:
            cmd += ["--", *args]
        benv = {**self.env, "BLAHPD_CONFIG_LOCATION": str(self.config)}
        p = subprocess.run(cmd, env=benv, cwd=box, capture_output=True, text=True, timeout=60)
        line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
        assert p.returncode == 0 and line.startswith("BLAHP_JOBID_PREFIX"), (
            f"{name}: flux_submit.sh exited {p.returncode}: {p.stdout}{p.stderr}")
        blah_id = line[len("BLAHP_JOBID_PREFIX"):]
        flux_id = blah_id.rsplit("/", 1)[-1]
        w = subprocess.run(["flux", "job", "wait-event", "-t", str(self.timeout), flux_id,
                            "clean"], env=benv, capture_output=True, timeout=self.timeout + 10)
        if w.returncode != 0:  # what periodic_remove would do, sooner
            subprocess.run([str(self.scripts / "flux_cancel.sh"), blah_id], env=benv,
                           capture_output=True, timeout=60)
            raise AssertionError(f"{name}: the Flux job {flux_id} did not end in "
                                 f"{self.timeout} s; see {box}/_condor_stderr")
        st = subprocess.run([str(self.scripts / "flux_status.sh"), blah_id], env=benv,
                            capture_output=True, text=True, timeout=60).stdout
        m = re.search(r"JobStatus=(\d+);ExitCode=(\d+);", st)
        assert m and m.group(1) == "4", f"{name}: flux_status.sh says {st!r}"
        for key, fname in (("output", "_condor_stdout"), ("error", "_condor_stderr")):
            dest = sub.path_in(key, iwd)
            if dest is not None and (box / fname).exists():
                shutil.copyfile(box / fname, dest)
        remaps = dict(x.split("=", 1) for x in
                      sub.get("transfer_output_remaps").strip('"').split(";") if "=" in x)
        for f in outputs:
            dest = Path(remaps.get(f, f).strip())
            shutil.copy2(box / f, dest if dest.is_absolute() else iwd / dest)
        return int(m.group(2))


def run_local(sub: Submit, dagdir: Path, scratch: Path) -> int:
    """A local-universe job: in its initial directory, with the starter's scratch
    directory in _CONDOR_SCRATCH_DIR (PegasusLite's local jobs need it)."""
    iwd = sub.iwd(dagdir)
    exe = sub.get("executable")
    scratch.mkdir(parents=True)
    env = {**condor_env(sub.get("environment")), "_CONDOR_SCRATCH_DIR": str(scratch)}
    stdin = sub.path_in("input", iwd)
    out, err = sub.path_in("output", iwd), sub.path_in("error", iwd)
    with open(stdin or os.devnull, "rb") as i, open(out or os.devnull, "wb") as o, \
            open(err or os.devnull, "wb") as e:
        return subprocess.run([exe, *condor_words(sub.get("arguments"))], env=env, cwd=iwd,
                              stdin=i, stdout=o, stderr=e, timeout=300).returncode


def _kept(out: Path | None) -> Path | None:
    """The job's stdout where pegasus-exitcode left it (it renames x.out to x.out.NNN)."""
    if out is None or out.exists():
        return out
    kept = sorted(out.parent.glob(out.name + ".[0-9][0-9][0-9]"))
    return kept[-1] if kept else out


def run_dag(dag: Path, grid: Gridmanager, post_env: dict[str, str]) -> list[NodeResult]:
    """Run every node; stop at the first node its POST script rejects."""
    dagdir = dag.parent
    results = []
    for cluster, node in enumerate(order(read_dag(dag)), 1):
        t0 = time.monotonic()
        sub = Submit.read(dagdir / node.sub, cluster)
        universe = sub.get("universe", "vanilla")
        if universe == "local":
            rc = run_local(sub, dagdir, grid.sandboxes / f"local-{node.name}.{cluster}")
        elif universe == "grid" and sub.get("grid_resource") == "batch flux":
            rc = grid.run(node.name, sub, dagdir, cluster)
        else:
            raise AssertionError(f"{node.name}: universe {universe} "
                                 f"{sub.get('grid_resource')} is not run here")
        # DAGMan's macros of a POST script (the 5.1 branch's planner passes $RETRY too);
        # the longer names first, as $JOB is the start of $JOBID
        macros = {"$RETURN": str(rc), "$RETRY": "0", "$JOBID": f"{cluster}.0",
                  "$JOB": node.name}
        post = []
        for w in node.post:
            for k, v in macros.items():
                w = w.replace(k, v)
            post.append(w)
        p = subprocess.run(post, cwd=dagdir, env=post_env, capture_output=True, text=True,
                           timeout=120) if post else None
        results.append(NodeResult(node.name, universe, rc, p.returncode if p else 0,
                                  (p.stdout + p.stderr) if p else "",
                                  _kept(sub.path_in("output", sub.iwd(dagdir))),
                                  time.monotonic() - t0))
        if rc != 0 or (p is not None and p.returncode != 0):
            break
    return results
