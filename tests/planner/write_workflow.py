"""Writes the tier's workflow with Pegasus's own Python API (run with the planner's
``pegasus-config --python`` on PYTHONPATH): a diamond with integrity checking, a staged
executable, and a job with a checkpoint file.

usage: write_workflow.py TOP  (writes TOP/input/, TOP/workflow.yml, TOP/replicas.yml,
TOP/transformations.yml)
"""

import hashlib
import sys
from pathlib import Path

from Pegasus.api import File, Job, ReplicaCatalog, Transformation, TransformationCatalog, Workflow

# the task: each OUT holds its own name, the job's name and every IN; a job with
# KEG_CHECKPOINT counts its runs in that file (and says which run it is)
KEG = """#!/bin/sh
# usage: keg OUT... -- IN...
outs=
while [ "$1" != -- ]; do outs="$outs $1"; shift; done; shift
run=
if [ -n "$KEG_CHECKPOINT" ]; then
  n=$(cat "$KEG_CHECKPOINT" 2>/dev/null || echo 0); run="run $((n + 1))"
  echo $((n + 1)) > "$KEG_CHECKPOINT"
fi
for o in $outs; do { echo "$o by $KEG_NAME${run:+ ($run)}"; cat "$@"; } > "$o"; done
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(top: Path) -> None:
    (top / "input").mkdir(parents=True, exist_ok=True)
    fa = top / "input" / "f.a"
    fa.write_text("alpha\n")
    keg = top / "input" / "keg"
    keg.write_text(KEG)
    keg.chmod(0o755)

    rc = ReplicaCatalog()
    rc.add_replica("local", "f.a", fa.as_uri(), checksum={"sha256": sha256(fa)})
    rc.write(str(top / "replicas.yml"))
    tr = Transformation("keg", site="local", pfn=keg.as_uri(), is_stageable=True,
                        checksum={"sha256": sha256(keg)})
    TransformationCatalog().add_transformations(tr).write(str(top / "transformations.yml"))

    f = {n: File(n) for n in ("f.a", "f.b1", "f.b2", "f.c1", "f.c2", "f.d", "f.e")}
    final = ("f.d", "f.e")

    def job(name: str, outs: list[str], ins: list[str]) -> Job:
        j = Job(tr, _id=name).add_args(*[f[o] for o in outs], "--", *[f[i] for i in ins])
        j.add_inputs(*[f[i] for i in ins])
        for o in outs:
            j.add_outputs(f[o], stage_out=o in final, register_replica=False)
        return j.add_env(KEG_NAME=name)

    wf = Workflow("diamond")
    wf.add_jobs(
        job("preprocess", ["f.b1", "f.b2"], ["f.a"]),
        job("findrange1", ["f.c1"], ["f.b1"]),
        job("findrange2", ["f.c2"], ["f.b2"]),
        job("analyze", ["f.d"], ["f.c1", "f.c2"]),
        job("checkpointed", ["f.e"], ["f.d"]).add_checkpoint(File("state.ckpt"))
        .add_env(KEG_CHECKPOINT="state.ckpt")
        .add_pegasus_profile(checkpoint_time=1, max_walltime=3),
    )
    wf.write(str(top / "workflow.yml"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
