"""The runtime contract: how an image is made runnable and how a task is started inside.

A :class:`Runtime` never starts the task itself: it builds the command line that the
ordinary task controller (local or Flux) runs in place of the bare task, so the time
limits, the signals and the records are those of any task. What a runtime cannot do is said
where it applies (an implementation raises :class:`ContainerError` with the reason).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from fluxlite.errors import ContainerError

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from fluxlite.container.cache import CachedImage, ImageCache
    from fluxlite.spec.container import ContainerSpec, Mount

logger = logging.getLogger(__name__)

NAME_PREFIX = "fluxlite-"
LABEL = "io.fluxlite.owner"  # host:uid:pid:start-time of the fluxlite that made it
_TOOL_TIMEOUT = 600.0  # loading or converting a large image takes a while


@dataclass(slots=True)
class Invocation:
    """Everything a runtime needs to build the task's command line."""

    image: str  # what the runtime runs: an image reference, a SIF path, a directory
    argv: list[str]  # the task's argv, as seen inside
    env: dict[str, str]  # the task's environment, exactly
    env_file: str  # where the runtime reads ``env`` from (written by the runtime class)
    mounts: list[Mount]  # the worker directory first
    workdir: str
    name: str | None  # the container's name, where the runtime names containers
    owner: str  # the LABEL value
    gpus: list[str] = field(default_factory=list)  # "nvidia", "amd"
    options: tuple[str, ...] = ()
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    timeout: int | None = None  # seconds after which the runtime itself stops the task


def run_tool(argv: list[str], env: dict[str, str] | None = None,
             timeout: float = _TOOL_TIMEOUT, runtime: str = "", stderr_too: bool = False,
             detail: Callable[[str], str] | None = None) -> str:
    """Run one runtime command (no shell) and return its stdout (and stderr, for tools that
    answer there); a failure is one line: the last line of stderr, or what ``detail``
    makes of it."""
    try:
        out = subprocess.run(argv, env=env, capture_output=True, timeout=timeout,  # noqa: S603
                             check=False, stdin=subprocess.DEVNULL)
    except OSError as err:
        raise ContainerError(f"cannot run {argv[0]}: {err.strerror}", runtime) from err
    except subprocess.TimeoutExpired as err:
        raise ContainerError(f"{os.path.basename(argv[0])} {argv[1]}: no answer after "
                             f"{timeout:g} s", runtime) from err
    if out.returncode != 0:
        err = out.stderr.decode("utf-8", "replace")
        if detail is not None:
            why = detail(err)
        else:
            lines = err.strip().splitlines()
            why = lines[-1] if lines else "no message"
        raise ContainerError(f"{os.path.basename(argv[0])} {argv[1]} failed (exit "
                             f"{out.returncode}): {why}", runtime)
    text = out.stdout + (out.stderr if stderr_too else b"")
    return text.decode("utf-8", "replace")


class Runtime(ABC):
    """One container runtime (one program family)."""

    type: str = ""
    programs: tuple[str, ...] = ()  # looked up on the host's PATH, in this order
    names_containers = False  # a container that outlives its task, removed by name
    file_mounts = True  # a single file can be mounted (not only a directory)

    def __init__(self, spec: ContainerSpec, env: dict[str, str]) -> None:
        self.spec = spec
        self.env = env  # the environment of the runtime's own processes
        self.program = self._find()

    def _find(self) -> str:
        path = self.env.get("PATH", os.defpath)
        for name in self.programs:
            found = shutil.which(name, path=path)
            if found:
                return found
        raise ContainerError(f"container runtime '{self.programs[0]}' not found on PATH",
                             self.type)

    def check(self) -> None:  # noqa: B027 - most runtimes have nothing to check
        """Refuse, before anything runs, a setup in which the runtime cannot keep what the
        spec promises (the user's uid inside)."""

    def tool(self, *args: str, timeout: float = _TOOL_TIMEOUT, stderr_too: bool = False) -> str:
        """Run one command of the runtime's program (no shell); its output."""
        return run_tool([self.program, *args], self.env, timeout, self.type, stderr_too)

    def version(self) -> str:
        """The runtime's version, as it reports it."""
        out = self.tool("--version", timeout=60, stderr_too=True).strip()
        return out.splitlines()[0] if out else ""

    @abstractmethod
    def prepare(self, image: CachedImage) -> str:
        """Make a cached image runnable (load, convert); return what ``command`` runs.

        Called under the cache's lock for the image's digest, so a conversion is done once
        per node however many jobs ask for it at the same time."""

    @abstractmethod
    def pull(self, ref: str, cache: ImageCache) -> tuple[str, str | None]:
        """Pull a hub reference with the runtime itself: (what to run, resolved digest)."""

    @abstractmethod
    def command(self, inv: Invocation) -> list[str]:
        """The argv that runs the task inside the image (it also writes ``inv.env_file``)."""

    def mountpoints(  # noqa: B027 - does not apply to most runtimes
            self, image: str, targets: list[tuple[str, bool]]) -> None:
        """Create what the image needs for the mounts to land: (path, is a directory).
        Most runtimes create mount points themselves: nothing to do."""

    def waiter(self, name: str) -> subprocess.Popen[bytes] | None:
        """A process that ends when the named container has ended, started when the
        container still runs after the runtime's client returned; None when it does not
        (runtimes without a daemon keep no container: their task ended with the client)."""
        return None

    def remove(self, name: str) -> None:  # noqa: B027 - does not apply to most runtimes
        """Remove the named container, running or not (runtimes without a daemon keep no
        container: their task is a process of fluxlite's, and ends with its tree)."""

    def remove_leftovers(self, alive: object) -> list[str]:
        """Remove containers left by an earlier fluxlite of this user that is gone;
        ``alive(owner_label) -> bool``. Returns their names."""
        return []


def _check_env(env: dict[str, str], runtime: str, one_line: bool) -> None:
    """Refuse, again, what the spec refuses for an environment file (names it would read
    otherwise; line breaks where its values are one line), for the variables fluxlite adds,
    rather than write a line the runtime would read otherwise."""
    from fluxlite.spec.container import ENV_NAME

    for k, v in env.items():
        if not ENV_NAME.fullmatch(k) or (one_line and ("\n" in v or "\r" in v)):
            raise ContainerError(f"environment variable {k!a} cannot be passed through "
                                 f"{runtime}'s environment file", runtime)


def env_file_lines(env: dict[str, str], runtime: str, quote: str = "") -> str:
    """NAME=value lines of an environment file that reads values literally, each value
    between ``quote`` characters when the runtime strips one pair of them (ch-run)."""
    _check_env(env, runtime, one_line=True)
    return "".join(f"{k}={quote}{v}{quote}\n" for k, v in env.items())


def shell_quote_env(env: dict[str, str], runtime: str) -> str:
    """KEY='value' lines, for env files that a shell-like reader evaluates."""
    import shlex

    _check_env(env, runtime, one_line=False)
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items())


def write_private(path: str, text: str) -> None:
    """A file only its owner can read (an environment may hold secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(text)
