"""A real HTTP server on 127.0.0.1 with fault injection, for staging tests and benchmarks.

Each path is a Route holding its bytes (or a file served with sendfile) and a queue of
faults, one consumed per request; when the queue is empty the route answers normally.
Persistent behaviour (a status for every request, a permanent redirect, no byte ranges)
is set on the route. Every request is logged, and the total number of requests is
bounded so that a runaway retry loop fails a test instead of hanging it.

Faults:
  "503", "500", "404", ...   answer with that status
  "drop:N"                   announce the full length, send N bytes, close the connection
  "badlen:N"                 announce N more bytes than the body has, send the body, close
  "corrupt"                  the right length with one byte changed
  "slow:S"                   wait S seconds before answering
  "stall:N:S"                send N bytes, then wait S seconds, then close
  "redirect:/path"           302 to another path of this server
  "lie:N[:S]"                announce a Content-Length of N bytes, send the body, (wait S
                             seconds,) close
  "gzip", "deflate"          the body compressed, with that Content-Encoding
  "encoding:NAME"            the plain body labelled with Content-Encoding NAME
  "trickle:N:S"              send N bytes one at a time, S seconds apart, then the rest
  "chunked-drop:N"           a chunked body: N bytes, then the connection closes
"""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import threading
import time
import zlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


@dataclass
class Route:
    data: bytes = b""
    file: str | None = None
    faults: list[str] = field(default_factory=list)
    status: int | None = None  # every request answered with this status
    redirect: str | None = None  # every request redirected there
    ranges: bool = True
    etag: str | None = None

    @property
    def size(self) -> int:
        return os.path.getsize(self.file) if self.file else len(self.data)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # the faults are injected on purpose: a client giving up on a dropped or stalled
        # response is expected, not worth a traceback in the test output
        pass


class FaultServer:
    def __init__(self, max_requests: int = 20000) -> None:
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, str | None, str]] = []  # (path, Range header, outcome)
        self.max_requests = max_requests
        self._lock = threading.Lock()
        server = self

        class Handler(_Handler):
            owner = server

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FaultServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add(self, path: str, data: bytes = b"", faults: list[str] | tuple[str, ...] = (),
            **kw: Any) -> str:
        """Serve data at path; return its URL."""
        route = Route(data=data, faults=list(faults), **kw)
        if route.etag is None and route.file is None:
            route.etag = '"' + hashlib.sha1(data).hexdigest()[:16] + '"'
        with self._lock:
            self.routes[path] = route
        return self.base + path

    def hits(self, path: str) -> int:
        with self._lock:
            return sum(1 for p, _r, _o in self.log if p == path)

    def outcomes(self, path: str) -> list[str]:
        with self._lock:
            return [o for p, _r, o in self.log if p == path]

    def ranges(self, path: str) -> list[str | None]:
        with self._lock:
            return [r for p, r, _o in self.log if p == path]

    def _next(self, path: str, range_header: str | None) -> tuple[Route | None, str | None]:
        with self._lock:
            if len(self.log) >= self.max_requests:
                self.log.append((path, range_header, "over budget"))
                return None, "503"
            route = self.routes.get(path)
            fault = route.faults.pop(0) if route is not None and route.faults else None
            self.log.append((path, range_header, fault or "ok"))
            return route, fault


class _Handler(BaseHTTPRequestHandler):
    owner: FaultServer
    timeout = 30  # a client that stops talking does not keep a thread forever

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = unquote(urlsplit(self.path).path)
        rng = self.headers.get("Range")
        route, fault = self.owner._next(path, rng)
        if fault and fault.startswith("slow:"):
            time.sleep(float(fault.split(":")[1]))
            fault = None
        if route is None and fault is None:
            return self._status(404)
        if fault and fault.isdigit():
            return self._status(int(fault))
        assert route is not None
        if route.status:
            return self._status(route.status)
        if route.redirect or (fault and fault.startswith("redirect:")):
            target = route.redirect or fault.split(":", 1)[1]  # type: ignore[union-attr]
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if fault and fault.startswith("chunked-drop:"):
            return self._chunked_drop(route, int(fault.split(":")[1]))
        if fault in ("gzip", "deflate") or (fault and fault.startswith("encoding:")):
            return self._encoded(route, fault)
        size = route.size
        start = 0
        if rng and route.ranges and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[len("bytes="):-1])
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        length = size - start
        announced = length
        if fault and fault.startswith("badlen:"):
            announced += int(fault.split(":")[1])
        if fault and fault.startswith("lie:"):
            announced = int(fault.split(":")[1])
        self.send_header("Content-Length", str(announced))
        self.send_header("Content-Type", "application/octet-stream")
        if route.ranges:
            self.send_header("Accept-Ranges", "bytes")
        if route.etag:
            self.send_header("ETag", route.etag)
        self.end_headers()
        send = length
        if fault and fault.startswith(("drop:", "stall:")):
            send = min(length, int(fault.split(":")[1]))
        if fault and fault.startswith("trickle:"):
            _, n, secs = fault.split(":")
            body = route.data[start:start + send]
            for i in range(min(int(n), len(body))):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                time.sleep(float(secs))
            self.wfile.write(body[int(n):])
        elif route.file:
            with open(route.file, "rb") as fh:
                self.connection.sendfile(fh, start, send)
        else:
            body = route.data[start:start + send]
            if fault == "corrupt" and body:
                mid = len(body) // 2
                body = body[:mid] + bytes([body[mid] ^ 0xFF]) + body[mid + 1:]
            self.wfile.write(body)
        if fault and fault.startswith("stall:"):
            time.sleep(float(fault.split(":")[2]))
        if fault and fault.startswith("lie:") and fault.count(":") == 2:
            time.sleep(float(fault.split(":")[2]))
        if fault and fault.startswith(("drop:", "badlen:", "stall:", "lie:")):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return None

    def _encoded(self, route: Route, fault: str) -> None:
        if fault == "gzip":
            body, name = gzip.compress(route.data), "gzip"
        elif fault == "deflate":
            body, name = zlib.compress(route.data), "deflate"
        else:
            body, name = route.data, fault.split(":", 1)[1]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Encoding", name)
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body)

    def _chunked_drop(self, route: Route, n: int) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        part = route.data[:n]
        self.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _status(self, code: int) -> None:
        body = f"{code}\n".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
