"""http:// and https:// stage-in with the standard library only (http.client and ssl).

The reader streams the body straight into the managed transfer's buffers. A connection
that drops in the middle of the body is resumed inside the reader with a ``Range`` request
when the server advertises byte ranges, so the bytes already hashed and written are kept;
otherwise the attempt fails as transient and the managed transfer retries it.

Errors are classified for the retry logic: 404, 403, 410 and most other 4xx answers, bad
certificates and too many redirects are permanent for that source; 5xx, 408, 429, refused
or dropped connections and timeouts are transient. URLs are always redacted in messages.
"""

from __future__ import annotations

import base64
import http.client
import io
import ipaddress
import logging
import socket
import ssl
import threading
import time
import weakref
import zlib
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import getproxies, proxy_bypass

from fluxlite.errors import StageError
from fluxlite.redact import split_userinfo
from fluxlite.staging.base import Backend, Cancelled, RateCheck
from fluxlite.urls import redact

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
MAX_RESUMES = 5  # per attempt; each resume must have made progress since the last one
_REDIRECTS = (301, 302, 303, 307, 308)
_TRANSIENT_4XX = (408, 425, 429)
_MISSING = (404, 410)


def _user_agent() -> str:
    from fluxlite.version import __version__

    return f"fluxlite/{__version__}"


class HTTPError(StageError):
    """An HTTP answer that is not the data; ``missing`` when the server says it has none."""

    def __init__(self, message: str, status: int = 0, permanent: bool = False) -> None:
        super().__init__(message, permanent=permanent, missing=status in _MISSING)
        self.status = status


# --------------------------------------------------------------------------- TLS contexts
_CTX: dict[bool, ssl.SSLContext] = {}
_CTX_LOCK = threading.Lock()


def _context(verify: bool) -> ssl.SSLContext:
    with _CTX_LOCK:
        ctx = _CTX.get(verify)
        if ctx is None:
            # honours SSL_CERT_FILE / SSL_CERT_DIR, as sites with their own CA expect
            ctx = ssl.create_default_context()
            if not verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            _CTX[verify] = ctx
        return ctx


# --------------------------------------------------------------------------- cancellation
class _Watchdog:
    """Shuts down the sockets of readers whose transfer is cancelled.

    A thread blocked in recv() does not look at the cancel Event; shutting its socket down
    wakes it at once, so a cancelled staging phase ends within a fraction of a second even
    while a server is slow to answer.
    """

    PERIOD = 0.05

    def __init__(self) -> None:
        self._readers: weakref.WeakSet[HTTPReader] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, reader: HTTPReader) -> None:
        with self._lock:
            self._readers.add(reader)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fluxlite-http-watch",
                                                daemon=True)
                self._thread.start()

    def discard(self, reader: HTTPReader) -> None:
        with self._lock:
            self._readers.discard(reader)

    def _run(self) -> None:
        while True:
            time.sleep(self.PERIOD)
            with self._lock:
                readers = list(self._readers)
                if not readers:
                    self._thread = None  # started again by the next reader
                    return
            for r in readers:
                if r.cancel.is_set():
                    r.interrupt()


_WATCHDOG = _Watchdog()


# --------------------------------------------------------------------------- connections
def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _connection(scheme: str, host: str, port: int | None, tls_verify: bool,
                timeout: float) -> tuple[http.client.HTTPConnection, bool]:
    """A connection to the server, through the environment's proxy when one applies.

    Returns the connection and whether requests must carry the absolute URL (plain http
    through a proxy).
    """
    proxy = None
    if not _is_loopback(host):
        proxy = getproxies().get(scheme)
        if proxy and proxy_bypass(host):
            proxy = None
    if scheme == "https":
        ctx = _context(tls_verify)
        if proxy:
            p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                p.hostname or "", p.port or 80, timeout=timeout, context=ctx)
            conn.set_tunnel(host, port or 443)
            return conn, False
        return http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx), False
    if proxy:
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return http.client.HTTPConnection(p.hostname or "", p.port or 80, timeout=timeout), True
    return http.client.HTTPConnection(host, port, timeout=timeout), False


class HTTPReader:
    """The body of one GET, with resume on a dropped connection."""

    def __init__(self, url: str, tls_verify: bool = True, timeout: float = 60.0,
                 cancel: threading.Event | None = None, min_rate: float = 0.0,
                 rate_window: float = 0.0) -> None:
        self.url = url
        self.min_rate = min_rate
        self.rate_window = rate_window
        self._rate = RateCheck(min_rate, rate_window) if min_rate > 0 and rate_window > 0 \
            else None
        self._decoder: Any = None  # zlib decompressor of a gzip or deflate body
        self._wire = 0  # bytes received, before any decoding
        self._buffered: int | None = None  # bytes held in the response's buffer
        self.tls_verify = tls_verify
        self.timeout = timeout
        self.cancel = cancel or threading.Event()
        self.size: int | None = None
        self.pos = 0
        self.resumes = 0
        self._conn: http.client.HTTPConnection | None = None
        # kept apart from the connection: http.client hands a closing connection's socket
        # to the response and forgets it, but a blocked read must still be interruptible
        self._sock: socket.socket | None = None
        self._resp: http.client.HTTPResponse | None = None
        self._final_url = url
        self._validator: str | None = None
        self._ranges = False
        self._interrupted = False
        self._origin = _origin(url)
        if cancel is not None:
            _WATCHDOG.add(self)
        try:
            self._open(0)
        except BaseException:
            self.close()
            raise

    # -- requests ------------------------------------------------------------------------
    def _open(self, start: int) -> None:
        url = self._final_url
        for _hop in range(MAX_REDIRECTS + 1):
            resp = self._get(url, start)
            if resp.status in _REDIRECTS:
                loc = resp.getheader("Location")
                self._drop()
                if not loc:
                    raise HTTPError(f"{redact(url)}: HTTP {resp.status} without a location",
                                    resp.status, permanent=True)
                nxt = urljoin(url, loc)
                if urlsplit(nxt).scheme not in ("http", "https"):
                    raise HTTPError(f"{redact(url)}: redirected to an unsupported URL "
                                    f"{redact(nxt)}", resp.status, permanent=True)
                logger.debug("%s: redirected to %s", redact(url), redact(nxt))
                url = nxt
                continue
            self._check(resp, url, start)
            self._final_url = url
            return
        raise HTTPError(f"{redact(self.url)}: more than {MAX_REDIRECTS} redirects",
                        permanent=True)

    def _get(self, url: str, start: int) -> http.client.HTTPResponse:
        if self.cancel.is_set():
            raise Cancelled()
        # the userinfo is read as redaction reads it: a password may hold '#', '/' or '?'
        userinfo, bare = split_userinfo(url)
        parts = urlsplit(bare)
        host = parts.hostname
        if not host:
            raise HTTPError(f"{redact(url)}: no host in the URL", permanent=True)
        try:
            port = parts.port
        except ValueError as err:
            raise HTTPError(f"{redact(url)}: {err}", permanent=True) from err
        conn, absolute = _connection(parts.scheme, host, port, self.tls_verify, self.timeout)
        headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
        if userinfo is not None and _origin(url) == self._origin:
            # credentials go only to the origin they were written for, not to a redirect
            user, _, password = userinfo.partition(":")
            cred = f"{unquote(user)}:{unquote(password)}"
            headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
        if start:
            headers["Range"] = f"bytes={start}-"
            if self._validator:
                headers["If-Range"] = self._validator
        if absolute:
            target = bare.split("#", 1)[0]
        else:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._conn = conn
        self._interrupted = False
        try:
            conn.connect()
            self._sock = conn.sock
            if self.cancel.is_set():
                raise Cancelled()
            conn.request("GET", target, headers=headers)
            resp = conn.getresponse()
        except Cancelled:
            raise
        except ssl.SSLCertVerificationError as err:
            raise HTTPError(f"{redact(url)}: certificate verification failed: "
                            f"{err.verify_message or err} (set tls_verify to false on this "
                            f"URL to accept it)", permanent=True) from err
        except TimeoutError as err:
            self._raise_if_cancelled()
            raise HTTPError(f"{redact(url)}: no response within {self.timeout:g} s") from err
        except (OSError, http.client.HTTPException) as err:
            self._raise_if_cancelled()
            raise HTTPError(f"{redact(url)}: {_describe(err)}") from err
        self._resp = resp
        self._buffered = None
        return resp

    def _check(self, resp: http.client.HTTPResponse, url: str, start: int) -> None:
        status = resp.status
        if start and status == 206:
            crange = resp.getheader("Content-Range", "")
            if not crange.startswith(f"bytes {start}-"):
                raise HTTPError(f"{redact(url)}: resume answered with range {crange!r}, "
                                f"asked for bytes {start}-")
            return
        if start and status == 200:
            # the server ignored the range (or the file changed): the bytes already
            # hashed cannot be reused, so the attempt starts over
            raise HTTPError(f"{redact(url)}: the server cannot resume at byte {start}")
        if status in (200, 206):
            self._content_encoding(resp, url, start)
        if status == 200:
            if self._decoder is not None:
                pass  # the length is the encoded one; the decoded size is not known
            elif resp.getheader("Transfer-Encoding", "").lower() in ("", "identity"):
                length = resp.getheader("Content-Length")
                if length is not None:
                    try:
                        self.size = int(length)
                    except ValueError as err:
                        raise HTTPError(f"{redact(url)}: bad Content-Length {length!r}"
                                        ) from err
            # byte ranges of an encoded body cannot be spliced onto decoded bytes
            self._ranges = (self._decoder is None
                            and "bytes" in resp.getheader("Accept-Ranges", "").lower())
            self._validator = resp.getheader("ETag") or resp.getheader("Last-Modified")
            if self._validator and self._validator.startswith("W/"):
                self._validator = None  # a weak validator cannot guard a byte range
            return
        reason = f"HTTP {status} {resp.reason}".rstrip()
        if start:
            # the body was there a moment ago: shorter than announced, or changed since
            raise HTTPError(f"{redact(url)}: resuming at byte {start} answered {reason}")
        permanent = 400 <= status < 500 and status not in _TRANSIENT_4XX
        raise HTTPError(f"{redact(url)}: {reason}", status, permanent=permanent)

    def _content_encoding(self, resp: http.client.HTTPResponse, url: str, start: int) -> None:
        """Identity was asked for; a gzip or deflate body is decoded, anything else refused.
        The bytes stored are never the encoded ones."""
        enc = ",".join(resp.headers.get_all("Content-Encoding") or []).strip().lower()
        codings = [c.strip() for c in enc.split(",") if c.strip() not in ("", "identity")]
        if not codings:
            return
        if len(codings) > 1 or codings[0] not in ("gzip", "x-gzip", "deflate"):
            raise HTTPError(f"{redact(url)}: the server sent the body with content encoding "
                            f"'{enc}', which fluxlite does not decode", permanent=True)
        if start:
            raise HTTPError(f"{redact(url)}: the server cannot resume at byte {start} "
                            "without encoding")
        self._decoder = _Decoder(codings[0])

    # -- the body ------------------------------------------------------------------------
    def readinto(self, buf: bytearray | memoryview) -> int:
        """Bytes of the body (decoded), as soon as some arrive: never more than one receive
        from the socket per call, so that the throughput is watched as it happens."""
        if self._decoder is None:
            return self._read_wire(buf)
        while True:
            n = self._decoder.take(buf)
            if n:
                return n
            if self._decoder.eof:
                return 0
            raw = bytearray(min(len(buf), CHUNK_IN)) if len(buf) else bytearray(0)
            got = self._read_wire(raw)
            if got == 0:
                if not self._decoder.finish():
                    raise HTTPError(f"{redact(self.url)}: the {self._decoder.coding} body "
                                    f"is cut short after {self._wire} bytes")
                continue
            try:
                self._decoder.feed(memoryview(raw)[:got])
            except zlib.error as err:
                raise HTTPError(f"{redact(self.url)}: the {self._decoder.coding} body is "
                                f"corrupt: {err}") from err

    def _read_wire(self, buf: bytearray | memoryview) -> int:
        while True:
            resp = self._resp
            if self.cancel.is_set() or resp is None:
                raise Cancelled()
            try:
                n, self._buffered = _read_some(resp, buf, self._buffered)
            except TimeoutError as err:
                self._raise_if_cancelled()
                raise HTTPError(f"{redact(self.url)}: no data for {self.timeout:g} s after "
                                f"{self._wire} bytes") from err
            except (OSError, http.client.HTTPException) as err:
                self._raise_if_cancelled()
                self._resume(_describe(err))
                continue
            if n == 0 and len(buf) and resp.length:
                # http.client returns 0 instead of raising when the body ends early
                self._raise_if_cancelled()
                self._resume(f"connection closed {resp.length} bytes before the end")
                continue
            self.pos += n
            self._wire += n
            if self._rate is not None:
                slow = self._rate.update(self._wire)
                if slow is not None:
                    raise HTTPError(f"{redact(self.url)}: too slow: {slow}")
            return n

    def _resume(self, why: str) -> None:
        if not self._ranges or self.resumes >= MAX_RESUMES:
            detail = "" if self._ranges else " (the server does not offer byte ranges)"
            raise HTTPError(f"{redact(self.url)}: {why} after {self._wire} bytes{detail}")
        self.resumes += 1
        logger.info("%s: %s after %d bytes; resuming", redact(self.url), why, self.pos)
        self._drop()
        self._open(self.pos)

    def _raise_if_cancelled(self) -> None:
        if self.cancel.is_set() or self._interrupted:
            raise Cancelled()

    def interrupt(self) -> None:
        """Wake a thread blocked on this reader's socket (called by the watchdog)."""
        self._interrupted = True
        sock = self._sock
        if sock is None and self._conn is not None:
            sock = self._conn.sock  # still connecting
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _drop(self) -> None:
        resp, conn = self._resp, self._conn
        self._resp = self._conn = self._sock = None
        if resp is not None:
            resp.close()
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close the connection and stop watching the transfer."""
        _WATCHDOG.discard(self)
        self._drop()


def _origin(url: str) -> tuple[str, str, int | None]:
    p = urlsplit(split_userinfo(url)[1])
    try:
        port = p.port
    except ValueError:
        port = None
    return p.scheme, (p.hostname or "").lower(), port


def _describe(err: BaseException) -> str:
    if isinstance(err, http.client.IncompleteRead):
        if err.expected is None:  # a chunked body: how much is missing is not known
            return "connection closed before the end of the chunked body"
        return f"connection closed with {err.expected} bytes missing"
    if isinstance(err, http.client.RemoteDisconnected):
        return "connection closed by the server"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower() if err.strerror[:1].isupper() else err.strerror
    return str(err) or type(err).__name__


class HTTPBackend(Backend):
    """http:// and https:// sources (read only)."""

    def open_read(self, url: str, *, tls_verify: bool = True, timeout: float = 60.0,
                  cancel: threading.Event | None = None, min_rate: float = 0.0,
                  rate_window: float = 0.0) -> HTTPReader:
        """Open an HTTP(S) source: a GET that resumes with Range after a dropped connection."""
        return HTTPReader(url, tls_verify, timeout, cancel, min_rate, rate_window)


CHUNK_IN = 256 * 1024  # encoded bytes read at a time


def _read_some(resp: http.client.HTTPResponse, buf: bytearray | memoryview,
               buffered: int | None) -> tuple[int, int | None]:
    """At most one receive's worth of the body into buf (0 at its end); returns it and how
    many bytes are left in the response's buffer (None: not known).

    http.client's own readinto keeps receiving until the buffer is full, which a server
    sending a byte at a time can make last forever without any timeout firing. And a
    BufferedReader's readinto1 into a large buffer receives once more even when it already
    holds bytes, so what it holds is taken first (peek never receives more than once).
    """
    if not len(buf):
        return 0, buffered
    if resp.chunked or resp.fp is None:
        data = resp.read1(len(buf))
        buf[:len(data)] = data
        return len(data), None
    want = len(buf) if resp.length is None else min(len(buf), resp.length)
    if want == 0:
        return 0, buffered
    view = memoryview(buf)
    fp = resp.fp
    if buffered == 0 and want > io.DEFAULT_BUFFER_SIZE:
        n = fp.readinto1(view[:want])  # nothing held: one receive straight into buf
        left: int | None = 0
    else:
        avail = len(fp.peek(1))
        n = fp.readinto1(view[:min(want, avail)]) if avail else 0
        left = avail - n
    if resp.length is not None:
        resp.length -= n
    return n, left




class _Decoder:
    """A gzip or deflate body decoded as it arrives (zlib, from the standard library)."""

    def __init__(self, coding: str) -> None:
        self.coding = "gzip" if coding in ("gzip", "x-gzip") else "deflate"
        # deflate is sent with a zlib header by most servers, raw by some: the first bytes
        # decide
        self._z: Any = zlib.decompressobj(16 + zlib.MAX_WBITS) if self.coding == "gzip" \
            else None
        self._pending = b""
        self._out = b""
        self.eof = False

    def feed(self, data: memoryview) -> None:
        if self._z is None:
            first = bytes(data[:2])
            raw = len(first) == 2 and (first[0] & 0x0F != 8 or (first[0] << 8 | first[1]) % 31)
            self._z = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        self._pending += bytes(data)

    def take(self, buf: bytearray | memoryview) -> int:
        """Decoded bytes into buf, at most its length."""
        if not self._out and self._pending and self._z is not None and not self._z.eof:
            self._out = self._z.decompress(self._pending, max(len(buf), 1))
            self._pending = self._z.unconsumed_tail
            if self._z.eof:
                self.eof = not self._out
        n = min(len(buf), len(self._out))
        if n:
            buf[:n] = self._out[:n]
            self._out = self._out[n:]
        elif self._z is not None and self._z.eof:
            self.eof = True
        return n

    def finish(self) -> bool:
        """The wire has ended: True when the encoded body was complete."""
        if self._z is None:
            self.eof = True
            return True  # an empty body
        if not self._z.eof and self._pending:
            return False
        self.eof = True
        return self._z.eof
