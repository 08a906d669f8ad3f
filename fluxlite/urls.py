"""URL parsing shared by the spec and the staging backends, and redaction of credentials."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit, urlunsplit

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def scheme_of(url: str) -> str:
    """The URL's scheme in lower case; a bare path counts as ``file``."""
    m = _SCHEME.match(url)
    return m.group(1).lower() if m else "file"


# a scheme fluxlite knows, written without its '//': "file:data/f" is neither a URL (a file
# URL is file:///abs or file://localhost/abs) nor, surely, a path meant to start "file:"
_NO_SLASHES = re.compile(r"^(file|symlink|https?|s3):(?!//)", re.IGNORECASE)


def local_path(url: str) -> str:
    """The filesystem path of a ``file://`` or ``symlink://`` URL (or a bare path).

    ValueError for a URL of another host, and for a known scheme without ``//``
    (``file:data/f``, ``file:/abs``), which would otherwise be read as a relative path.
    """
    if not _SCHEME.match(url):
        m = _NO_SLASHES.match(url)
        if m:
            scheme = m.group(1).lower()
            hint = (f"{scheme}:///ABSOLUTE/PATH or {scheme}://localhost/ABSOLUTE/PATH"
                    if scheme in ("file", "symlink") else f"{scheme}://HOST/PATH")
            raise ValueError(f"'{url}' is not a URL: write {hint}")
        return url
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        # the host only: what precedes an '@' is credentials
        raise ValueError(f"file URL with a remote host {parts.netloc.rpartition('@')[2]!r}")
    return unquote(parts.path)


def redact(url: str) -> str:
    """The URL with its credentials and secret parameters hidden (see fluxlite.redact)."""
    from fluxlite import redact as _redact

    return _redact.url(url)


def file_url(path: str) -> str:
    """A file:// URL for a local path; local_path() gives the same path back."""
    from urllib.parse import quote

    return urlunsplit(("file", "", quote(path), "", ""))
