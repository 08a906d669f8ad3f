"""The pool's job, submitted before the ``flux`` package is imported.

Importing ``flux`` costs the coordinator 60-80 ms of CPU (see :mod:`fluxlite.flux.lean`),
and the pool's job needs about as long to start (Flux's validation of it, its job shells,
the workers' own start). :class:`Launch` does what the submission needs over flux-core's C
API alone (the ``_flux._core`` module, 2 ms to import): a handle, the instance's resources,
the pool's service, the pool's secret in the KVS, the jobspec, and the submission, which it
does not wait for. The job starts while the coordinator imports the rest;
:class:`~fluxlite.cluster.pool.coordinator.PoolExecutor` then takes the handle over (a
``flux.Flux`` around the same connection, where the service stays registered) and follows
the job by its id.

Only synchronous calls are made here (no callbacks: those are the ``flux`` package's once
it is imported). Until the handle is taken over, :meth:`Launch.close` undoes what was done:
the job cancelled, the secret removed, the connection closed (with it the service).
"""

from __future__ import annotations

import errno
import os
import secrets
import time
from collections.abc import Mapping

import orjson

from fluxlite.errors import FluxliteError, FluxUnavailable
from fluxlite.flux import jobspec, lean
from fluxlite.cluster.pool import messages as m
from fluxlite.cluster.pool import worker

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

JOB_NAME = "fluxlite-pool"
URGENCY = 16  # FLUX_JOB_URGENCY_DEFAULT


class PoolStartError(FluxliteError):
    """The pool's workers did not all start."""


class Launch:
    """The pool's job on its way (module docstring): ``workers_per_node`` workers on every
    node that is up, each given its share of its node's cores and GPUs."""

    def __init__(self, uri: str | None, workers_per_node: int, stdio_bytes: int,
                 env: Mapping[str, str] | None = None) -> None:
        self.born = time.monotonic()
        uri = uri or os.environ.get("FLUX_URI")
        if not uri:
            raise FluxUnavailable("the pool executor needs a Flux instance (FLUX_URI is unset)")
        self.uri = uri
        try:
            self.h = lean.Handle(uri, callbacks=False)
        except OSError as err:
            raise FluxUnavailable(f"cannot connect to Flux at {uri}: "
                                  f"{err.strerror or err}") from err
        self.handle = self.h.handle
        self.adopted = False
        self.jobid: int | None = None
        self._submit: lean.Future | None = None
        self._secret_out = False
        self.submitted_at = 0.0
        try:
            self.rank = self.h.get_rank()
            self.wpn = max(1, workers_per_node)
            try:
                nodes = up_nodes(orjson.loads(self._resources()))
            except (OSError, ValueError) as err:
                raise FluxUnavailable(f"cannot connect to Flux at {uri}: "
                                      f"{getattr(err, 'strerror', None) or err}") from err
            # each worker's share of its node, as Flux reports the node's cores and GPUs
            self.share = {r: (max(1, c // self.wpn), g // self.wpn)
                          for r, (c, g) in nodes.items()}
            self.ranks = sorted(self.share)
            self.nnodes = len(self.ranks)
            # the job shell sets each worker's own FLUX_URI
            self.env = jobspec.environment(os.environ if env is None else env,
                                           drop=jobspec.JOB)
            self.service = f"fluxlite-pool-{os.getpid()}-{secrets.token_hex(3)}"
            self.secret = secrets.token_bytes(32)
            # the coordinator's own namespace: its job's when it runs as one (where its
            # user may write even in an instance it does not own), else the instance's
            self.kvs_ns = os.environ.get("FLUX_KVS_NAMESPACE") or "primary"
            try:
                self.h.service_register(self.service).get()
            except OSError as err:
                raise FluxliteError(f"cannot register the pool's service {self.service}: "
                                    f"{err.strerror or err}") from err
            self._put_secret()
            self._start(stdio_bytes)
        except BaseException:
            self.close()
            raise

    # -- the steps ----------------------------------------------------------------------
    def _resources(self) -> str:
        """The scheduler's view of the resources, as ``flux.resource.resource_list`` asks
        for it (its topic, ``FLUX_RESOURCE_LIST_RPC`` when set, then the older one)."""
        topic = os.environ.get("FLUX_RESOURCE_LIST_RPC") or "resource.sched-status"
        try:
            return self.h.rpc(topic, nodeid=0).get_str() or "{}"
        except OSError as err:
            if err.errno != errno.ENOSYS:
                raise
            return self.h.rpc("sched.resource-status", nodeid=0).get_str() or "{}"

    def _kvs(self, value: str | None) -> None:
        """The secret's key set to ``value`` (JSON-encoded, as ``flux.kvs.put`` does), or
        removed (None), and committed."""
        ffi, lib = lean.ffi, lean.lib
        txn = lib.flux_kvs_txn_create()
        if txn == ffi.NULL:
            raise lean.error("kvs transaction")
        try:
            key = m.secret_key(self.service).encode()
            rc = (lib.flux_kvs_txn_unlink(txn, 0, key) if value is None else
                  lib.flux_kvs_txn_put(txn, 0, key, orjson.dumps(value)))
            if rc < 0:
                raise lean.error("kvs put")
            lean.Future(self.h, lib.flux_kvs_commit(self.handle, self.kvs_ns.encode(), 0,
                                                    txn), "kvs commit").get()
        finally:
            lib.flux_kvs_txn_destroy(txn)

    def _put_secret(self) -> None:
        """The secret where only the workers look for it while they start (the KVS, which
        no task reads before it is gone: tasks start after every hello)."""
        try:
            self._kvs(self.secret.hex())
        except OSError as err:
            raise PoolStartError(f"cannot give the pool's workers their secret: "
                                 f"{err.strerror or err}") from err
        self._secret_out = True

    def drop_secret(self) -> None:
        """The secret out of the KVS (OSError when it cannot be)."""
        if self._secret_out:
            self._kvs(None)
            self._secret_out = False

    def _start(self, stdio_bytes: int) -> None:
        n = self.nnodes * self.wpn
        argv = worker.command(self.env.get("FLUXLITE_POOL_PYTHON"), [
            self.service, str(self.rank), str(stdio_bytes), self.kvs_ns])
        # one core each in Flux's eyes: the worker's own slots are its node's cores, and
        # Flux-job tasks of the same cluster can still be placed beside it; one worker lost
        # is not the pool (no exit timeout), and the worker binds nothing to a core
        js = jobspec.tasks_document(argv, count=n, nodes=self.nnodes, cwd=os.getcwd(),
                                    env=self.env, name=JOB_NAME,
                                    shell_options={"exit-timeout": "none",
                                                   "cpu-affinity": "off"})
        self.submitted_at = time.monotonic()
        self._submit = lean.Future(self.h, lean.lib.flux_job_submit(
            self.handle, orjson.dumps(js), URGENCY, 0), "job submit")

    def wait_submitted(self) -> int:
        """The job's id, once Flux has accepted it; PoolStartError when it refused it."""
        if self.jobid is None:
            assert self._submit is not None
            jid = lean.ffi.new("flux_jobid_t [1]")
            if lean.lib.flux_job_submit_get_id(self._submit.future, jid) < 0:
                err = lean.error("job submit", self._submit.future)
                raise PoolStartError(f"cannot start the pool's workers "
                                     f"({self.nnodes * self.wpn} on {self.nnodes} node(s)): "
                                     f"{err.strerror or err}")
            self.jobid = int(jid[0])
            self._submit = None
        return self.jobid

    # -- the hand-over, or the end ---------------------------------------------------------
    def adopt(self) -> Any:
        """A ``flux.Flux`` on the same connection (its service registered, its requests
        queued until its reactor runs); from now on the handle, the job and the secret are
        the caller's."""
        from fluxlite.flux import import_flux

        flux = import_flux()
        h = flux.Flux(handle=self.handle)
        self.adopted = True
        return h

    def cancel(self) -> None:
        """The job cancelled, once Flux has it (what was submitted never outlives the
        cluster), and the secret removed; on the handle whoever holds it now."""
        if self.handle is None:
            return
        lib = lean.lib
        if self._submit is not None or self.jobid is not None:
            try:
                jid: int | None = self.wait_submitted()
            except (OSError, FluxliteError):
                jid = None  # refused: nothing runs
            if jid is not None:
                try:
                    lean.Future(self.h, lib.flux_job_cancel(self.handle, jid,
                                                          b"fluxlite cluster done"),
                                "job cancel").get()
                except OSError:
                    pass  # it ended already
        try:
            self.drop_secret()
        except OSError:
            pass  # the key is a random name, and the job that read it is gone

    def close(self) -> None:
        """Undo what was done, unless the handle was taken over: :meth:`cancel`, then the
        connection closed (with it the service)."""
        if self.adopted or self.handle is None:
            return
        try:
            self.cancel()
        finally:
            self._submit = None
            lean.lib.flux_close(self.handle)
            self.handle = None


def up_nodes(status: dict[str, Any]) -> dict[int, tuple[int, int]]:
    """Each rank that is up -> its cores and GPUs, from ``resource.sched-status``'s answer
    (Rv1 sets ``all`` and ``down``: up is what of all is not down; every node of all when
    none is up, as a job asked for them waits until they are)."""
    have = _by_rank(status.get("all"))
    down = _by_rank(status.get("down"))
    up: dict[int, tuple[int, int]] = {}
    for rank, (cores, gpus) in have.items():
        dc, dg = down.get(rank, (set(), set()))
        left = (cores - dc, gpus - dg)
        if left[0] or left[1]:
            up[rank] = (len(left[0]), len(left[1]))
    return up or {r: (len(c), len(g)) for r, (c, g) in have.items()}


def _by_rank(rset: Any) -> dict[int, tuple[set[int], set[int]]]:
    """An Rv1 set's ``R_lite`` as rank -> (its cores, its GPUs)."""
    out: dict[int, tuple[set[int], set[int]]] = {}
    if not isinstance(rset, dict):
        return out
    for entry in (rset.get("execution") or {}).get("R_lite") or []:
        children = entry.get("children") or {}
        cores = idset(children.get("core", ""))
        gpus = idset(children.get("gpu", ""))
        for rank in idset(entry.get("rank", "")):
            c, g = out.setdefault(rank, (set(), set()))
            c.update(cores)
            g.update(gpus)
    return out


def idset(text: str) -> set[int]:
    """The ids of an RFC 22 idset string ("0-3,7"; brackets allowed), by flux-core's own
    decoder; ValueError for one it refuses."""
    from _flux._idset import ffi, lib  # type: ignore[import-not-found]

    if not text:
        return set()
    ids = lib.idset_decode(str(text).encode())
    if ids == ffi.NULL:
        raise ValueError(f"not an idset: {text!r}")
    try:
        out = set()
        i = lib.idset_first(ids)
        while i != lib.IDSET_INVALID_ID:
            out.add(int(i))
            i = lib.idset_next(ids, i)
        return out
    finally:
        lib.idset_destroy(ids)
