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
    same second gets a suffix (``.1``, ...) instead of replacing the first. Raises OSError."""
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, f"{int(time.time())}-{kind}")
    for n in range(1000):
        path = base if n == 0 else f"{base}.{n}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text(lines))
        return path
    raise FileExistsError(f"{base}: too many parts in one second")
