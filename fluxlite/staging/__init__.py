"""Staging: backends chosen by URL scheme from a registry, and the managed transfer.

Backends are registered by module path and imported only when a URL of theirs is used, so
that a job with only local files never pays for the import of a network client.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from fluxlite.errors import StageError
from fluxlite.urls import scheme_of

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from fluxlite.staging.base import Backend


@dataclass(frozen=True, slots=True)
class _Entry:
    module: str
    cls: str
    read: bool
    write: bool


# scheme -> where its backend lives and which directions it supports
_REGISTRY: dict[str, _Entry] = {
    "file": _Entry("fluxlite.staging.file", "FileBackend", True, True),
    "symlink": _Entry("fluxlite.staging.symlink", "SymlinkBackend", True, False),
    "http": _Entry("fluxlite.staging.http", "HTTPBackend", True, False),
    "https": _Entry("fluxlite.staging.http", "HTTPBackend", True, False),
    "s3": _Entry("fluxlite.staging.s3", "S3Backend", True, True),
}
_INSTANCES: dict[str, Backend] = {}


def register(scheme: str, module: str, cls: str, read: bool = True, write: bool = False) -> None:
    """Add (or replace) the backend of a scheme."""
    _REGISTRY[scheme] = _Entry(module, cls, read, write)
    _INSTANCES.pop(scheme, None)


def supported_schemes(direction: str) -> frozenset[str]:
    """Schemes usable for ``stage-in`` (reading) or ``stage-out`` (writing)."""
    want_write = direction == "stage-out"
    return frozenset(s for s, e in _REGISTRY.items() if (e.write if want_write else e.read))


def backend_for(url: str) -> Backend:
    """The backend of a URL's scheme (one instance per scheme); an unknown scheme is an error
    that names it."""
    scheme = scheme_of(url)
    inst = _INSTANCES.get(scheme)
    if inst is not None:
        return inst
    entry = _REGISTRY.get(scheme)
    if entry is None:
        raise StageError(f"unsupported scheme '{scheme}'", permanent=True)
    try:
        module = importlib.import_module(entry.module)
    except ImportError as err:
        raise StageError(f"scheme '{scheme}' is not available: {err}", permanent=True) from err
    inst = getattr(module, entry.cls)()
    _INSTANCES[scheme] = inst
    return inst
