"""The ``container`` section of job.json, validated like the rest of the spec.

```
"container": {"type": "podman", "image": {"url": "https://…/img.tar", "sha256": "…"},
              "mounts": ["/data:/data:ro"], "workdir": "/srv", "options": ["--cpus=2"]}
```

``image`` is either a file staged like an input (``url`` or ``urls``, and its ``sha256``,
which keys the node's image cache) or a hub reference (``docker://…``, ``library://…``)
that the runtime pulls itself. The runtimes that run such a container are
``fluxlite.container``'s.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass

from fluxlite.spec.fields import CONTAINER_RUNTIMES, SECTIONS, Field
from fluxlite.spec.sections import Source

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

RUNTIMES = CONTAINER_RUNTIMES
HUB_SCHEMES = ("docker", "library", "oras", "shub")
DEFAULT_WORKDIR = "/srv"
_WORKDIR = Field("string", default=DEFAULT_WORKDIR)  # its shape is checked by bad_target
# Paths a mount may not cover: the runtime provides them, and covering them would hand the
# task the host's devices or kernel interfaces.
_RESERVED = ("/proc", "/sys", "/dev")
# Flags fluxlite sets itself from the spec; given in ``options`` they would undo what the
# spec promises (the uid kept, no host environment, only the mounts listed, signals passed
# on to the task).
_OWN_FLAGS: dict[str, tuple[str, ...]] = {
    "podman": ("--privileged", "--user", "-u", "--userns", "--env-host", "--volume", "-v",
               "--mount", "--name", "--rm", "--workdir", "-w", "--env-file", "--env", "-e",
               "--sig-proxy"),
    "apptainer": ("--bind", "-B", "--mount", "--home", "-H", "--pwd", "--env", "--env-file",
                  "--cleanenv", "-e", "--no-home", "--userns", "-u", "--fakeroot", "-f"),
    "charliecloud": ("--bind", "-b", "--cd", "-c", "--set-env", "--unset-env", "--uid",
                     "-u", "--gid", "-g", "--home"),
}
_OWN_FLAGS["docker"] = _OWN_FLAGS["podman"]
_OWN_FLAGS["singularity"] = _OWN_FLAGS["apptainer"]
# Flags that would let the task write into the image itself: the image in the node's cache
# is the one whose digest was verified, and the next job would run what the task left.
# (Overlays on a tmpfs — apptainer's --writable-tmpfs, ch-run's --write-fake — leave the
# image as it was and stay allowed.) podman and docker write into a container layer of
# their own, never into the image.
_WRITABLE: dict[str, tuple[str, ...]] = {
    "apptainer": ("--writable", "-w"),
    "charliecloud": ("--write", "-w"),
}
_WRITABLE["singularity"] = _WRITABLE["apptainer"]
# ch-run reads its options with argp, which takes any unique prefix of a long option
# ("--wri" is "--write"); the others (Go's pflag) take only the full name.
_ABBREVIATES = ("charliecloud",)
# What the runtimes' environment files can carry: a portable name, one line per variable.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Mount:
    """A directory (or file) of the host mounted in the container."""

    host: str
    target: str
    read_only: bool = False

    def __str__(self) -> str:
        return f"{self.host}:{self.target}:{'ro' if self.read_only else 'rw'}"


@dataclass(frozen=True, slots=True)
class ImageFile:
    """An image staged like an input, cached on the node under its sha256."""

    sources: tuple[Source, ...]
    sha256: str


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """The container section of a job: runtime, image (a file or a hub reference), mounts,
    working directory and the runtime's own options."""

    type: str
    image: ImageFile | None = None  # exactly one of image and hub
    hub: str | None = None
    mounts: tuple[Mount, ...] = ()
    workdir: str = DEFAULT_WORKDIR
    options: tuple[str, ...] = ()


def parse_container(v: Any, value: Any, path: str = "container",
                    env: list[tuple[str, str]] | tuple[tuple[str, str], ...] = ()
                    ) -> ContainerSpec | None:
    """Validate ``value`` with the spec's ``Validator`` ``v`` (its problems list collects ours);
    ``env`` is the job's environment, which goes into the container through a file."""
    d = v.obj(value, path)
    if d is None:
        return None
    v.known(d, "container", path)
    ctype = v.value(d, "type", path, SECTIONS["container"]["type"])
    image, hub = _image(v, d.get("image"), f"{path}.image")
    workdir = v.value(d, "workdir", path, _WORKDIR) or DEFAULT_WORKDIR
    why = bad_target(workdir)
    if why:
        v.err(f"{path}.workdir", why)
    mounts: list[Mount] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(v.list_of(d, "mounts", path)):
        m = _mount(v, raw, f"{path}.mounts[{i}]", workdir)
        if m is None:
            continue
        mounts.append(m)
        if ctype == "charliecloud" and m.read_only:
            v.err(f"{path}.mounts[{i}]", "charliecloud cannot mount read-only (ch-run binds "
                  "read-write); use rw or another runtime")
        if m.target in seen:
            v.err(f"{path}.mounts[{i}]", f"'{m.target}' is already mounted by "
                  f"{path}.mounts[{seen[m.target]}]")
        seen.setdefault(m.target, i)
    options: list[str] = []
    for i, o in enumerate(v.list_of(d, "options", path)):
        p = f"{path}.options[{i}]"
        if not isinstance(o, str) or not o or "\x00" in o:
            v.err(p, "must be a non-empty string")
            continue
        if ctype is not None:
            flag = refused_flag(ctype, o, _OWN_FLAGS[ctype])
            if flag:
                v.err(p, f"'{flag}' is set by fluxlite from the spec (mounts, workdir, "
                      "environment, signals, the user's uid)")
                continue
            flag = refused_flag(ctype, o, _WRITABLE.get(ctype, ()))
            if flag:
                v.err(p, f"'{flag}' would let the task write into the image, which is "
                      "cached for later jobs under its verified digest")
                continue
        options.append(o)
    if ctype is not None:
        for k, val in env:
            _env_entry(v, ctype, k, val)
    if ctype is None or (image is None and hub is None):
        return None
    return ContainerSpec(ctype, image, hub, tuple(mounts), posixpath.normpath(workdir),
                         tuple(options))


def refused_flag(ctype: str, option: str, refused: tuple[str, ...]) -> str | None:
    """The flag of ``refused`` that ``option`` (one argv word) gives the runtime, read as the
    runtime reads it: ``--name=value``, a cluster of short flags (``-vw``), and for argp
    (ch-run) any unique prefix of a long option; None when it gives none."""
    if option.startswith("--"):
        name = option.split("=", 1)[0]
        for f in refused:
            if not f.startswith("--"):
                continue
            if name == f or (ctype in _ABBREVIATES and len(name) > 3 and f.startswith(name)):
                return f
        return None
    if option.startswith("-") and len(option) > 1:
        # a cluster of short flags; a flag's value may follow in the same word, so every
        # letter counts (the long form is always there for a value that looks like one)
        shorts = {f[1] for f in refused if len(f) == 2 and f[0] == "-" and f[1] != "-"}
        for ch in option[1:].split("=", 1)[0]:
            if ch in shorts:
                return f"-{ch}"
    return None


def _env_entry(v: Any, ctype: str, name: str, value: str) -> None:
    """A variable must survive the runtime's environment file exactly: a portable name
    (a file line is NAME=value; a bare NAME there means "the host's value"), and for
    ch-run, whose file has no escapes, a value of one line."""
    if not ENV_NAME.fullmatch(name):
        v.err(f"environment.{name!a}", "is not a valid variable name for a container "
              "(letters, digits and '_', not starting with a digit)")
    elif ctype == "charliecloud" and ("\n" in value or "\r" in value):
        v.err(f"environment.{name}", "holds a line break, which charliecloud's "
              "environment file cannot carry")


def _image(v: Any, value: Any, path: str) -> tuple[ImageFile | None, str | None]:
    if value is None:
        v.err(path, "is required")
        return None, None
    if isinstance(value, str):
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in HUB_SCHEMES or not value.split("://", 1)[1]:
            hubs = ", ".join(f"{s}://…" for s in HUB_SCHEMES)
            v.err(path, f"'{value}' is not a hub reference ({hubs}); an image file is "
                  '{"url": …, "sha256": …}')
            return None, None
        if any(c in value for c in "\x00\n "):
            v.err(path, "must not contain spaces or control characters")
            return None, None
        return None, value
    d = v.obj(value, path)
    if d is None:
        return None, None
    v.known(d, "container_image", path)
    if "url" in d and "urls" in d:
        v.err(path, "give url or urls, not both")
        return None, None
    raw = d.get("urls") if "urls" in d else ([d["url"]] if d.get("url") is not None else None)
    key = "urls" if "urls" in d else "url"
    if raw is None:
        v.err(f"{path}.url", "is required")
        return None, None
    if key == "url" and isinstance(d["url"], str):  # one URL: no index in the path
        url = v.url(d["url"], f"{path}.url", "stage-in")
        sources = [Source(url)] if url is not None else []
    else:
        sources = v.sources(raw, f"{path}.{key}", "stage-in")
    sha = v.value(d, "sha256", path, SECTIONS["container_image"]["sha256"])
    if not sources or sha is None or len(sources) != len(raw):
        return None, None
    return ImageFile(tuple(sources), sha.lower()), None


def _bad_path(p: str) -> str | None:
    if not p.startswith("/"):
        return f"'{p}' must be an absolute path"
    if ".." in p.split("/"):
        return f"'{p}' must not contain '..'"
    if any(c in p for c in ":,\x00\n"):
        return f"'{p}' must not contain ':', ',' or control characters"
    return None


def bad_host(p: str) -> str | None:
    """Why ``p`` cannot be mounted from the host, or None: judged on the path the kernel
    would mount, with every link in it resolved (a link to '/' is '/')."""
    why = _bad_path(p)
    if why:
        return why
    real = os.path.realpath(p)
    if real == "/":
        return ("'/' would hand the whole host to the task" if posixpath.normpath(p) == "/"
                else f"'{p}' leads to '/', which would hand the whole host to the task")
    return None


def bad_target(p: str) -> str | None:
    """Why ``p`` cannot be a mount target in the container, or None."""
    why = _bad_path(p)
    if why:
        return why
    norm = posixpath.normpath(p)
    if norm == "/":
        return "must not be the container's root directory"
    for r in _RESERVED:
        if norm == r or norm.startswith(r + "/"):
            return f"'{p}' lies in {r}, which the runtime provides"
    return None


def _mount(v: Any, value: Any, path: str, workdir: str) -> Mount | None:
    if not isinstance(value, str) or not value:
        v.err(path, "must be a string \"/host/path:/container/path[:ro|rw]\"")
        return None
    parts = value.split(":")
    if len(parts) not in (2, 3):
        v.err(path, f"'{value}' is not \"/host/path:/container/path[:ro|rw]\"")
        return None
    host, target = parts[0], parts[1]
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in ("ro", "rw"):
        v.err(path, f"mode must be ro or rw, not '{mode}'")
        return None
    why = bad_host(host)
    if why:
        v.err(path, f"host path {why}")
        return None
    why = bad_target(target)
    if why:
        v.err(path, f"container path {why}")
        return None
    t, w = posixpath.normpath(target), posixpath.normpath(workdir)
    if t == w or w.startswith(t + "/") or t.startswith(w + "/"):
        v.err(path, f"container path '{target}' overlaps the worker directory's mount "
              f"point '{workdir}'")
        return None
    return Mount(posixpath.normpath(host), t, mode == "ro")
