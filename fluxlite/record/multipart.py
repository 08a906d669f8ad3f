"""pegasus-multipart sections: the one writer of ``transfer_attempts`` and integrity
sections, whether they go into a job's kickstart record (``fluxlite run``) or into a file
of ``$PEGASUS_MULTIPART_DIR`` that pegasus-kickstart embeds (``fluxlite transfer``,
``fluxlite integrity``)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable

logger = logging.getLogger(__name__)

SEPARATOR = "---------------pegasus-multipart"


def section(name: str, items: Iterable[dict[str, str]]) -> list[str]:
    """``- name:`` followed by one YAML mapping per item; the values are YAML scalars."""
    lines = [f"- {name}:"]
    for item in items:
        lines += [("  - " if i == 0 else "    ") + f"{k}: {v}"
                  for i, (k, v) in enumerate(item.items())]
    return lines


def integrity(items: list[dict[str, str]], ok: int, duration: str) -> list[str]:
    """The verification attempts and their summary, as pegasus-integrity writes them."""
    return [*section("integrity_verification_attempts", items), "- integrity_summary:",
            f"    succeeded: {ok}", f"    failed: {len(items) - ok}",
            f"    duration: {duration}"]


def text(lines: list[str]) -> str:
    """Sections' lines as the text of a part."""
    return "\n".join(lines) + "\n"


def write_part(directory: str, kind: str, lines: list[str]) -> str:
    """``<epoch>-<kind>`` in the multipart directory, made if need be; a second part in the
    same second gets a suffix (``.1``, ...) instead of replacing the first. The part is
    written under a hidden temporary name (PegasusLite's ``ls`` passes over it) and linked
    into place whole, so a full filesystem leaves no empty or cut part for kickstart to
    embed. Raises OSError."""
    from fluxlite.fsutil import token_hex, unlink_quietly

    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, f"{int(time.time())}-{kind}")
    tmp = os.path.join(directory, f".{kind}.tmp-{os.getpid()}-{token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644)
    try:
        try:
            view = memoryview(text(lines).encode("utf-8"))
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        for n in range(1000):
            path = base if n == 0 else f"{base}.{n}"
            try:
                os.link(tmp, path)
            except FileExistsError:
                continue
            return path
        raise FileExistsError(f"{base}: too many parts in one second")
    finally:
        unlink_quietly(tmp)
