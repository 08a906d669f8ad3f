"""Hostile container sections: what would reach past the spec into the runtime's files,
the cached image or the host's root, refused by ``validate`` and ``run`` before anything
starts (no runtime is needed: the spec is refused first)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Fluxlite
from tests.integration.hostile.test_spec import _job, _refused

SHA = "0" * 64


def _ctr(ctype: str, **extra: Any) -> dict[str, Any]:
    return {"container": {"type": ctype, "image": {"url": "file:///nonexistent/img.tar",
                                                   "sha256": SHA}, **extra}}


@pytest.mark.parametrize("ctype", ["podman", "docker", "charliecloud", "apptainer"])
@pytest.mark.parametrize("name", ["SECRET_TOKEN\nX", "A B", "1ABC", "X-Y", "#C", " LEAD",
                                  "PATH*", "é"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_environment_names_an_env_file_would_misread(fl: Fluxlite, tmp_path: Path,
                                                     ctype: str, name: str,
                                                     command: str) -> None:
    """A line NAME=value is the only shape every runtime's file reads as written: a name
    with a line break ("SECRET_TOKEN" alone means the host's value to podman), a space, a
    leading digit, a glob or a comment sign would be read otherwise."""
    job = _job(fl, tmp_path, {**_ctr(ctype), "environment": {name: "v"}})
    _refused(fl, tmp_path, job, "is not a valid variable name for a container",
             command=command)


@pytest.mark.parametrize("value", ["v\nINJECTED=1", "v\rINJECTED=1", "\n"])
def test_charliecloud_values_with_line_breaks(fl: Fluxlite, tmp_path: Path,
                                              value: str) -> None:
    job = _job(fl, tmp_path, {**_ctr("charliecloud"), "environment": {"GOOD": value}})
    _refused(fl, tmp_path, job, "environment.GOOD: holds a line break")


@pytest.mark.parametrize(("ctype", "option", "flag"), [
    ("charliecloud", "-w", "-w"),
    ("charliecloud", "--write", "--write"),
    ("charliecloud", "--wri", "--write"),  # argp: a unique prefix is the option
    ("charliecloud", "-vw", "-w"),  # a cluster of short flags
    ("apptainer", "--writable", "--writable"),
    ("apptainer", "-w", "-w"),
    ("singularity", "--writable=true", "--writable"),
    ("apptainer", "-cw", "-w"),
])
def test_options_that_make_the_image_writable(fl: Fluxlite, tmp_path: Path, ctype: str,
                                              option: str, flag: str) -> None:
    """The cached image is the one whose digest was verified: a task that could write
    into it would hand the next job (a cache hit) a different image."""
    job = _job(fl, tmp_path, _ctr(ctype, options=[option]))
    _refused(fl, tmp_path, job, f"'{flag}' would let the task write into the image",
             command="validate")


@pytest.mark.parametrize(("ctype", "option", "flag"), [
    ("charliecloud", "--bin=/:/x", "--bind"),  # argp abbreviation of an own flag
    ("podman", "--sig-proxy=false", "--sig-proxy"),  # signals must reach the task
    ("docker", "--sig-proxy=false", "--sig-proxy"),
    ("podman", "-itv", "-v"),
])
def test_own_flags_in_every_spelling(fl: Fluxlite, tmp_path: Path, ctype: str, option: str,
                                     flag: str) -> None:
    job = _job(fl, tmp_path, _ctr(ctype, options=[option]))
    _refused(fl, tmp_path, job, f"'{flag}' is set by fluxlite", command="validate")


@pytest.mark.parametrize("ctype", ["charliecloud", "apptainer"])
def test_overlays_that_leave_the_image_alone_stay_allowed(fl: Fluxlite, tmp_path: Path,
                                                          ctype: str) -> None:
    option = "--write-fake" if ctype == "charliecloud" else "--writable-tmpfs"
    p = fl.run("validate", str(_job(fl, tmp_path, _ctr(ctype, options=[option]))))
    assert p.returncode == 0, p.stderr.decode()


def test_a_mount_whose_host_path_links_to_root(fl: Fluxlite, tmp_path: Path) -> None:
    """Only the text was checked: a link to '/' is '/' for the kernel."""
    link = tmp_path / "innocent"
    link.symlink_to("/")
    for host in (str(link), f"{link}/."):
        job = _job(fl, tmp_path, _ctr("podman", mounts=[f"{host}:/data:ro"]))
        _refused(fl, tmp_path, job, "leads to '/'", command="validate")


def test_a_mount_through_a_linked_directory_is_judged_where_it_leads(
        fl: Fluxlite, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    job = _job(fl, tmp_path, _ctr("podman", mounts=[f"{tmp_path}/alias:/data:ro"]))
    p = fl.run("validate", str(job))
    assert p.returncode == 0, p.stderr.decode()


def test_unpacking_without_tar_filters_is_one_line(tmp_path: Path) -> None:
    """Python 3.11.0–3.11.3 have no tarfile extraction filters: one line, no traceback,
    nothing unpacked (the interpreter's filters taken away, as on those versions)."""
    tar = tmp_path / "rootfs.tar"
    (tmp_path / "f").write_text("x")
    with tarfile.open(tar, "w") as tf:
        tf.add(tmp_path / "f", "f")
    dest = tmp_path / "cache" / "img.dir"
    dest.parent.mkdir()
    code = (
        "import sys, tarfile\n"
        "for n in ('tar_filter', 'data_filter', 'fully_trusted_filter'):\n"
        "    delattr(tarfile, n)\n"
        "from fluxlite.container.base import ContainerError\n"
        "from fluxlite.container.cache import unpack_rootfs\n"
        "try:\n"
        "    unpack_rootfs(sys.argv[1], sys.argv[2])\n"
        "except ContainerError as err:\n"
        "    print(err, file=sys.stderr); sys.exit(71)\n")
    p = subprocess.run([sys.executable, "-c", code, str(tar), str(dest)],
                       capture_output=True, timeout=60)
    err = p.stderr.decode()
    assert p.returncode == 71, err
    assert "cannot unpack an image safely" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert os.listdir(dest.parent) == []
