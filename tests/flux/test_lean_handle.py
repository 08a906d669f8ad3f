"""fluxlite.flux.lean, the pool worker's own Flux handle over the C module, against a real
broker: what it does, and that each failure is the OSError the ``flux`` package would raise.

It cannot share a process with the ``flux`` package (the C module's callbacks are one per
process), so each check runs in a fresh interpreter inside the test instance.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

from tests.flux.conftest import FluxInstance

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_SCRIPT = r"""
import errno, os, signal, sys, time
from fluxlite.flux import lean

h = lean.Handle()
out = []
say = out.append
say(f"rank {h.get_rank()}")
say(f"kvs {h.kvs_get('lean.test.key')!r}")
try:
    h.kvs_get("lean.test.missing")
except OSError as err:
    say(f"missing {err.errno}")

# a service of its own, asked over the broker: the handler sees the payload and the
# sender, and its answer comes back to the continuation
h.service_register("leantest").get()
seen = []

def on_echo(hh, w, msg, arg):
    seen.append((msg.payload_str, msg.userid == os.getuid()))
    hh.respond(msg, '{"echo": ' + (msg.payload_str or "null") + "}")

mw = h.msg_watcher_create(on_echo, lean.REQUEST, "leantest.echo")
mw.start()
answers = []

def got(f):
    answers.append(f.get_str())
    hh = f.h
    hh.reactor_stop()

h.rpc("leantest.echo", b'{"n": 1}', nodeid=0).then(got)
h.reactor_run()
say(f"echo {seen} {answers}")

# an error answer is an OSError with the C API's errno and text
h.rpc("leantest.nothere", "{}").then(lambda f: answers.append(f) or f.h.reactor_stop())
h.reactor_run()
try:
    answers[-1].get_str()
except OSError as err:
    say(f"nosys {err.errno}")

# a refusal as messages.refuse sends it
def on_refuse(hh, w, msg, arg):
    hh.flux_respond_error(msg.handle, errno.EPROTO, b"bad request")

rw = h.msg_watcher_create(on_refuse, lean.REQUEST, "leantest.refuse")
rw.start()
h.rpc("leantest.refuse", "{}", nodeid=0).then(lambda f: answers.append(f) or f.h.reactor_stop())
h.reactor_run()
try:
    answers[-1].get_str()
except OSError as err:
    say(f"refused {err.errno} {err.strerror}")

# a timer re-armed from its own callback, then stopped; an fd watcher; a signal watcher
ticks = []

def tick(hh, w, revents, arg):
    ticks.append(revents)
    if len(ticks) < 3:
        w.reset(after=0.01)
    else:
        w.stop()
        os.kill(os.getpid(), signal.SIGUSR1)

sigs = []
sw = h.signal_watcher_create(signal.SIGUSR1, lambda hh, w, signum, arg: (
    sigs.append(signum), os.write(wfd, b"x")))
sw.start()
rfd, wfd = os.pipe()
fds = []
fw = h.fd_watcher_create(rfd, lambda hh, w, fd, revents, arg: (
    fds.append(os.read(fd, 1)), hh.reactor_stop()), events=lean.POLLIN)
fw.start()
tw = h.timer_watcher_create(0.01, tick)
tw.start()
h.reactor_run()
say(f"timer {len(ticks)} signal {sigs == [signal.SIGUSR1]} fd {fds}")

# an exception in a callback stops the reactor and is raised by reactor_run
def boom(hh, w, revents, arg):
    raise ValueError("from a callback")

bw = h.timer_watcher_create(0.0, boom)
bw.start()
try:
    h.reactor_run()
except ValueError as err:
    say(f"raised {err}")

# a wait that runs out is a TimeoutError
never = h.msg_watcher_create(lambda *a: None, lean.REQUEST, "leantest.silent")
never.start()
t0 = time.monotonic()
try:
    h.rpc("leantest.silent", "{}", nodeid=0).wait_for(0.2).get()
except TimeoutError:
    say(f"timeout {time.monotonic() - t0 < 5}")
print("\n".join(out))
"""


def _python(fi: FluxInstance, code: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    full = {**fi.env, "PYTHONPATH": _ROOT, **(env or {})}
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, timeout=60)


def test_the_lean_handle_against_a_broker(flux_instance: FluxInstance) -> None:
    fi = flux_instance
    fi.flux("kvs", "put", "lean.test.key=\"abc\"")
    p = _python(fi, _SCRIPT)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines == [
        "rank 0",
        "kvs 'abc'",
        f"missing {errno.ENOENT}",
        "echo [('{\"n\": 1}', True)] ['{\"echo\": {\"n\": 1}}']",
        f"nosys {errno.ENOSYS}",
        f"refused {errno.EPROTO} bad request",
        "timer 3 signal True fd [b'x']",
        "raised from a callback",
        "timeout True",
    ], p.stdout + p.stderr


def test_the_lean_handle_says_why_it_cannot_connect(flux_instance: FluxInstance,
                                                   tmp_path: object) -> None:
    code = ("from fluxlite.flux import lean\n"
            "try:\n    lean.Handle()\nexcept OSError as err:\n"
            "    print('oserror', err.errno is not None)\n")
    p = _python(flux_instance, code, {"FLUX_URI": f"local://{tmp_path}/no-such-socket"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "oserror True"


def test_the_lean_handle_refuses_a_process_with_the_flux_package(
        flux_instance: FluxInstance) -> None:
    code = ("import flux\nfrom fluxlite.errors import FluxUnavailable\n"
            "from fluxlite.flux import lean\n"
            "try:\n    lean.Handle()\nexcept FluxUnavailable as err:\n    print(err)\n")
    p = _python(flux_instance, code)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == ("the lean Flux handle cannot share a process with the flux "
                                "package")
