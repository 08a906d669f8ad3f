"""The pool's launch (fluxlite.cluster.pool.launch), over flux-core's C API alone, against
the flux package's own reading of the same things: the jobspec JobspecV1 makes, the nodes
a resource list says are up; and a launch that ends before its hand-over leaves nothing
behind in the instance."""

from __future__ import annotations

import json

import pytest

from fluxlite.cluster.pool import messages as m
from fluxlite.cluster.pool.launch import JOB_NAME, Launch, up_nodes
from fluxlite.flux import import_flux, jobspec
from tests.flux.conftest import FluxInstance


def test_the_pool_jobspec_is_the_one_jobspecv1_makes() -> None:
    flux = import_flux()
    argv = ["/usr/bin/python3", "-c", "pass", "a b", "é"]
    env = {"A": "1", "PATH": "/bin"}
    for count, nodes in ((2, 2), (6, 3), (1, 1), (16, 16)):
        js = flux.job.JobspecV1.from_command(argv, num_tasks=count, cores_per_task=1,
                                            gpus_per_task=None, num_nodes=nodes)
        js.cwd = "/some/dir"
        js.environment = dict(env)
        js.setattr("system.job.name", JOB_NAME)
        js.setattr_shell_option("exit-timeout", "none")
        js.setattr_shell_option("cpu-affinity", "off")
        ours = jobspec.tasks_document(argv, count=count, nodes=nodes, cwd="/some/dir",
                                      env=env, name=JOB_NAME,
                                      shell_options={"exit-timeout": "none",
                                                     "cpu-affinity": "off"})
        assert ours == json.loads(js.dumps())
    with pytest.raises(ValueError, match="do not spread evenly"):
        jobspec.tasks_document(argv, count=3, nodes=2, cwd="/", env={}, name="x",
                               shell_options={})


def test_the_nodes_up_are_those_of_the_resource_list(flux_instance: FluxInstance) -> None:
    import_flux()
    import flux.resource  # type: ignore[import-not-found]

    h = flux.Flux(flux_instance.uri)

    def both() -> tuple[dict[int, tuple[int, int]], dict[int, tuple[int, int]]]:
        rl = flux.resource.resource_list(h).get()
        theirs = {r: (rl.up.copy_ranks(r).ncores, rl.up.copy_ranks(r).ngpus)
                  for r in rl.up.ranks}
        return up_nodes(json.loads(h.rpc("resource.sched-status", nodeid=0).get_str())), theirs

    ours, theirs = both()
    assert ours == theirs and len(ours) == flux_instance.size
    last = flux_instance.size - 1
    flux_instance.flux("resource", "drain", str(last), "a test of the pool's launch")
    try:
        ours, theirs = both()
        assert ours == theirs and last not in ours and len(ours) == flux_instance.size - 1
    finally:
        flux_instance.flux("resource", "undrain", str(last))


def test_a_launch_ended_before_its_hand_over_leaves_nothing(
        flux_instance: FluxInstance) -> None:
    launch = Launch(flux_instance.uri, 1, 4096, env=flux_instance.env)
    try:
        key = m.secret_key(launch.service)
        assert launch.nnodes == flux_instance.size
        assert launch.ranks == list(range(launch.nnodes))
        got = flux_instance.flux("kvs", "get", key)
        assert json.loads(got.stdout) == launch.secret.hex()  # JSON, as flux.kvs.put writes
        jid = launch.wait_submitted()
    finally:
        launch.close()  # a job left running would hold the cores of the tests that follow
    info = flux_instance.wait_job(str(jid))
    assert info["result"] == "CANCELED" and info["name"] == JOB_NAME
    assert flux_instance.flux("kvs", "get", key, check=False).returncode != 0
    launch.close()  # once is enough: nothing more is done
    assert launch.handle is None
