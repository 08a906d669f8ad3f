"""B18: what a container costs.

Per runtime that works here (podman, charliecloud, and apptainer when installed): a
`fluxlite run` of /bin/true inside a tiny busybox image (already in the node's cache)
against the same job bare, interleaved in the same run; then the image cache's hit (the
image staged and converted already) against a miss (a fresh cache: fetched over
file://, verified, loaded or unpacked), interleaved too. The images are built here; no
registry is reached.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
from common import PYTHON, fluxlite_env, interleaved, median, run_quiet  # noqa: E402

from tests.containers.images import (  # noqa: E402
    busybox_static,
    docker_archive,
    podman_settings,
    rootfs_tar,
)

ROUNDS = int(os.environ.get("B18_ROUNDS", "10"))
APPTAINER_PATH = os.pathsep.join(["/opt/apptainer/bin", os.environ.get("PATH", os.defpath)])


def _sha256(path: Path) -> str:
    from common import hashlib_sha256

    return hashlib_sha256(str(path))


def _job(tmp: Path, name: str, container: dict | None) -> str:
    job: dict = {"fluxlite": 1, "name": "b18", "executable": "/bin/true",
                 "records": {"kickstart": None, "json": str(tmp / f"{name}.rec.json")}}
    if container is not None:
        job["container"] = container
    p = tmp / f"{name}.json"
    p.write_text(json.dumps(job))
    return str(p)


def _runtimes(tmp: Path, images: dict[str, Path]) -> list[tuple[str, Path, dict[str, str]]]:
    out = []
    if shutil.which("podman"):
        env, why = podman_settings(images["tar"], tmp)
        if env is None:
            print(f"B18 podman: skipped ({why})")
        else:
            out.append(("podman", images["docker-archive"], env))
    else:
        print("B18 podman: skipped (not installed)")
    if shutil.which("ch-run"):
        out.append(("charliecloud", images["tar"], {"USER": os.environ.get("USER") or "root"}))
    else:
        print("B18 charliecloud: skipped (not installed)")
    if shutil.which("apptainer", path=APPTAINER_PATH):
        out.append(("apptainer", images["docker-archive"], {"PATH": APPTAINER_PATH}))
    else:
        print("B18 apptainer: skipped (not installed; not packaged for Debian)")
    return out


def _forget(kind: str, digest: str, env: dict[str, str]) -> None:
    """Make the next run a miss: podman's image store holds a loaded image too."""
    if kind == "podman":
        subprocess.run(["podman", "rmi", "-f", f"localhost/fluxlite-image:{digest}",
                        "localhost/fluxlite-test:b18"],  # the archive's own name
                       env=env, capture_output=True, timeout=120)


def main() -> int:
    if busybox_static() is None:
        print("B18: skipped (no static busybox: apt-get install busybox-static)")
        return 0
    with tempfile.TemporaryDirectory(prefix="fluxlite-b18-") as d:
        tmp = Path(d)
        (tmp / "wd").mkdir()
        images = {"tar": rootfs_tar(tmp / "busybox.tar", "b18"),
                  "docker-archive": docker_archive(tmp / "busybox.docker.tar", "b18")}
        base = fluxlite_env(str(tmp / "wd"))
        bare = [PYTHON, "-m", "fluxlite", "run", "-q", _job(tmp, "bare", None)]
        for kind, image, extra in _runtimes(tmp, images):
            digest = _sha256(image)
            container = {"type": kind, "image": {"url": image.as_uri(), "sha256": digest}}
            cmd = [PYTHON, "-m", "fluxlite", "run", "-q", _job(tmp, kind, container)]
            env = {**base, **extra, "FLUXLITE_CACHE": str(tmp / f"cache-{kind}")}
            run_quiet(cmd, env=env)  # the miss that fills the cache
            t_ct, t_bare = interleaved(lambda c=cmd, e=env: run_quiet(c, env=e),
                                       lambda e=env: run_quiet(bare, env=e), ROUNDS)
            over = median(t_ct) - median(t_bare)
            print(f"B18 {kind}: /bin/true in a container {median(t_ct) * 1000:.0f} ms vs bare "
                  f"{median(t_bare) * 1000:.0f} ms (median of {ROUNDS}): ratio "
                  f"{median(t_ct) / median(t_bare):.2f}x, +{over * 1000:.0f} ms per job")
            fresh = iter(range(1_000_000))

            def miss(k: str = kind, c: list[str] = cmd, e: dict[str, str] = env,
                     dg: str = digest, fresh: object = fresh) -> None:
                _forget(k, dg, e)
                cache = tmp / f"miss-{k}-{next(fresh)}"  # type: ignore[call-overload]
                run_quiet(c, env={**e, "FLUXLITE_CACHE": str(cache)})

            t_miss, t_hit = interleaved(miss, lambda c=cmd, e=env: run_quiet(c, env=e),
                                        max(3, ROUNDS // 2))
            size = image.stat().st_size / 1e6
            print(f"B18 {kind}: image cache miss {median(t_miss) * 1000:.0f} ms vs hit "
                  f"{median(t_hit) * 1000:.0f} ms ({size:.1f} MB image, file://, verified; "
                  f"median of {len(t_miss)}): a miss costs "
                  f"{(median(t_miss) - median(t_hit)) * 1000:.0f} ms more")
            _forget(kind, digest, env)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
