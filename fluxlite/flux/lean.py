"""A lean handle on a Flux broker, straight over flux-core's C API (the cffi module
``_flux._core`` that flux-python is built on), for a pool worker and its guard.

Importing the ``flux`` package costs a process about 80 ms of CPU (it pulls in YAML,
argparse, tomllib, a date parser...), and a pool pays it on every node before the first
task can start there; the C module alone costs 2 ms. This handle covers only what the
worker and its guard use (connect, rank, a KVS value, a service, request handlers, fd,
timer and signal watchers, RPCs with continuations, answers, the reactor) with the
``flux`` package's names and semantics: an ``OSError`` (errno and Flux's error text) for a
failed call, an exception raised in a callback stops the reactor and is raised by
:meth:`Handle.reactor_run`.

Its callbacks are the C module's ``extern "Python"`` entry points, which are one per
process: a process that uses this handle must not import the ``flux`` package too (it
would take them over). :func:`bind` refuses when ``flux`` is already there.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable

import orjson

from fluxlite.errors import FluxUnavailable

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

ffi: Any = None
lib: Any = None
REQUEST = 1  # FLUX_MSGTYPE_REQUEST and FLUX_POLLIN, as the C module says once loaded
POLLIN = 1
_bound = False  # the callbacks taken (bind)


def load() -> None:
    """Load the C module, without its callbacks (a :class:`Handle` of synchronous calls
    only: the pool's launch, in a process that imports the ``flux`` package next);
    FluxUnavailable when it is not there."""
    global ffi, lib, REQUEST, POLLIN
    if lib is not None:
        return
    try:
        from _flux._core import ffi as _ffi, lib as _lib  # type: ignore[import-not-found]
    except ImportError as err:
        from fluxlite.flux import INSTALL_HINT

        raise FluxUnavailable(f"the Flux Python bindings are not importable ({err}): "
                              f"{INSTALL_HINT}") from err
    ffi, lib = _ffi, _lib
    REQUEST, POLLIN = _lib.FLUX_MSGTYPE_REQUEST, _lib.FLUX_POLLIN


def bind() -> None:
    """Load the C module and take its callbacks; FluxUnavailable when it is not there
    or the ``flux`` package already holds the callbacks in this process."""
    global _bound
    if _bound:
        return
    if "flux" in sys.modules:
        raise FluxUnavailable("the lean Flux handle cannot share a process with the flux "
                              "package")
    load()
    ffi.def_extern(name="continuation_callback")(_on_future)
    ffi.def_extern(name="message_handler_wrapper")(_on_message)
    ffi.def_extern(name="fd_handler_wrapper")(_on_fd)
    ffi.def_extern(name="timeout_handler_wrapper")(_on_timer)
    ffi.def_extern(name="signal_handler_wrapper")(_on_signal)
    _bound = True


def error(what: str, future: Any = None) -> OSError:
    """The OSError of a failed call (errno as Flux left it, its error text when a future
    has one)."""
    num = ffi.errno or errno.EIO
    text = None
    if future is not None:
        p = lib.flux_future_error_string(future)
        if p != ffi.NULL:
            text = ffi.string(p).decode("utf-8", "replace")
    return OSError(num, text or f"{what}: {os.strerror(num)}")


def _payload(data: str | bytes | None) -> Any:
    if data is None:
        return ffi.NULL
    return data.encode() if isinstance(data, str) else data


class Handle:
    """An open connection to a broker (FLUX_URI's, or ``uri``)."""

    def __init__(self, uri: str | None = None, callbacks: bool = True) -> None:
        """Without ``callbacks``, only synchronous calls (``get``, ``get_str``) may be made
        on it: the C module's are not taken (:func:`load`), and the ``flux`` package may
        take this connection over later (``flux.Flux(handle=h.handle)``)."""
        if callbacks:
            bind()
        else:
            load()
        self.handle = lib.flux_open(uri.encode() if uri else ffi.NULL, 0)
        if self.handle == ffi.NULL:
            raise error("flux_open")
        self.reactor = lib.flux_get_reactor(self.handle)
        self.pending: set[Future] = set()  # futures whose continuation has not run yet
        self.exception: BaseException | None = None

    def get_rank(self) -> int:
        """The rank of the broker it is connected to."""
        rank = ffi.new("uint32_t [1]")
        if lib.flux_get_rank(self.handle, rank) < 0:
            raise error("flux_get_rank")
        return int(rank[0])

    def kvs_get(self, key: str, namespace: str | None = None) -> Any:
        """A KVS value, JSON-decoded when it is JSON (as ``flux.kvs.get``)."""
        f = Future(self, lib.flux_kvs_lookup(self.handle, namespace.encode() if namespace
                                             else ffi.NULL, 0, key.encode()), "kvs lookup")
        val = ffi.new("char *[1]")
        if lib.flux_kvs_lookup_get(f.future, val) < 0:
            raise error("kvs lookup", f.future)
        if val[0] == ffi.NULL:
            return None
        raw = ffi.string(val[0])
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw.decode("utf-8", "replace")

    def service_register(self, name: str) -> Future:
        """Register service ``name`` with the broker (the future says when it is done)."""
        return Future(self, lib.flux_service_register(self.handle, name.encode()),
                      "service register")

    def rpc(self, topic: str, payload: str | bytes | None = None,
            nodeid: int | None = None) -> Future:
        """A request to ``topic`` (on rank ``nodeid``, or wherever the service is)."""
        node = lib.FLUX_NODEID_ANY if nodeid is None else nodeid
        return Future(self, lib.flux_rpc(self.handle, topic.encode(), _payload(payload),
                                         node, 0), topic)

    def respond(self, msg: Message, payload: str | bytes | None = None) -> None:
        """Answer the request ``msg``."""
        if lib.flux_respond(self.handle, msg.handle, _payload(payload)) < 0:
            raise error("respond")

    def flux_respond_error(self, msg: Any, errnum: int, text: bytes) -> None:
        """The ``flux`` package's name for it (``messages.refuse`` uses either handle)."""
        if lib.flux_respond_error(self.handle, msg, errnum, text) < 0:
            raise error("respond")

    # -- watchers --------------------------------------------------------------------------
    def msg_watcher_create(self, callback: Callable[..., Any], type_mask: int,
                           topic_glob: str) -> MessageWatcher:
        """``callback(h, watcher, msg, None)`` for each request matching ``topic_glob``."""
        return MessageWatcher(self, callback, type_mask, topic_glob)

    def fd_watcher_create(self, fd: int, callback: Callable[..., Any],
                          events: int) -> Watcher:
        """``callback(h, watcher, fd, revents, None)`` when ``fd`` is ready."""
        w = Watcher(self, callback)
        w.handle = lib.flux_fd_watcher_create(self.reactor, fd, events,
                                              lib.fd_handler_wrapper, w.arg)
        return w.created()

    def timer_watcher_create(self, after: float, callback: Callable[..., Any],
                             repeat: float = 0.0) -> TimerWatcher:
        """``callback(h, watcher, revents, None)`` after ``after`` s (every ``repeat``)."""
        w = TimerWatcher(self, callback)
        w.handle = lib.flux_timer_watcher_create(self.reactor, float(after), float(repeat),
                                                 lib.timeout_handler_wrapper, w.arg)
        w.created()
        return w

    def signal_watcher_create(self, signum: int, callback: Callable[..., Any]) -> Watcher:
        """``callback(h, watcher, signum, None)`` when the process gets ``signum``."""
        w = Watcher(self, callback)
        w.handle = lib.flux_signal_watcher_create(self.reactor, signum,
                                                  lib.signal_handler_wrapper, w.arg)
        return w.created()

    # -- the reactor -----------------------------------------------------------------------
    def reactor_run(self) -> int:
        """Run until stopped; the exception a callback raised, else OSError when the
        reactor failed (the broker is gone)."""
        rc = lib.flux_reactor_run(self.reactor, 0)
        if self.exception is not None:
            exc, self.exception = self.exception, None
            raise exc
        if rc < 0:
            raise error("the reactor")
        return int(rc)

    def reactor_stop(self) -> None:
        """Make :meth:`reactor_run` return."""
        lib.flux_reactor_stop(self.reactor)

    def _failed(self, exc: BaseException) -> None:
        if self.exception is None:
            self.exception = exc
        lib.flux_reactor_stop_error(self.reactor)


class Future:
    """A Flux future (an RPC's, or another call's)."""

    def __init__(self, h: Handle, future: Any, what: str) -> None:
        if future == ffi.NULL:
            raise error(what)
        self.h, self.future, self.what = h, future, what
        self.callback: Callable[[Future], Any] | None = None
        self.arg: Any = None

    def __del__(self) -> None:
        if lib is not None and self.future is not None:
            lib.flux_future_destroy(self.future)
            self.future = None

    def then(self, callback: Callable[[Future], Any]) -> Future:
        """``callback(self)`` when the answer comes (the future lives until then)."""
        self.callback = callback
        self.arg = ffi.new_handle(self)
        if lib.flux_future_then(self.future, -1.0, lib.continuation_callback, self.arg) < 0:
            raise error(self.what)
        self.h.pending.add(self)
        return self

    def wait_for(self, timeout: float) -> Future:
        """The answer within ``timeout`` seconds, else TimeoutError."""
        if lib.flux_future_wait_for(self.future, float(timeout)) < 0:
            if ffi.errno == errno.ETIMEDOUT:
                raise TimeoutError(f"{self.what}: no answer in {timeout:g} s")
            raise error(self.what, self.future)
        return self

    def get(self) -> None:
        """Wait for the answer; OSError when it is an error."""
        if lib.flux_future_get(self.future, ffi.NULL) < 0:
            raise error(self.what, self.future)

    def get_str(self) -> str | None:
        """An RPC's answer as text (None without a payload); OSError when it is an error."""
        out = ffi.new("char *[1]")
        if lib.flux_rpc_get(self.future, out) < 0:
            raise error(self.what, self.future)
        return None if out[0] == ffi.NULL else ffi.string(out[0]).decode("utf-8")


class Message:
    """A request, valid during its handler's call."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    @property
    def payload_str(self) -> str | None:
        """The payload as text (None without one)."""
        if not lib.flux_msg_has_payload(self.handle):
            return None
        out = ffi.new("char *[1]")
        if lib.flux_msg_get_string(self.handle, ffi.cast("char **", out)) < 0:
            raise error("message payload")
        return None if out[0] == ffi.NULL else ffi.string(out[0]).decode("utf-8")

    @property
    def userid(self) -> int:
        """The user id of its sender."""
        uid = ffi.new("uint32_t [1]")
        if lib.flux_msg_get_userid(self.handle, uid) < 0:
            raise error("message userid")
        return int(uid[0])


class Watcher:
    """A reactor watcher; ``callback(handle, watcher, ...)`` as the ``flux`` package calls
    it. A subclass names the C API's start, stop and destroy of its kind."""

    START, STOP, DESTROY = "flux_watcher_start", "flux_watcher_stop", "flux_watcher_destroy"

    def __init__(self, h: Handle, callback: Callable[..., Any]) -> None:
        self.h, self.callback = h, callback
        self.arg = ffi.new_handle(self)
        self.handle: Any = ffi.NULL

    def created(self) -> Watcher:
        """Itself, once the C API made it; else the OSError."""
        if self.handle == ffi.NULL:
            raise error("watcher")
        return self

    def start(self) -> None:
        """Watch."""
        getattr(lib, self.START)(self.handle)

    def stop(self) -> None:
        """Stop watching (it may start again)."""
        getattr(lib, self.STOP)(self.handle)

    def __del__(self) -> None:
        if lib is not None and self.handle not in (None, ffi.NULL):
            getattr(lib, self.DESTROY)(self.handle)
            self.handle = None


class TimerWatcher(Watcher):
    """A timer: :meth:`reset` re-arms it."""

    def reset(self, after: float, repeat: float = 0.0) -> None:
        """Re-arm it from now (and start it)."""
        lib.flux_timer_watcher_reset(self.handle, float(after), float(repeat))
        self.start()


class MessageWatcher(Watcher):
    """Requests (``type_mask``) whose topic matches ``topic_glob``; from the instance's
    owner only (the C API's default)."""

    START, STOP = "flux_msg_handler_start", "flux_msg_handler_stop"
    DESTROY = "flux_msg_handler_destroy"

    def __init__(self, h: Handle, callback: Callable[..., Any], type_mask: int,
                 topic_glob: str) -> None:
        super().__init__(h, callback)
        self.topic = ffi.new("char[]", topic_glob.encode())
        match = ffi.new("struct flux_match *", {"typemask": type_mask,
                                                "matchtag": lib.FLUX_MATCHTAG_NONE,
                                                "topic_glob": self.topic})
        self.handle = lib.flux_msg_handler_create(h.handle, match[0],
                                                  lib.message_handler_wrapper, self.arg)
        self.created()


# -- the C module's entry points ------------------------------------------------------------
def _call(h: Handle, fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - raised again by reactor_run
        h._failed(exc)


def _on_future(_future: Any, arg: Any) -> None:
    f: Future = ffi.from_handle(arg)
    f.h.pending.discard(f)
    if f.callback is not None:
        _call(f.h, f.callback, f)


def _on_message(_h: Any, _w: Any, msg: Any, arg: Any) -> None:
    w: MessageWatcher = ffi.from_handle(arg)
    _call(w.h, w.callback, w.h, w, Message(msg), None)


def _on_fd(_r: Any, watcher: Any, revents: int, arg: Any) -> None:
    w: Watcher = ffi.from_handle(arg)
    _call(w.h, w.callback, w.h, w, lib.flux_fd_watcher_get_fd(watcher), revents, None)


def _on_timer(_r: Any, _w: Any, revents: int, arg: Any) -> None:
    w: Watcher = ffi.from_handle(arg)
    _call(w.h, w.callback, w.h, w, revents, None)


def _on_signal(_r: Any, watcher: Any, _revents: int, arg: Any) -> None:
    w: Watcher = ffi.from_handle(arg)
    _call(w.h, w.callback, w.h, w, lib.flux_signal_watcher_get_signum(watcher), None)
