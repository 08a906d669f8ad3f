"""Pegasus integrity metadata (.meta files): expected checksums in, output checksums out."""

from __future__ import annotations


from fluxlite import redact
from fluxlite.errors import SpecError, StageError
from fluxlite.fsutil import read_small_file, write_atomic

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

MAX_META_FILE = 256 << 20  # bytes


def read_meta_files(paths: tuple[str, ...] | list[str], first: int = 0) -> dict[str, str]:
    """lfn -> expected sha256 from Pegasus .meta files (later files win); ``first``: the
    index of the first path in the job's ``meta`` list, for the messages.

    Every entry with a checksum counts, whatever its ``_type``, as in pegasus-integrity:
    the planner's ``<job>.in.meta`` says ``data`` for inputs and ``executable`` for staged
    executables, pegasus-integrity and pegasus-exitcode write ``file``."""
    import orjson  # a job with .meta files only: orjson (and uuid) cost 3 ms to import

    out: dict[str, str] = {}
    for i, path in enumerate(paths, first):
        try:
            doc = orjson.loads(read_small_file(path, MAX_META_FILE))
        except OSError as err:
            raise SpecError([f"meta[{i}]: cannot read {path}: {err.strerror}"]) from err
        except orjson.JSONDecodeError as err:
            raise SpecError([f"meta[{i}]: {path} is not valid JSON: {err}"]) from err
        except ValueError as err:  # not a regular file, or too large
            raise SpecError([f"meta[{i}]: cannot read {path}: {err}"]) from err
        if not isinstance(doc, list):
            raise SpecError([f"meta[{i}]: {path} must hold a JSON list"])
        for j, entry in enumerate(doc):
            if not isinstance(entry, dict):
                continue
            attrs = entry.get("_attributes") or {}
            lfn = entry.get("_id")
            if not isinstance(lfn, str) or not isinstance(attrs, dict):
                raise SpecError([f"meta[{i}]: {path}[{j}]: needs _id and _attributes"])
            if str(attrs.get("checksum.type", "")).lower() == "sha256" and attrs.get(
                    "checksum.value"):
                out[lfn] = str(attrs["checksum.value"]).lower()
    return out


def meta_entries(outputs: list[Any]) -> list[dict[str, Any]]:
    """The Pegasus meta-file entries (checksum, size, timing) of the outputs that have a sha256."""
    entries = []
    for o in outputs:
        if not o.sha256:
            continue
        attrs = {"checksum.type": "sha256", "checksum.value": o.sha256,
                 "checksum.timing": f"{o.checksum_timing:.3f}"}
        if o.stat:
            attrs["size"] = str(o.stat["size"])
            attrs["ctime"] = o.stat["ctime"]
            attrs["user"] = str(o.stat["user"])
        entries.append({"_type": "file", "_id": o.lfn, "_attributes": attrs})
    return entries


def write_meta(path: str, outputs: list[Any]) -> None:
    """Write a .meta file for the outputs (atomically), as pegasus-exitcode would."""
    import orjson

    data = orjson.dumps(redact.deep(meta_entries(outputs)), option=orjson.OPT_INDENT_2)
    try:
        write_atomic(path, data)
    except OSError as err:
        raise StageError(f"cannot write the .meta file {path}: {err.strerror or err}") from err
