"""Containers: the task runs inside an image that is staged and verified like an input.

The runner calls :func:`wrap` once, just before the task starts: it fetches the image into
the node's cache (or has the runtime pull a hub reference), makes it runnable, and turns the
task's argv, environment and directory into the runtime's. Everything else — the time
limits, the signals, the stage-out, the records — stays as it is for a bare task.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import posixpath
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from fluxlite.execute.base import TaskCommand
from fluxlite.fsutil import unlink_quietly
from fluxlite.container.base import NAME_PREFIX, ContainerError, Invocation
from fluxlite.spec.container import ContainerSpec, Mount, bad_host, bad_target, parse_container

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any
    from fluxlite.spec import JobSpec
    from fluxlite.staging.base import Policy

logger = logging.getLogger(__name__)

# Host variables that a runtime would copy into the container or turn into mounts.
_INJECTING = ("APPTAINERENV_", "SINGULARITYENV_", "APPTAINER_BIND", "SINGULARITY_BIND")
# What a GPU job needs to see its own devices (set by Flux or the batch system).
_GPU_VARS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
             "GPU_DEVICE_ORDINAL")


@dataclass(slots=True)
class Wrapped:
    """The task's command once wrapped by a runtime (the runtime's command line, in its own
    environment: the task's goes in by file), and what undoes the wrapping."""

    command: TaskCommand
    cleanup: Callable[[], None]
    info: dict[str, Any] = field(default_factory=dict)  # for the record
    # starts a process that ends with a container that outlived the runtime's client
    # (None: no container left); see LocalLauncher's ``linger``
    linger: Callable[[], Any] | None = None


def wrap(task: TaskCommand, spec: JobSpec, *, flux: Any = None, policy: Policy | None = None,
         cancel: threading.Event | None = None) -> Wrapped:
    """Turn the bare task's command into the runtime's, for the container ``spec`` has.

    Only what the job sets of the task's environment (``task.inner``) goes inside. Raises
    ContainerError (exit 71) or a StageError before anything runs; the returned ``cleanup``
    must be called once the task has ended, however it ended.
    """
    from fluxlite.container.runtimes import RUNTIMES
    from fluxlite.staging.base import Policy

    c = spec.container
    assert c is not None
    argv, env, cwd = task.argv, task.env, task.cwd
    rt = RUNTIMES[c.type](c, runtime_env(task))
    info: dict[str, Any] = {"runtime": c.type, "program": rt.program,
                            "version": rt.version()}
    rt.check()
    try:
        rt.remove_leftovers(owner_alive)
    except ContainerError as err:  # a tidy-up of earlier jobs: never this job's failure
        logger.warning("cannot look for leftover containers: %s", err)
    mounts = [_resolved(m, c.type) for m in (
        Mount(cwd, c.workdir), *c.mounts, *symlink_mounts(spec, cwd, c, files=rt.file_mounts))]
    targets = [(m.target, os.path.isdir(m.host)) for m in mounts]
    image = _image(rt, c, policy or Policy(), cancel, info, targets)

    inner = dict(task.inner)
    inner["FLUXLITE_WORKDIR"] = c.workdir
    gpus = gpu_kinds(spec, flux)
    if gpus:
        for k in _GPU_VARS:
            if k in env and k not in inner:
                inner[k] = env[k]
    fd, env_file = _env_file(cwd)
    os.close(fd)
    name = None
    # several tasks of one Flux job run the same command line: names would collide, and
    # the label alone finds their containers
    single = spec.resources.tasks <= 1 and (spec.resources.nodes or 1) <= 1
    if rt.names_containers and (spec.placement == "local" or single):
        name = container_name(spec.name)
    timeout = None
    if spec.limits.maxwalltime is not None:
        # a last resort should fluxlite itself be killed: the runtime ends the task
        timeout = math.ceil(spec.limits.maxwalltime + spec.limits.kill_grace + 60)
    inv = Invocation(image=image, argv=_inside(argv, cwd, c.workdir), env=inner,
                     env_file=env_file, mounts=mounts, workdir=c.workdir, name=name,
                     owner=owner_label(), gpus=gpus, options=c.options, timeout=timeout)
    try:
        cmd = rt.command(inv)
    except BaseException:
        unlink_quietly(env_file)
        raise
    info.update(name=name, workdir=c.workdir, mounts=[str(m) for m in mounts], gpus=gpus,
                rusage="the task's" if c.type in ("apptainer", "singularity", "charliecloud")
                else "the runtime client's (the task is the daemon's or conmon's child)")
    done = threading.Event()

    def cleanup() -> None:
        if done.is_set():
            return
        done.set()
        unlink_quietly(env_file)
        if name is not None:
            rt.remove(name)

    logger.info("container: %s %s", c.type, image)
    linger = None if name is None else (lambda: rt.waiter(name))
    return Wrapped(TaskCommand(cmd, cwd, rt.env), cleanup, info, linger)


def _image(rt: Any, c: ContainerSpec, policy: Policy, cancel: threading.Event | None,
           info: dict[str, Any], targets: list[tuple[str, bool]]) -> str:
    from fluxlite.container.cache import ImageCache
    from fluxlite.urls import redact

    cache = ImageCache()
    if c.image is not None:
        with cache.locked(c.image.sha256):
            img = cache.fetch(c.image, policy, cancel)
            ref = rt.prepare(img)
            rt.mountpoints(ref, targets)
        info.update(image=redact(c.image.sources[0].url), digest=f"sha256:{img.sha256}",
                    format=img.format, cache="hit" if img.hit else "miss",
                    cache_dir=cache.root)
        if img.transfer is not None:
            info.update(bytes=img.transfer.bytes, seconds=round(img.transfer.duration, 6),
                        source=img.transfer.attempts[-1].src if img.transfer.attempts else "")
        return ref
    assert c.hub is not None
    key = "hub-" + hashlib.sha256(c.hub.encode()).hexdigest()
    with cache.locked(key):
        ref, digest = rt.pull(c.hub, cache)
        rt.mountpoints(ref, targets)
    info.update(image=c.hub, digest=digest, cache="pulled")
    return ref


def _resolved(m: Mount, runtime: str) -> Mount:
    """The mount with its host path resolved as the kernel will find it (every link
    followed once, here), checked again on what it leads to: a path that was a link to
    '/' when the job was validated, or became one since, is refused."""
    if not os.path.exists(m.host):
        raise ContainerError(f"container mount {m}: {m.host} does not exist", runtime)
    why = bad_host(m.host)
    if why:
        raise ContainerError(f"container mount {m}: host path {why}", runtime)
    return Mount(os.path.realpath(m.host), m.target, m.read_only)


def runtime_env(task: TaskCommand) -> dict[str, str]:
    """The environment of the runtime's own processes: the host's, without what the job set
    for the task and without the variables a runtime would carry into the container."""
    task_only = set(task.inner) | {"FLUXLITE_WORKDIR"}
    host = os.environ
    out = {k: v for k, v in task.env.items()
           if (k not in task_only or host.get(k) == v) and not k.startswith(_INJECTING)}
    for k in task_only:  # a spec variable that shadowed the host's: the host's value
        if k in host and k not in out and not k.startswith(_INJECTING):
            out[k] = host[k]
    return out


def symlink_mounts(spec: JobSpec, cwd: str, c: ContainerSpec,
                   files: bool = True) -> list[Mount]:
    """Read-only mounts of what the symlinked inputs point at, at the path they name, so
    that the links resolve inside the container (the directory that holds the target, for
    a runtime that mounts only directories: ``files`` false)."""
    staged = list(spec.inputs)
    if spec.staged_executable is not None:
        staged.append(spec.staged_executable)
    out: dict[str, Mount] = {}
    covered = [m.target for m in c.mounts] + [c.workdir]
    for f in staged:
        link = os.path.join(cwd, f.lfn)
        if not os.path.islink(link):
            continue
        target = os.readlink(link)
        if not target.startswith("/"):
            continue  # relative: resolved inside the worker directory's mount
        t = posixpath.normpath(target)
        if any(t == p or t.startswith(p + "/") for p in covered):
            continue
        if not files:
            t = posixpath.dirname(t)
        why = bad_target(t)
        if why:
            raise ContainerError(f"inputs: '{f.lfn}' links to {target}, which cannot be "
                                 f"mounted in the container: {why}", c.type)
        out.setdefault(t, Mount(os.path.realpath(t), t, True))
    return list(out.values())


def describe(c: ContainerSpec) -> str:
    """One line of the --dry-run plan."""
    from fluxlite.urls import redact

    image = c.hub or " | ".join(redact(s.url) for s in c.image.sources) + (
        f" (sha256 {c.image.sha256[:12]}…)" if c.image else "")
    mounts = "".join(f", {m}" for m in c.mounts)
    return f"container {c.type} {image}; worker directory at {c.workdir}{mounts}"


def gpu_kinds(spec: JobSpec, flux: Any) -> list[str]:
    """Which GPUs to hand to the container: when the spec or the Flux allocation has GPUs,
    the kinds whose devices this node has."""
    want = spec.resources.gpus_per_task > 0
    if not want and flux is not None:
        want = bool((getattr(flux, "resources", None) or {}).get("ngpus"))
    if not want:
        return []
    kinds = []
    if os.path.exists("/dev/nvidiactl"):
        kinds.append("nvidia")
    if os.path.exists("/dev/kfd"):
        kinds.append("amd")
    if not kinds:
        logger.warning("the job asks for GPUs but this node has no GPU devices")
    return kinds


def container_name(job: str) -> str:
    """A unique container name for a job: the prefix, its name made safe, pid and a random tag."""
    safe = "".join(ch if ch.isalnum() or ch in "_.-" else "-" for ch in job)[:40].strip("-.")
    return f"{NAME_PREFIX}{safe or 'task'}-{os.getpid()}-{secrets.token_hex(3)}"


def owner_label() -> str:
    """host:uid:pid:start-time of this process, so that a later fluxlite of the same user can
    tell whether the maker of a container is still running."""
    import psutil

    start = int(psutil.Process().create_time())
    return f"{socket.gethostname()}:{os.getuid()}:{os.getpid()}:{start}"


def owner_alive(label: str) -> bool:
    """False only when the process that made a container is known to be gone."""
    import psutil

    try:
        host, uid, pid, started = label.rsplit(":", 3)
        uid_n, pid_n, start_n = int(uid), int(pid), int(started)
    except ValueError:
        return True  # not a label of ours: not ours to remove
    if host != socket.gethostname() or uid_n != os.getuid():
        return True  # another node's or another user's: not ours to judge
    try:
        return int(psutil.Process(pid_n).create_time()) == start_n
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def _inside(argv: list[str], cwd: str, workdir: str) -> list[str]:
    """The task's argv as seen inside: an executable staged into the worker directory is
    found under the directory's mount point."""
    exe = argv[0]
    if exe.startswith(cwd.rstrip("/") + "/"):
        exe = posixpath.join(workdir, os.path.relpath(exe, cwd))
    return [exe, *argv[1:]]


def _env_file(cwd: str) -> tuple[int, str]:
    import tempfile

    d = os.path.join(cwd, ".fluxlite")
    try:
        return tempfile.mkstemp(prefix="container-", suffix=".env",
                                dir=d if os.path.isdir(d) else cwd)
    except OSError as err:
        raise ContainerError(f"cannot write the container's environment file in {cwd}: "
                             f"{err.strerror}") from err


__all__ = ["ContainerError", "ContainerSpec", "Wrapped", "parse_container", "wrap"]
