"""The containers tier: real runtimes on images the tests build (no registry is reached).

Podman and Charliecloud are Debian packages (scripts/test.sh installs them when it runs as
root with apt); Apptainer is looked for on PATH and in /opt/apptainer/bin. A runtime that is
absent, or that cannot start a container on this machine, skips its tests with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fluxlite.container.base import LABEL
from tests.conftest import sha256_of
from tests.containers.images import busybox_static, docker_archive, podman_settings, rootfs_tar

APPTAINER_DIRS = ("/opt/apptainer/bin",)


@dataclass
class Image:
    path: Path
    sha256: str

    @property
    def url(self) -> str:
        return self.path.as_uri()


@dataclass
class RuntimeEnv:
    """A runtime that works here: its type, the image it runs and the environment the
    runtime's processes need (for podman, a containers.conf suited to this machine)."""

    type: str
    image: Image
    env: dict[str, str]

    def containers(self) -> list[str]:
        """fluxlite's containers of this runtime (for the runtimes that keep containers)."""
        if self.type not in ("podman", "docker"):
            return []
        out = subprocess.run([self.type, "ps", "--all", "--filter", f"label={LABEL}",
                              "--format", "{{.Names}}"], capture_output=True, text=True,
                             env={**os.environ, **self.env}, timeout=60)
        return [n for n in out.stdout.split() if n]


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Image]:
    if busybox_static() is None:
        pytest.skip("containers tier: no static busybox (apt-get install busybox-static)")
    d = tmp_path_factory.mktemp("images")
    out = {}
    for kind, make in (("tar", rootfs_tar), ("docker-archive", docker_archive)):
        p = make(d / f"busybox.{kind}.tar")
        out[kind] = Image(p, sha256_of(p))
    return out


@pytest.fixture(scope="session")
def podman(images: dict[str, Image], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RuntimeEnv]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman)")
    env, why = podman_settings(images["tar"].path, tmp_path_factory.mktemp("podman"))
    if env is None:
        pytest.skip(f"podman cannot run a container here: {why}")
    rt = RuntimeEnv("podman", images["docker-archive"], env)
    yield rt
    full = {**os.environ, **env}
    for name in rt.containers():
        subprocess.run(["podman", "rm", "-f", name], env=full, capture_output=True,
                       timeout=120)
    # the loaded archive keeps its own name (images.py) beside fluxlite's tag
    tags = [f"localhost/fluxlite-image:{img.sha256}" for img in images.values()]
    subprocess.run(["podman", "rmi", "-f", *tags, "localhost/fluxlite-test:busybox"],
                   env=full, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def charliecloud(images: dict[str, Image]) -> RuntimeEnv:
    if shutil.which("ch-run") is None:
        pytest.skip("charliecloud is not installed (apt-get install charliecloud)")
    return RuntimeEnv("charliecloud", images["tar"], {"USER": os.environ.get("USER", "")})


@pytest.fixture(scope="session")
def apptainer(images: dict[str, Image]) -> RuntimeEnv:
    path = os.pathsep.join([*APPTAINER_DIRS, os.environ.get("PATH", os.defpath)])
    if shutil.which("apptainer", path=path) is None:
        pytest.skip("apptainer is not installed: it is not packaged for Debian; build it "
                    "from source into /opt/apptainer to run these tests")
    return RuntimeEnv("apptainer", images["docker-archive"], {"PATH": path})


@pytest.fixture(params=["podman", "charliecloud", "apptainer"])
def runtime(request: pytest.FixtureRequest) -> RuntimeEnv:
    return request.getfixturevalue(request.param)


def container_job(rt: RuntimeEnv, cache: Path, script: str, **extra: object) -> dict:
    """A job whose task is ``/bin/sh -c script`` inside the runtime's test image."""
    container = {"type": rt.type, "image": {"url": rt.image.url, "sha256": rt.image.sha256}}
    container.update(extra.pop("container", {}))  # type: ignore[arg-type]
    job = {"executable": "/bin/sh", "arguments": ["-c", script], "container": container,
           "records": {"kickstart": None, "json": str(cache.parent / "record.json")}}
    job.update(extra)
    return job
