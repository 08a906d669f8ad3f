"""The one jobspec builder, its environment policy, and the one way of opening a handle
(:func:`connect`; :func:`open_instance` for an executor, with the instance's resources).

Every Flux job fluxlite submits is built here: a placed task (``"placement": "flux"`` or
``"nested"``), a cluster's task, a cluster's nested instance and ``fluxlite submit``'s
batch job.

Environment policy: a job gets the environment it is given (the task's, or the
submitter's for a batch job, as ``flux batch`` does), with ``extra`` on top, less what Flux
sets for the job itself and a stale copy would contradict: ``FLUX_URI`` for a cluster's
task (Flux sets the task's own); every ``FLUX_*`` but ``FLUX_F58_FORCE_ASCII`` for an
instance fluxlite starts for itself (the sub-instance sets its own, and none of the parent's
may leak into it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from fluxlite.errors import FluxUnavailable

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any

logger = logging.getLogger(__name__)

#: what ``drop`` takes: nothing, the job's own FLUX_URI, or an instance's FLUX_* variables
KEEP_ALL, JOB, INSTANCE = "none", "job", "instance"


def environment(base: Mapping[str, str], extra: Mapping[str, str] | None = None,
                drop: str = KEEP_ALL) -> dict[str, str]:
    """The job's environment under the policy of the module docstring."""
    if drop == INSTANCE:
        env = {k: v for k, v in base.items()
               if not k.startswith("FLUX_") or k == "FLUX_F58_FORCE_ASCII"}
    else:
        env = dict(base)
        if drop == JOB:
            env.pop("FLUX_URI", None)
    if extra:
        env.update(extra)
    return env


def build(argv: list[str] | str, *, kind: str = "command", count: int = 1, cores: int = 1,
          gpus: int | None = None, nodes: int | None = None, exclusive: bool = False,
          cwd: str, env: Mapping[str, str], name: str, stdin: Any = None, stdout: Any = None,
          stderr: Any = None, duration: float | None = None, append: bool = False) -> Any:
    """A ``JobspecV1``: ``kind`` "command" (``count`` tasks of ``cores`` cores and ``gpus``
    GPUs each), "nest" (a sub-instance of ``count`` slots whose initial program is argv) or
    "batch" (argv is a script, the initial program of such a sub-instance). A path for
    stdin, stdout or stderr is the job's; anything else (a descriptor, None) leaves Flux's
    default. ValueError when Flux refuses the resources."""
    from flux.job import JobspecV1  # type: ignore[import-not-found]

    if kind == "command":
        js = JobspecV1.from_command(argv, num_tasks=count, cores_per_task=cores,
                                    gpus_per_task=gpus, num_nodes=nodes)
    elif kind == "nest":
        js = JobspecV1.from_nest_command(argv, num_slots=count, cores_per_slot=cores,
                                         gpus_per_slot=gpus, num_nodes=nodes)
    else:
        js = JobspecV1.from_batch_command(argv, name, num_slots=count, cores_per_slot=cores,
                                          gpus_per_slot=gpus, num_nodes=nodes,
                                          exclusive=exclusive)
    js.cwd = cwd
    js.environment = dict(env)
    if kind != "batch":
        js.setattr("system.job.name", name)
    # descriptors (kickstart's "-") mean nothing to a job shell: Flux's defaults apply then
    if isinstance(stdin, str) and stdin != os.devnull:
        js.stdin = stdin
    if isinstance(stdout, str):
        js.stdout = stdout
    if isinstance(stderr, str):
        js.stderr = stderr
    if append:
        js.setattr_shell_option("output.mode", "append")
    if duration:
        js.duration = duration
    return js


def tasks_document(argv: list[str], *, count: int, nodes: int, cwd: str,
                   env: Mapping[str, str], name: str,
                   shell_options: Mapping[str, Any]) -> dict[str, Any]:
    """The jobspec (RFC 25, version 1) of ``count`` tasks of one core each, spread evenly
    over ``nodes`` nodes, as a plain document: what :func:`build` makes of the same
    (``JobspecV1.from_command``) without the ``flux`` package, for the pool's job
    (:mod:`fluxlite.cluster.pool.launch`). ValueError when ``count`` is not a multiple of
    ``nodes``."""
    if nodes < 1 or count % nodes:
        raise ValueError(f"{count} task(s) do not spread evenly over {nodes} node(s)")
    return {"resources": [{"type": "node", "count": nodes,
                           "with": [{"type": "slot", "count": count // nodes,
                                     "with": [{"type": "core", "count": 1}],
                                     "label": "task"}]}],
            "tasks": [{"command": list(argv), "slot": "task", "count": {"per_slot": 1}}],
            "attributes": {"system": {"duration": 0, "environment": dict(env), "cwd": cwd,
                                      "job": {"name": name},
                                      "shell": {"options": dict(shell_options)}}},
            "version": 1}


def connect(uri: str | None = None, what: str = "flux", job_api: bool = True) -> Any:
    """A handle on the instance at ``uri`` (FLUX_URI's when None); FluxUnavailable, one
    line naming ``what`` needed it, when the bindings or the instance are not there.
    ``job_api`` False: ``flux.job`` is not imported (see :func:`import_flux`)."""
    from fluxlite.flux import import_flux

    flux = import_flux(job_api)
    try:
        return flux.Flux(uri) if uri else flux.Flux()
    except OSError as err:
        where = f" at {uri}" if uri else ""
        raise FluxUnavailable(f"cannot connect to {what}{where}: "
                              f"{err.strerror or err}") from err


def open_instance(uri: str | None, needs: str) -> tuple[str, Any, Any]:
    """The instance an executor works in: its uri (FLUX_URI's when None), a handle on it
    and its resource list. FluxUnavailable, one line saying ``needs`` (what needs the
    instance), when there is none to reach."""
    uri = uri or os.environ.get("FLUX_URI")
    if not uri:
        raise FluxUnavailable(f"{needs} needs a Flux instance (FLUX_URI is unset)")
    h = connect(uri, "Flux")
    import flux.resource  # type: ignore[import-not-found]

    try:
        return uri, h, flux.resource.resource_list(h).get()
    except OSError as err:
        raise FluxUnavailable(f"cannot connect to Flux at {uri}: "
                              f"{err.strerror or err}") from err
