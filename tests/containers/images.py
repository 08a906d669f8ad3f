"""Tiny images built by the tests themselves: a busybox root filesystem, as a plain tarball
and as a docker-archive (what `docker save` writes). No registry is ever asked."""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
APPLETS = ("sh", "cat", "id", "pwd", "env", "ls", "sleep", "true", "false", "echo", "stat",
           "readlink", "test", "grep", "touch", "kill", "ps")


def busybox_static() -> str | None:
    """A statically linked busybox (Debian's busybox-static), or None."""
    if not os.path.isfile(BUSYBOX):
        return None
    with open(BUSYBOX, "rb") as fh:
        data = fh.read()
    return None if b"ld-linux" in data[:4096] or b".so." in data[:65536] else BUSYBOX


def _add(tf: tarfile.TarFile, name: str, *, data: bytes | None = None, mode: int = 0o644,
         link: str | None = None, directory: bool = False) -> None:
    ti = tarfile.TarInfo(name)
    ti.mtime = 1_700_000_000
    if directory:
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(ti)
    elif link is not None:
        ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, link, 0o777
        tf.addfile(ti)
    else:
        assert data is not None
        ti.size, ti.mode = len(data), mode
        tf.addfile(ti, io.BytesIO(data))


def rootfs_tar(dest: Path, tag: str = "") -> Path:
    """A busybox root filesystem as a tarball; ``tag`` changes the digest (a fresh image)."""
    bb = busybox_static()
    assert bb is not None
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for d in ("bin", "etc", "tmp", "srv", "dev", "proc", "sys", "home", "mnt", "usr",
                  "usr/bin"):
            _add(tf, d, directory=True)
        with open(bb, "rb") as fh:
            _add(tf, "bin/busybox", data=fh.read(), mode=0o755)
        for a in APPLETS:
            _add(tf, f"bin/{a}", link="busybox")
        _add(tf, "etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n")
        _add(tf, "etc/group", data=b"root:x:0:\n")
        for f in ("etc/hosts", "etc/resolv.conf"):
            _add(tf, f, data=b"")
        _add(tf, "etc/fluxlite-test", data=f"busybox {tag}\n".encode())
    dest.write_bytes(buf.getvalue())
    return dest


def docker_archive(dest: Path, tag: str = "") -> Path:
    """The same root filesystem as a one-layer docker-archive."""
    layer = rootfs_tar(dest.with_suffix(".layer"), tag).read_bytes()
    dest.with_suffix(".layer").unlink()
    lsha = hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{lsha}"]},
    }).encode()
    csha = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"{csha}.json", "Layers": [f"{lsha}/layer.tar"],
                            "RepoTags": [f"localhost/fluxlite-test:{tag or 'busybox'}"]}])
    with tarfile.open(dest, "w") as tf:
        _add(tf, f"{lsha}", directory=True)
        _add(tf, f"{lsha}/layer.tar", data=layer)
        _add(tf, f"{csha}.json", data=config)
        _add(tf, "manifest.json", data=manifest.encode())
    return dest


def _podman_conf(tmp: Path) -> dict[str, str]:
    """podman's defaults, or the settings this machine needs: where podman may not raise
    its limits (no CAP_SYS_RESOURCE) it is told the current ones; where crun cannot handle
    the cgroup layout, runc is used."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)

    def lim(v: int) -> int:
        return 32768 if v == resource.RLIM_INFINITY else min(v, 32768)

    lines = ["[containers]",
             f'default_ulimits = ["nofile={nofile[0]}:{nofile[1]}", '
             f'"nproc={lim(nproc[0])}:{lim(nproc[1])}"]']
    if shutil.which("runc"):
        lines += ["[engine]", 'runtime = "runc"']
    conf = tmp / "containers.conf"
    conf.write_text("\n".join(lines) + "\n")
    return {"CONTAINERS_CONF": str(conf)}


def _podman_works(image: Path, env: dict[str, str]) -> str | None:
    full = {**os.environ, **env}
    tag = "localhost/fluxlite-test-probe:1"
    try:
        subprocess.run(["podman", "import", "-q", str(image), tag], env=full,
                       capture_output=True, timeout=120, check=True)
        p = subprocess.run(["podman", "run", "--rm", "--pull=never", "--network=host", tag,
                            "/bin/true"], env=full, capture_output=True, text=True,
                           timeout=120)
    except (subprocess.SubprocessError, OSError) as err:
        return str(err)
    finally:
        subprocess.run(["podman", "rmi", "-f", tag], env=full, capture_output=True,
                       timeout=120)
    return None if p.returncode == 0 else (p.stderr.strip().splitlines() or ["?"])[-1]


def podman_settings(image: Path, tmp: Path) -> tuple[dict[str, str] | None, str]:
    """The environment podman needs here ({} when its defaults work), or None and why not;
    ``image`` is a root-filesystem tarball to try."""
    why = _podman_works(image, {})
    if why is None:
        return {}, ""
    env = _podman_conf(tmp)
    why2 = _podman_works(image, env)
    if why2 is None:
        return env, ""
    return None, f"{why} / {why2}"
