"""The command line of each runtime, as fluxlite builds it (docs/containers.md shows them)."""

from __future__ import annotations

import logging
import os
import subprocess

from fluxlite.fsutil import unlink_quietly
from fluxlite.container.base import (
    LABEL,
    NAME_PREFIX,
    ContainerError,
    Invocation,
    Runtime,
    env_file_lines,
    run_tool,
    shell_quote_env,
    write_private,
)

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any
    from fluxlite.container.cache import CachedImage, ImageCache

logger = logging.getLogger(__name__)

IMAGE_REPO = "localhost/fluxlite-image"  # file images are tagged IMAGE_REPO:<sha256>


class Podman(Runtime):
    """podman run: the task is the container's only process, behind a small init that
    passes signals on; podman's signal proxy hands it what fluxlite sends to podman."""

    type = "podman"
    programs = ("podman",)
    names_containers = True

    def check(self) -> None:
        """Rootless podman needs subordinate ids to keep the user's uid inside: refused without."""
        if os.getuid() == 0:
            return
        # rootless: --userns=keep-id needs subordinate ids; without them podman maps the user
        # to root inside, one uid only, and keep-id fails after the container is made
        try:
            ranges = self.tool("info", "--format", "{{len .Host.IDMappings.UIDMap}}",
                               timeout=60).strip()
        except ContainerError as err:
            logger.warning("cannot check podman's uid mapping: %s", err)
            return
        if ranges == "1":
            raise ContainerError("podman runs rootless without subordinate ids for this user "
                                 "(/etc/subuid, /etc/subgid): it cannot keep the user's uid "
                                 "inside", self.type)

    def prepare(self, image: CachedImage) -> str:
        """The image loaded (an archive) or imported (a tarball) and tagged by its digest, once."""
        tag = f"{IMAGE_REPO}:{image.sha256}"
        if self._exists(tag):
            return tag
        if image.format in ("docker-archive", "oci-archive"):
            out = self.tool("load", "-i", image.path)
            loaded = _loaded_ref(out)
            if loaded is None:
                raise ContainerError(f"{self.type} load: no image in {image.path}", self.type)
            self.tool("tag", loaded, tag)
        elif image.format == "tar":
            self.tool("import", image.path, tag)
        else:
            raise ContainerError(f"{self.type} cannot run a {image.format} image "
                                 "(give a docker-archive, an OCI archive or a root "
                                 "filesystem tarball)", self.type)
        return tag

    def _exists(self, ref: str) -> bool:
        try:
            self.tool("image", "inspect", "--format", "{{.Id}}", ref, timeout=60)
        except ContainerError:
            return False
        return True

    def pull(self, ref: str, cache: ImageCache) -> tuple[str, str | None]:
        """``podman pull`` a docker:// reference: its name and the digest podman resolved."""
        if not ref.startswith("docker://"):
            raise ContainerError(f"{self.type} cannot pull '{ref}' (only docker://…)",
                                 self.type)
        name = self._pull_name(ref)
        self.tool("pull", "-q", name)
        digest = self.tool("image", "inspect", "--format", "{{.Digest}}", name,
                           timeout=60).strip()
        return name, digest or None

    @staticmethod
    def _pull_name(ref: str) -> str:
        return ref  # podman understands the docker:// transport itself

    def _user(self, inv: Invocation) -> list[str]:
        if inv.uid == 0:
            return ["--user", "0:0"]
        # rootless: the user's own uid and gid inside, mapped to themselves
        return ["--userns=keep-id"]

    def _extra(self, inv: Invocation) -> list[str]:
        out = ["--http-proxy=false"]  # podman would copy the host's proxy variables in
        if inv.timeout:
            out.append(f"--timeout={inv.timeout}")
        return out

    def _gpus(self, inv: Invocation) -> list[str]:
        out: list[str] = []
        if "nvidia" in inv.gpus:
            out += ["--device", "nvidia.com/gpu=all"]  # the CDI name (nvidia-ctk)
        if "amd" in inv.gpus:
            out += ["--device", "/dev/kfd", "--device", "/dev/dri"]
        return out

    def command(self, inv: Invocation) -> list[str]:
        """``podman run`` of the task: an init, the host's network, the user's uid, the env file."""
        multiline = {k: v for k, v in inv.env.items() if "\n" in v or "\r" in v}
        write_private(inv.env_file, env_file_lines(
            {k: v for k, v in inv.env.items() if k not in multiline}, self.type))
        argv = [self.program, "run", "--rm", "--init", "--pull=never", "--network=host",
                "--label", f"{LABEL}={inv.owner}"]
        if inv.name:
            argv += ["--name", inv.name]
        argv += self._user(inv) + self._extra(inv)
        argv += ["--env-file", inv.env_file]
        for k, v in multiline.items():  # an env file holds one line per variable
            argv += ["--env", f"{k}={v}"]
        for m in inv.mounts:
            argv += ["--volume", f"{m.host}:{m.target}:{'ro' if m.read_only else 'rw'}"]
        argv += ["--workdir", inv.workdir, *self._gpus(inv), *inv.options, inv.image,
                 *inv.argv]
        return argv

    def waiter(self, name: str) -> subprocess.Popen[bytes] | None:
        """``podman wait`` for a container still running after ``podman run`` returned (a
        client that returned at a signal, or was killed); None when it is gone."""
        try:
            running = self.tool("container", "inspect", "--format", "{{.State.Running}}",
                                name, timeout=60).strip()
        except ContainerError:
            return None  # gone already: ``--rm`` took it with its end
        if running != "true":
            return None
        logger.info("container %s still runs after %s run returned: waiting for its end",
                    name, self.type)
        try:
            return subprocess.Popen([self.program, "wait", name], env=self.env,  # noqa: S603
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        except OSError as err:
            logger.warning("cannot wait for container %s: %s", name, err.strerror)
            return None

    def remove(self, name: str) -> None:
        """``podman rm --force --ignore --time=0``: gone, whether it was there or not, and
        killed at once (rm's own stop would send a second TERM and wait ten seconds: the
        grace was the task's, and it is over)."""
        try:
            self.tool("rm", "--force", "--ignore", "--time=0", name, timeout=120)
        except ContainerError as err:
            logger.warning("%s", err)

    def _list(self) -> list[tuple[str, str]]:
        out = self.tool("ps", "--all", "--filter", f"label={LABEL}", "--format",
                        f'{{{{.Names}}}} {{{{index .Labels "{LABEL}"}}}}', timeout=120)
        rows = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].startswith(NAME_PREFIX):
                rows.append((parts[0], parts[1]))
        return rows

    def remove_leftovers(self, alive: Any) -> list[str]:
        """Remove the containers whose fluxlite is gone; their names."""
        gone = [name for name, owner in self._list() if not alive(owner)]
        for name in gone:
            logger.info("removing container %s left by an earlier fluxlite", name)
            self.remove(name)
        return gone


class Docker(Podman):
    """docker run: the container is the daemon's child, so a TERM or KILL that fluxlite sends
    reaches it through ``docker run``'s signal proxy, and ``docker rm --force`` ends it."""

    type = "docker"
    programs = ("docker",)

    @staticmethod
    def _pull_name(ref: str) -> str:
        return ref.removeprefix("docker://")  # docker takes the bare name

    def check(self) -> None:
        """Nothing to check: the daemon maps no ids, ``--user`` keeps the uid."""

    def _user(self, inv: Invocation) -> list[str]:
        return ["--user", f"{inv.uid}:{inv.gid}"]  # the daemon runs as root: never root inside

    def _extra(self, inv: Invocation) -> list[str]:
        return []

    def _gpus(self, inv: Invocation) -> list[str]:
        out: list[str] = []
        if "nvidia" in inv.gpus:
            out += ["--gpus", "all"]
        if "amd" in inv.gpus:
            out += ["--device", "/dev/kfd", "--device", "/dev/dri"]
        return out

    def remove(self, name: str) -> None:
        """``docker rm --force``; a failure is said only while the container is still listed."""
        try:
            self.tool("rm", "--force", name, timeout=120)
        except ContainerError as err:
            # docker rm has no --ignore: a container already gone (docker run --rm took it)
            # fails it too, and is what was wanted
            if self._present(name):
                logger.warning("%s", err)

    def _present(self, name: str) -> bool:
        """Whether a container of fluxlite's of that name is there (True when it cannot be
        told)."""
        try:
            return any(n == name for n, _ in self._list())
        except ContainerError:
            return True

    def _list(self) -> list[tuple[str, str]]:
        out = self.tool("ps", "--all", "--filter", f"label={LABEL}", "--format",
                        f'{{{{.Names}}}} {{{{.Label "{LABEL}"}}}}', timeout=120)
        return [(p[0], p[1]) for p in (line.split() for line in out.splitlines())
                if len(p) == 2 and p[0].startswith(NAME_PREFIX)]


class Apptainer(Runtime):
    """apptainer exec: no daemon, no container to remove; the task is a descendant of
    fluxlite like a bare task, in the host's process namespace."""

    type = "apptainer"
    programs = ("apptainer",)

    def prepare(self, image: CachedImage) -> str:
        """A SIF or SquashFS file as it is; an archive built into a SIF once; a tarball unpacked."""
        if image.format in ("sif", "squashfs"):
            return image.path
        if image.format in ("docker-archive", "oci-archive"):
            sif = image.derived("sif")
            if not os.path.isfile(sif):
                tmp = f"{sif}.tmp-{os.getpid()}"
                try:
                    self.tool("build", "--force", tmp, f"{image.format}:{image.path}")
                    os.replace(tmp, sif)
                finally:
                    unlink_quietly(tmp)
            return sif
        return _unpacked(image)  # a root filesystem tarball: a sandbox directory

    def pull(self, ref: str, cache: ImageCache) -> tuple[str, str | None]:
        """``apptainer pull`` a hub reference into a SIF of the cache: its path and sha256."""
        import hashlib

        from fluxlite.integrity import file_sha256

        blobs = os.path.join(cache.root, "sha256")
        os.makedirs(blobs, mode=0o700, exist_ok=True)
        key = hashlib.sha256(ref.encode()).hexdigest()
        tmp = os.path.join(blobs, f".pull-{key}-{os.getpid()}.sif")
        try:
            self.tool("pull", "--force", tmp, ref)
            digest, _, _ = file_sha256(tmp)
            sif = os.path.join(blobs, f"{digest}.sif")
            os.replace(tmp, sif)
        finally:
            unlink_quietly(tmp)
        return sif, f"sha256:{digest}"

    def command(self, inv: Invocation) -> list[str]:
        """``apptainer exec`` of the task: a clean environment from the env file, the mounts."""
        write_private(inv.env_file, shell_quote_env(inv.env, self.type))
        argv = [self.program, "exec", "--cleanenv", "--no-home", "--no-mount", "cwd",
                "--env-file", inv.env_file, "--pwd", inv.workdir]
        for m in inv.mounts:
            argv += ["--bind", f"{m.host}:{m.target}:{'ro' if m.read_only else 'rw'}"]
        if "nvidia" in inv.gpus:
            argv.append("--nv")
        if "amd" in inv.gpus:
            argv.append("--rocm")
        return [*argv, *inv.options, inv.image, *inv.argv]


class Singularity(Apptainer):
    """singularity exec: Apptainer's command line under its older name."""

    type = "singularity"
    programs = ("singularity", "apptainer")  # apptainer installs a singularity command too


class Charliecloud(Runtime):
    """ch-run: an unprivileged user namespace, the user's own uid; the image is a
    directory (or a SquashFS file) mounted read-only."""

    type = "charliecloud"
    programs = ("ch-run",)
    file_mounts = False  # ch-run binds directories only

    def __init__(self, spec: Any, env: dict[str, str]) -> None:
        super().__init__(spec, env)
        if not self.env.get("USER"):  # ch-run refuses to start without it
            import pwd

            try:
                self.env["USER"] = pwd.getpwuid(os.getuid()).pw_name
            except KeyError:
                self.env["USER"] = str(os.getuid())

    def prepare(self, image: CachedImage) -> str:
        """A SquashFS file as it is; a tarball converted to a directory image once."""
        if image.format == "squashfs":
            return image.path
        if image.format != "tar":
            raise ContainerError(f"charliecloud runs a root filesystem tarball or a SquashFS "
                                 f"image, not a {image.format}", self.type)
        dest = image.derived("dir")
        if not os.path.isdir(dest):
            convert = os.path.join(os.path.dirname(self.program), "ch-convert")
            if os.access(convert, os.X_OK):
                self._convert([convert, "-i", "tar", "-o", "dir", image.path], dest)
            else:
                from fluxlite.container.cache import unpack_rootfs

                unpack_rootfs(image.path, dest)
        _ensure_standard(dest)
        return dest

    def _convert(self, argv: list[str], dest: str) -> None:
        """Run ``ch-convert … <dest>`` into a private directory beside ``dest``: its output
        there, renamed into place, and its own work files there too (TMPDIR), so that a
        failed conversion leaves nothing; a failure names what the converter said."""
        import shutil
        import tempfile

        work = tempfile.mkdtemp(prefix=".convert-", dir=os.path.dirname(dest))
        try:
            out = os.path.join(work, "image")
            try:
                run_tool([*argv, out], {**self.env, "TMPDIR": work}, runtime=self.type,
                         detail=_converter_errors)
            except ContainerError as err:
                raise ContainerError(f"charliecloud: cannot convert the image: {err}",
                                     self.type) from err
            os.replace(out, dest)
        finally:
            shutil.rmtree(work, ignore_errors=True)  # made above: ours alone

    def pull(self, ref: str, cache: ImageCache) -> tuple[str, str | None]:
        """``ch-image pull`` a docker:// reference and convert it into a directory of the cache."""
        if not ref.startswith("docker://"):
            raise ContainerError(f"charliecloud cannot pull '{ref}' (only docker://…)",
                                 self.type)
        import hashlib

        name = ref.removeprefix("docker://")
        image_tool = os.path.join(os.path.dirname(self.program), "ch-image")
        run_tool([image_tool, "pull", name], self.env, runtime=self.type)
        blobs = os.path.join(cache.root, "sha256")
        os.makedirs(blobs, mode=0o700, exist_ok=True)
        dest = os.path.join(blobs, f"hub-{hashlib.sha256(ref.encode()).hexdigest()}.dir")
        convert = os.path.join(os.path.dirname(self.program), "ch-convert")
        if os.path.isdir(dest):
            import shutil

            shutil.rmtree(dest)  # the previous pull of this reference, ours
        self._convert([convert, "-i", "ch-image", "-o", "dir", name], dest)
        _ensure_standard(dest)
        return dest, None  # ch-image reports no digest for what it pulled

    def mountpoints(self, image: str, targets: list[tuple[str, bool]]) -> None:
        """Create the mount targets in a directory image (ch-run cannot create them itself)."""
        if not os.path.isdir(image):
            return  # a SquashFS image: its mount points must be in it already
        for target, is_dir in targets:
            _ensure_path(image, target, directory=is_dir)

    def command(self, inv: Invocation) -> list[str]:
        """``ch-run`` of the task: the environment from the env file, a private /tmp, the mounts."""
        # ch-run strips one pair of quotes around a value (single ones, and double ones
        # in later versions) and knows no escapes: every value quoted reads back as it is
        write_private(inv.env_file, env_file_lines(inv.env, self.type, quote="'"))
        # --private-tmp: ch-run would otherwise show $TMPDIR (or the host's /tmp) there, and
        # it can create mount points in its own tmpfs but not below a bind mount
        argv = [self.program, "--unset-env=*", f"--set-env={inv.env_file}",
                "--env-no-expand", "--private-tmp"]
        for m in inv.mounts:  # ch-run binds read-write: the uid's own access, as a bare task
            argv += ["--bind", f"{m.host}:{m.target}"]
        return [*argv, "--cd", inv.workdir, *inv.options, inv.image, "--", *inv.argv]


_STANDARD_DIRS = ("dev", "proc", "sys", "tmp", "home", "mnt", "srv")
_STANDARD_FILES = ("etc/passwd", "etc/group", "etc/hosts", "etc/resolv.conf")


def _ensure_standard(root: str) -> None:
    """What ch-run binds over in every image: created where an image lacks it."""
    for d in _STANDARD_DIRS:
        _ensure_path(root, "/" + d, directory=True)
    for f in _STANDARD_FILES:
        _ensure_path(root, "/" + f, directory=False)


def _ensure_path(root: str, target: str, directory: bool) -> None:
    """Create ``target`` inside the image directory ``root``, never through a link."""
    parts = [p for p in target.split("/") if p]
    cur = root
    for i, part in enumerate(parts):
        cur = os.path.join(cur, part)
        last = i == len(parts) - 1
        if os.path.islink(cur):
            return  # resolved inside the container; never followed here
        if os.path.exists(cur):
            continue
        try:
            if last and not directory:
                os.close(os.open(cur, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                                 0o644))
            else:
                os.mkdir(cur, 0o755)
        except FileExistsError:
            continue
        except OSError as err:
            raise ContainerError(f"cannot create the mount point {target} in {root}: "
                                 f"{err.strerror}", "charliecloud") from err


def _unpacked(image: CachedImage) -> str:
    from fluxlite.container.cache import unpack_rootfs

    dest = image.derived("dir")
    if not os.path.isdir(dest):
        unpack_rootfs(image.path, dest)
    return dest


# ch-convert's own progress lines, around what the tools it runs say
_CONVERT_PROGRESS = ("input:", "output:", "analyzing", "unpacking", "converting", "done",
                     "copying", "flattening")


def _converter_errors(stderr: str) -> str:
    """What went wrong in a ch-convert run, in one line: each distinct message of the tools
    it ran (tar's first complaint, not only its last "exiting now"), in order."""
    seen: list[str] = []
    for line in stderr.splitlines():
        line = line.strip()
        if line and not line.lower().startswith(_CONVERT_PROGRESS) and line not in seen:
            seen.append(line)
    text = "; ".join(seen) or "no message"
    return text if len(text) <= 400 else text[:399] + "…"


def _loaded_ref(out: str) -> str | None:
    """The image named by ``podman load``/``docker load``: 'Loaded image: X' (or
    'Loaded image(s): X,Y', 'Loaded image ID: sha256:…')."""
    for line in out.splitlines():
        if line.startswith("Loaded image"):
            ref = line.split(":", 1)[1].strip().split(",")[0].strip()
            return ref or None
    return None


RUNTIMES: dict[str, type[Runtime]] = {
    "podman": Podman, "docker": Docker, "apptainer": Apptainer, "singularity": Singularity,
    "charliecloud": Charliecloud,
}
