"""The node's image cache: images staged once, verified, kept under their sha256.

Layout of the cache directory (``$FLUXLITE_CACHE/images``, else
``$XDG_CACHE_HOME/fluxlite/images``, ``~/.cache/fluxlite/images``, and
``/tmp/fluxlite-$UID/images`` when there is no usable home)::

    sha256/<digest>          the image file, exactly as staged (verified while copying)
    sha256/<digest>.format   what it is: docker-archive, oci-archive, tar, sif, squashfs
    sha256/<digest>.sif      conversions a runtime needed (an Apptainer SIF …)
    sha256/<digest>.dir/     … or an unpacked directory (Charliecloud, Apptainer sandbox)
    locks/<digest>.lock      flock(2) held while the image is fetched or converted

Concurrent jobs on a node take the same lock: the first fetches and converts, the others
wait and find the result. An image is renamed into place only after its digest matched, so
whatever is in the cache under a digest is that digest.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fluxlite.errors import ContainerError
from fluxlite.spec.container import ImageFile
from fluxlite.staging.base import Policy, Request, TransferResult, transfer

logger = logging.getLogger(__name__)


def cache_dir() -> str:
    """The image cache of this user on this node."""
    base = os.environ.get("FLUXLITE_CACHE")
    if base:
        return os.path.join(base, "images")
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "fluxlite", "images")
    home = os.path.expanduser("~")
    if home.startswith("/") and home != "/" and os.access(home, os.W_OK):
        return os.path.join(home, ".cache", "fluxlite", "images")
    return os.path.join("/tmp", f"fluxlite-{os.getuid()}", "images")


@dataclass(slots=True)
class CachedImage:
    """An image in the node's cache: its file, digest and format, and whether it was there."""

    path: str
    sha256: str
    format: str
    hit: bool  # found in the cache: nothing was transferred
    transfer: TransferResult | None = None

    def derived(self, suffix: str) -> str:
        """Where a conversion of this image lives (next to it, named after its digest)."""
        return f"{self.path}.{suffix}"


class ImageCache:
    """The node's image cache: files named by their sha256, fetched once under a lock."""

    def __init__(self, root: str | None = None) -> None:
        self.root = root or cache_dir()

    def _dirs(self) -> tuple[str, str]:
        blobs, locks = os.path.join(self.root, "sha256"), os.path.join(self.root, "locks")
        try:
            for d in (blobs, locks):
                os.makedirs(d, mode=0o700, exist_ok=True)
        except OSError as err:
            raise ContainerError(f"image cache {self.root}: {err.strerror}") from err
        return blobs, locks

    @contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """Hold the cache's lock for ``key`` (a digest): one fetch or conversion at a time."""
        _, locks = self._dirs()
        path = os.path.join(locks, f"{key}.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise ContainerError(f"image cache lock {path}: {err.strerror}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # a signal interrupts the wait (Interrupted)
            yield
        finally:
            os.close(fd)  # releases the lock, whatever happened

    def fetch(self, image: ImageFile, policy: Policy,
              cancel: threading.Event | None = None) -> CachedImage:
        """The image in the cache, staged there first if it is not; call under ``locked``."""
        blobs, _ = self._dirs()
        path = os.path.join(blobs, image.sha256)
        res: TransferResult | None = None
        hit = os.path.isfile(path)
        if not hit:
            # fsync: a cached image must survive a crash whole, or not be there at all
            req = Request(lfn="container image", dst=path, expected=image.sha256, fsync=True,
                          sources=tuple((s.url, s.tls_verify) for s in image.sources))
            res = transfer(req, policy, cancel)
            logger.info("container image %s staged to the cache (%d bytes)",
                        image.sha256[:12], res.bytes)
        else:
            logger.info("container image %s found in the cache", image.sha256[:12])
        return CachedImage(path, image.sha256, self._format(path), hit, res)

    @staticmethod
    def _format(path: str) -> str:
        marker = f"{path}.format"
        try:
            with open(marker, encoding="ascii") as fh:
                return fh.read().strip()
        except OSError:
            pass
        fmt = detect_format(path)
        from fluxlite.fsutil import write_atomic

        write_atomic(marker, fmt.encode())
        return fmt


def detect_format(path: str) -> str:
    """What kind of image a file is, from its content (never from its name)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as err:
        raise ContainerError(f"container image {path}: {err.strerror}") from err
    if head[32:41] == b"SIF_MAGIC":
        return "sif"
    if head[:4] == b"hsqs":
        return "squashfs"
    if not (head[257:262] == b"ustar" or head[:2] == b"\x1f\x8b" or head[:3] == b"BZh"
            or head[:6] == b"\xfd7zXZ\x00"):
        raise ContainerError("container image: not a SIF, SquashFS or tar file")
    try:
        # headers only for a plain tar (tarfile seeks over the data); a compressed one is
        # read through once, and the answer is kept next to the image
        with tarfile.open(path, "r:*") as tf:
            for m in tf:
                name = m.name.lstrip("./")
                if name == "manifest.json":
                    return "docker-archive"
                if name == "oci-layout":
                    return "oci-archive"
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ContainerError(f"container image: unreadable tar file: {err}") from err
    return "tar"


def unpack_rootfs(tar_path: str, dest: str) -> None:
    """A root filesystem tarball unpacked into ``dest`` (made afresh, renamed into place).

    The ``tar`` filter refuses members that would land outside the directory, through a
    link or otherwise, and drops set-uid bits and device files.
    """
    import shutil
    import tempfile

    if not hasattr(tarfile, "tar_filter"):  # Python 3.11.0–3.11.3: no extraction filters
        raise ContainerError(
            f"container image: this Python ({sys.version.split()[0]}) cannot unpack an image "
            "safely (its tarfile has no extraction filters, from 3.11.4 on): use Python "
            "3.11.4 or later, or give the runtime's own converter (ch-convert) or a SIF")
    parent = os.path.dirname(dest)
    tmp = tempfile.mkdtemp(prefix=".unpack-", dir=parent)
    try:
        with tarfile.open(tar_path, "r:*") as tf:
            tf.extractall(tmp, filter="tar")
        os.replace(tmp, dest)
    except (tarfile.TarError, OSError) as err:
        raise ContainerError(f"container image: cannot unpack {tar_path}: {err}") from err
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)  # our own temporary directory only
