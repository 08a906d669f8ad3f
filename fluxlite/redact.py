"""Redaction of secrets: the one place that decides what is a secret and hides it.

Everything fluxlite writes (logs, both records, .meta files, transfer records, task lines,
dry-run plans, error messages) goes through these functions. The rules are structural, not a
pattern over the raw text:

- the userinfo of a URL's authority (``user:password@``), however it is written: a password
  holding an unencoded ``@``, ``/``, ``#``, ``?`` or space is still a password;
- the value of every query, fragment or matrix (``;name=``) parameter whose name is a secret
  name (below);
- the value of every environment variable whose name is a secret name.

A name is a secret name when, compared without regard to case, it contains one of
``SECRET_WORDS`` or is one of ``SECRET_NAMES``. docs/staging.md lists both; every other page
refers to that list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

MASK = "***"

# A name containing any of these (case-insensitive) holds a secret.
SECRET_WORDS = ("PASS", "PWD", "TOKEN", "SECRET", "KEY", "CREDENTIAL", "AUTH", "COOKIE",
                "SESSION", "SIGNATURE")
# Short names that are secrets without containing one of the words.
SECRET_NAMES = frozenset({"SIG", "SID"})
# Environment variables that contain a word above but hold no secret (the shell's own).
NOT_SECRET_ENV = frozenset({"PWD", "OLDPWD"})

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# a parameter: its delimiter, its name, '='
_PARAM = re.compile(r"[;?&#]([^=;?&#/\s]*)=")
_END_OF_SECRET_VALUE = re.compile(r"[&;\s'\"<>`]")
_CLOSING = {"'": "'", '"': '"', "`": "`", "<": ">", "(": ")"}
_AUTHORITY_END = re.compile(r"[/?#\s]")
_HOST_PORT_PATH = re.compile(r"[^@:/?#\s]*:\d+[/?#][^@]*$")


def is_secret_name(name: str) -> bool:
    """True for an environment variable or URL parameter whose value is a secret."""
    up = name.strip().upper()
    return up in SECRET_NAMES or any(w in up for w in SECRET_WORDS)


def _userinfo_end(rest: str, text: bool, quote: str = "") -> int | None:
    """Index of the '@' that ends the userinfo in ``rest`` (the URL after ``scheme://``).

    The authority normally ends at the first '/', '?' or '#', and its userinfo at the last
    '@' before that (as urlsplit reads it). A password may hold those delimiters (and
    spaces) unencoded: an '@' further on still ends the userinfo when a ':' comes before any
    delimiter (the ``user:`` of ``user:password``). In free text a URL ends at the end of
    its line. When in doubt, more is hidden rather than less.
    """
    if text and quote:
        # a URL in a message ends at its closing quote (text() has cut it at its line's end
        # and at the next URL)
        rest = rest.split(quote, 1)[0]
    if "@" not in rest:
        return None
    m = _AUTHORITY_END.search(rest)
    delim = m.start() if m else len(rest)
    colon = rest.find(":", 0, delim)
    if colon >= 0:
        at = rest.rfind("@")
        if at > colon:
            return at
    at = rest.rfind("@", 0, delim)
    return at if at >= 0 else None


def _scan(s: str, pattern: re.Pattern[str],
          fix: Callable[[re.Match[str]], tuple[str, int]]) -> str:
    """``s`` with each match rewritten: ``fix`` gives the text replacing s[match.start():j]
    and j, where the search goes on."""
    out: list[str] = []
    i = 0
    while (m := pattern.search(s, i)) is not None:
        new, j = fix(m)
        out += [s[i:m.start()], new]
        i = max(j, m.end())
    out.append(s[i:])
    return "".join(out)


def _params(tail: str) -> str:
    """Secret parameter values of a URL's path, query and fragment replaced by the mask."""
    if "=" not in tail:
        return tail

    def fix(m: re.Match[str]) -> tuple[str, int]:
        if not is_secret_name(m.group(1)):
            return m.group(0), m.end()
        # the value ends at the next parameter, not at a '#' or '?' it may hold
        end = _END_OF_SECRET_VALUE.search(tail, m.end())
        return m.group(0) + MASK, end.start() if end else len(tail)

    return _scan(tail, _PARAM, fix)


def _one(url: str, text: bool, quote: str = "") -> tuple[str, int]:
    """Redact the URL at the start of ``url``; return it and how much of the input it used
    (all of it unless ``text``, where the URL ends at white space after its userinfo)."""
    m = _SCHEME.match(url)
    assert m is not None
    head, rest = m.group(0), url[m.end():]
    at = _userinfo_end(rest, text, quote)
    if at is not None:
        rest = rest[at + 1:]
        head += MASK + "@"
    used = len(url) - len(rest)
    if text:
        ws = re.search(r"\s", rest)
        if ws is not None:
            rest = rest[:ws.start()]
        used += len(rest)
    return head + _params(rest), used if text else len(url)


def split_userinfo(url: str) -> tuple[str | None, str]:
    """(userinfo or None, the URL without it), with the same reading as redaction.

    The http backend takes its credentials from here, so what is sent as the password is
    exactly what is hidden in every message.
    """
    m = _SCHEME.match(url)
    if m is None:
        return None, url
    rest = url[m.end():]
    at = _userinfo_end(rest, False)
    if at is None or _HOST_PORT_PATH.match(rest[:at]):
        # host:port/path with an '@' in the path: no userinfo to send (still hidden)
        return None, url
    return rest[:at], m.group(0) + rest[at + 1:]


def url(value: str) -> str:
    """A URL (or a bare path) with its credentials and secret parameters hidden."""
    if not value or "://" not in value:
        return value
    if _SCHEME.match(value) is None:
        return text(value)
    return _one(value, False)[0]


def text(value: str) -> str:
    """Free text (a message, a log line, an argument) with every URL in it redacted."""
    if not value or "://" not in value:
        return value

    def fix(m: re.Match[str]) -> tuple[str, int]:
        before = value[m.start() - 1] if m.start() else ""
        # a URL in free text ends at its line's end or where the next URL begins
        nxt = _SCHEME.search(value, m.end())
        end = nxt.start() if nxt else len(value)
        nl = value.find("\n", m.end(), end)
        segment = value[m.start():nl if nl >= 0 else end]
        red, used = _one(segment, True, _CLOSING.get(before, ""))
        return red, m.start() + used

    return _scan(value, _SCHEME, fix)


def env(environment: Mapping[str, str]) -> dict[str, str]:
    """The environment, sorted by name: secret names masked, URLs in other values redacted.
    The shell's PWD and OLDPWD name directories, not passwords."""
    return {k: (MASK if is_secret_name(k) and k not in NOT_SECRET_ENV else text(v))
            for k, v in sorted(environment.items())}


def deep(obj: Any) -> Any:
    """Every string inside a JSON-like structure redacted as text; an ``environment``
    mapping also by the names of its variables."""
    if isinstance(obj, str):
        return text(obj)
    if isinstance(obj, dict):
        return {k: (env(v) if k == "environment" and isinstance(v, dict)
                    and all(isinstance(x, str) for x in v.values()) else deep(v))
                for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [deep(x) for x in obj]
    return obj
