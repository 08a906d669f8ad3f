"""PegasusLite job scripts, in the shapes Pegasus's planner writes them, run on a worker
package made by ``fluxlite pegasus-home``.

The scripts source the real ``pegasus-lite-common.sh`` from Pegasus's sources, named by
``PEGASUS_LITE_COMMON`` (never part of this repository); without it the tier is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PLC_ENV = "PEGASUS_LITE_COMMON"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def lite_common() -> Path | None:
    p = os.environ.get(PLC_ENV)
    return Path(p) if p and Path(p).is_file() else None


def pytest_collection_modifyitems(config, items):  # noqa: ANN001, ANN201
    if lite_common() is not None:
        return
    skip = pytest.mark.skip(reason=f"${PLC_ENV} does not name Pegasus's pegasus-lite-common.sh "
                                   "(share/pegasus/sh/ in Pegasus's sources; scripts/test.sh "
                                   "uses /opt/pegasus-src/pegasus-lite-common.sh)")
    for item in items:
        if "pegasuslite" in item.keywords:
            item.add_marker(skip)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_home(tmp: Path, version: str, name: str = "pegasus-home") -> Path:
    home = tmp / name
    p = subprocess.run([sys.executable, "-m", "fluxlite", "pegasus-home", str(home),
                        "--pegasus-version", version], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return home


TOOL = """#!/bin/sh
# the task: copies its input to its output, and can be asked to wait first
echo "task pid $$" >&2
echo $$ > "$PEGASUS_TEST_PIDFILE"
# a checkpointing application: saves its state when it is told to stop
if [ -n "$PEGASUS_TEST_CHECKPOINT" ]; then trap 'echo saved > checkpoint.dat; exit 1' TERM; fi
if [ -n "$PEGASUS_TEST_SLEEP" ]; then sleep "$PEGASUS_TEST_SLEEP"; fi
cat "$1" > "$2"
echo "task done"
"""


def _transfer_list(entries: list[tuple[str, str, str, str]], linkage: str) -> str:
    """The JSON list in the layout the planner's convertToTransferInputFormat writes."""
    parts = []
    for num, (lfn, src, dst, src_site) in enumerate(entries, 1):
        parts.append(
            ' { "type": "transfer",\n'
            f'   "linkage": "{linkage}",\n'
            f'   "lfn": "{lfn}",\n'
            f'   "id": {num},\n'
            '   "src_urls": [\n'
            f'     {{ "site_label": "{src_site}", "url": "{src}", "checkpoint": "false" }}\n'
            '   ],\n'
            '   "dest_urls": [\n'
            f'     {{ "site_label": "{"condorpool" if linkage == "input" else "local"}",'
            f' "url": "{dst}" }}\n'
            '   ] }\n')
    return "[\n" + " ,\n".join(parts) + "]\n"


def _banner(text: str) -> str:
    return f'printf "\\n###################### {text} ######################\\n"  1>&2\n'


@dataclass
class LiteJob:
    """A PegasusLite job: its submit directory (where HTCondor would start it), its inputs
    on the "staging site" and the output site, and the script."""

    tmp: Path
    version: str = "5.1.3"
    lfns: tuple[str, ...] = ("f.a",)
    size: int = 4096  # bytes of each input
    kickstart_args: str = ""  # e.g. "-k 60 -K 30", as the planner adds for checkpointing
    checkpoint: bool = False  # stage out checkpoint.dat as the planner does (failures ignored)
    submit: Path = field(init=False)
    data: Path = field(init=False)
    outdir: Path = field(init=False)
    wn_tmp: Path = field(init=False)
    script: Path = field(init=False)

    def __post_init__(self) -> None:
        for name in ("submit", "data", "outdir", "wn_tmp"):
            d = self.tmp / name
            d.mkdir(exist_ok=True)
            setattr(self, name, d)
        plc = lite_common()
        assert plc is not None
        # HTCondor transfers pegasus-lite-common.sh with the job into its start directory
        (self.submit / "pegasus-lite-common.sh").write_bytes(plc.read_bytes())
        for lfn in self.lfns:
            with open(self.data / lfn, "wb") as fh:
                for left in range(self.size, 0, -(1 << 20)):
                    fh.write(os.urandom(min(left, 1 << 20)))
                fh.write(lfn.encode())
        (self.data / "mytool").write_text(TOOL)
        meta = [{"_type": "file", "_id": lfn,
                 "_attributes": {"checksum.type": "sha256",
                                 "checksum.value": _sha256(self.data / lfn),
                                 "checksum.timing": "0.0",
                                 "size": str((self.data / lfn).stat().st_size)}}
                for lfn in (*self.lfns, "mytool")]
        # the planner's <job>.in.meta, transferred with the job
        (self.submit / "mytool_ID0000001.in.meta").write_text(json.dumps(meta, indent=2))
        self.script = self.submit / "mytool_ID0000001.sh"
        self.script.write_text(self.render())
        self.script.chmod(0o755)

    @property
    def major_minor(self) -> tuple[int, int]:
        major, minor, _ = self.version.split(".")
        return int(major), int(minor)

    def render(self) -> str:
        major, minor, patch = self.version.split(".")
        sep = ";;;" if self.major_minor >= (5, 1) else ":"
        inputs = [(lfn, f"file://{self.data}/{lfn}", f"file://$PWD/{lfn}", "local")
                  for lfn in (*self.lfns, "mytool")]
        outputs = [("f.out", "file://$PWD/f.out", f"file://{self.outdir}/f.out",
                    "condorpool")]
        checkpoint = ""
        if self.checkpoint:
            ck = [("checkpoint.dat", "file://$PWD/checkpoint.dat",
                   f"file://{self.outdir}/checkpoint.dat", "condorpool")]
            checkpoint = (
                _banner("Staging out checkpoint files")
                + "# stage out checkpoint files \nset +e \n"
                "pegasus-transfer --threads 1  1>&2 << 'eof'\n"
                + _transfer_list(ck, "output") + "eof\n"
                "ec=$?\nset -e\nif [ $ec -ne 0 ]; then\n"
                '    echo " Ignoring failure while transferring chkpoint files. Exicode was '
                '$ec" 1>&2\nfi\n\n')
        head = (
            "#!/bin/bash\nset -e\n"
            f'pegasus_lite_version_major="{major}"\n'
            f'pegasus_lite_version_minor="{minor}"\n'
            f'pegasus_lite_version_patch="{patch}"\n'
            'pegasus_lite_enforce_strict_wp_check="true"\n'
            'pegasus_lite_version_allow_wp_auto_download="false"\n')
        if self.major_minor >= (5, 1):
            head += 'pegasus_metrics="false"\n'
        return (
            head + "\n\n. pegasus-lite-common.sh\n\npegasus_lite_init\n\n"
            "# cleanup in case of failures\n"
            "trap pegasus_lite_signal_int INT\n"
            "trap pegasus_lite_signal_term TERM\n"
            "trap pegasus_lite_unexpected_exit EXIT\n\n"
            + _banner("[Pegasus Lite] Setting up workdir")
            + "# work dir\npegasus_lite_setup_work_dir\n\n"
            + _banner("[Pegasus Lite] Figuring out the worker package to use")
            + "# figure out the worker package to use\npegasus_lite_worker_package\n\n"
            "pegasus_lite_section_start stage_in\n"
            + _banner("Staging in input data and executables")
            + "# stage in data and executables\n"
            "pegasus-transfer --threads 1  1>&2 << 'eof'\n"
            + _transfer_list(inputs, "input") + "eof\n\n"
            + _banner("Setting the xbit for executables staged")
            + "# set the xbit for any executables staged\n/bin/chmod +x mytool\n\n"
            + _banner("Checking file integrity for input files")
            + "# do file integrity checks\n"
            "pegasus-integrity --print-timings --verify=stdin 1>&2 << 'eof'\n"
            + sep.join((*self.lfns, "mytool")) + "\neof\n\n"
            "pegasus_lite_section_end stage_in\n"
            "set +e\njob_ec=0\n"
            "pegasus_lite_section_start task_execute\n"
            + _banner("[Pegasus Lite] Executing the user task")
            + "pegasus-kickstart  -n mytool -N ID0000001 -R condorpool  -s f.out=f.out "
            f"-L diamond -T 2026-12-01T08:00:00+00:00 {self.kickstart_args} ./mytool "
            f"{self.lfns[0]} f.out\n"
            "job_ec=$?\n"
            "pegasus_lite_section_end task_execute\n"
            "set -e\n"
            "pegasus_lite_section_start stage_out\n"
            + checkpoint
            + _banner("Staging out output files")
            + "# stage out\n"
            "pegasus-transfer --threads 1  1>&2 << 'eof'\n"
            + _transfer_list(outputs, "output") + "eof\n\n"
            "pegasus_lite_section_end stage_out\n\nset -e\n\n\n"
            "# clear the trap, and exit cleanly\ntrap - EXIT\npegasus_lite_final_exit\n")

    def env(self, home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
        """What HTCondor or Flux gives the job: a system PATH only (fluxlite is found through
        PEGASUS_HOME alone), the site profile's PEGASUS_HOME, a worker-node scratch."""
        env = {"PATH": SYSTEM_PATH, "HOME": str(self.tmp), "LANG": "C",
               "PEGASUS_HOME": str(home), "PEGASUS_WN_TMP": str(self.wn_tmp),
               "PEGASUS_WN_TMP_MIN_SPACE": "1", "TMPDIR": str(self.wn_tmp),
               "PEGASUS_TEST_PIDFILE": str(self.tmp / "task.pid")}
        env.update(extra or {})
        return env

    def popen(self, home: Path, extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        out = open(self.submit / "mytool_ID0000001.out", "wb")  # noqa: SIM115
        err = open(self.submit / "mytool_ID0000001.err", "wb")  # noqa: SIM115
        try:
            return subprocess.Popen(["/bin/bash", str(self.script)], cwd=self.submit,
                                    env=self.env(home, extra), stdout=out, stderr=err,
                                    start_new_session=True)
        finally:
            out.close()
            err.close()

    def run(self, home: Path, extra: dict[str, str] | None = None,
            timeout: float = 120) -> tuple[int, str, str]:
        p = self.popen(home, extra)
        rc = p.wait(timeout=timeout)
        return rc, self.out.read_text(errors="replace"), self.err.read_text(errors="replace")

    @property
    def out(self) -> Path:
        return self.submit / "mytool_ID0000001.out"

    @property
    def err(self) -> Path:
        return self.submit / "mytool_ID0000001.err"
