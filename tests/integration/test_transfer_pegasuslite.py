"""`fluxlite transfer` called as PegasusLite calls pegasus-transfer: ``--threads N`` (and the
planner's optional ``--symlink``) with the list on stdin in the planner's layout, or with
``-f FILE``; exit 0 or 1; the attempts in $PEGASUS_MULTIPART_DIR."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from tests.conftest import Fluxlite


def _entry(lfn: str, src: str, dst: str) -> dict[str, object]:
    # the keys the planner writes (convertToTransferInputFormat), "checkpoint" included
    return {"type": "transfer", "linkage": "input", "lfn": lfn, "id": 1,
            "src_urls": [{"site_label": "local", "url": src, "checkpoint": "false"}],
            "dest_urls": [{"site_label": "condorpool", "url": dst}]}


def test_stage_in_from_stdin_with_pwd_and_multipart(fl: Fluxlite, tmp_path: Path) -> None:
    src = tmp_path / "data"
    src.mkdir()
    (src / "f.a").write_bytes(b"a" * 1000)
    work = tmp_path / "work"
    work.mkdir()
    mp = work / ".pegasus.multipart.d"
    mp.mkdir()
    doc = [_entry("f.a", f"file://{src}/f.a", "file://$PWD/f.a")]
    p = fl.run("transfer", "--threads", "1", input=json.dumps(doc).encode(), cwd=work,
               env={"PEGASUS_MULTIPART_DIR": str(mp), "PWD": str(work)})
    assert p.returncode == 0, p.stderr
    assert (work / "f.a").read_bytes() == b"a" * 1000
    (part,) = list(mp.iterdir())
    attempts = yaml.safe_load(part.read_text())[0]["transfer_attempts"]
    assert attempts[0]["success"] is True and attempts[0]["lfn"] == "f.a"
    assert attempts[0]["src_label"] == "local" and attempts[0]["dst_label"] == "condorpool"


def test_symlink_and_list_file(fl: Fluxlite, tmp_path: Path) -> None:
    (tmp_path / "f.a").write_text("x")
    lst = tmp_path / "list.in"
    lst.write_text(json.dumps([_entry("f.a", f"file://{tmp_path}/f.a",
                                      f"file://{tmp_path}/link.a")]))
    p = fl.run("transfer", "--threads", "2", "--symlink", "-f", str(lst))
    assert p.returncode == 0, p.stderr
    assert os.path.islink(tmp_path / "link.a")


def test_failures_exit_1_and_unsupported_schemes_are_named(fl: Fluxlite,
                                                           tmp_path: Path) -> None:
    missing = [_entry("f.x", f"file://{tmp_path}/missing", f"file://{tmp_path}/f.x")]
    p = fl.run("transfer", "--threads", "1", "--max-attempts", "1",
               input=json.dumps(missing).encode())
    assert p.returncode == 1
    assert not (tmp_path / "f.x").exists()
    docker = [_entry("img", "docker://centos:7", f"file://{tmp_path}/img.tar")]
    p = fl.run("transfer", "--threads", "1", input=json.dumps(docker).encode())
    err = p.stderr.decode()
    assert p.returncode == 1
    assert "unsupported scheme 'docker'" in err and "Traceback" not in err
