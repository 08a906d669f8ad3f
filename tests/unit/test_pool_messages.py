"""The pool's messages: tasks and results survive the trip, bytes and all."""

from __future__ import annotations

import json

import pytest

from fluxlite.cluster import formats
from fluxlite.cluster.formats import ClusterInputError, Task
from fluxlite.cluster.records import Attempt, RecordWriter, attempt_dict
from fluxlite.execute.base import ExitStatus
from fluxlite.cluster.pool import messages as m


def test_task_and_result_round_trip() -> None:
    t = Task(id="a b", seq=3, argv=["/bin/echo", "x"], cores=2, gpus=1, memory_mb=64,
             pipe_forward=[("OUT", "out.txt")], file_forward=[("s", "d")])
    a = Attempt(task=t, number=2)
    key, w = m.decode_task(m.loads(m.dumps(m.encode_task(7, a)).decode()))
    assert key == 7 and w.number == 2
    assert (w.task.id, w.task.argv, w.task.cores, w.task.gpus, w.task.memory_mb) == (
        "a b", ["/bin/echo", "x"], 2, 1, 64)
    assert w.task.pipe_forward == [("OUT", "out.txt")] and w.task.file_forward == [("s", "d")]
    w.status = ExitStatus.from_wait(1 << 8)
    w.stdout, w.stderr = b"\xff\x00odd\n", b""
    w.stdout_info = (False, 6)
    w.pid, w.start, w.duration = 42, 1000.5, 0.25
    w.stopped = "time limit"
    back = Attempt(task=t, number=2)
    m.apply_result(back, m.loads(m.dumps(m.encode_result(7, w)).decode()))
    assert back.stdout == b"\xff\x00odd\n" and back.status.code == 1
    assert (back.pid, back.start, back.duration, back.stopped) == (42, 1000.5, 0.25,
                                                                   "time limit")


def test_records_name_rank_worker_and_queue_wait() -> None:
    t = Task(id="a", argv=["/bin/true"], name="true")
    a = Attempt(task=t, number=1, start=1000.0, duration=0.5, host="node7", rank=3,
                worker="w3", queue_wait=0.125, status=ExitStatus.from_wait(0))
    w = RecordWriter()
    assert "hostname=\"node7\"" in w.task_line(a) and "rank=3" in w.task_line(a)
    assert 'flux_rank: "3"' in w.kickstart(a)
    d = json.loads(json.dumps(attempt_dict(a)))
    assert (d["rank"], d["worker"], d["queue_wait"], d["run_time"]) == (3, "w3", 0.125, 0.5)


def test_nodes_and_placement_in_inputs(tmp_path) -> None:  # noqa: ANN001
    p = tmp_path / "n.dag"
    p.write_text("TASK a -N 2 -c 4 /bin/true\nTASK b /bin/true\n")
    g = formats.load(str(p))
    assert g.tasks["a"].nodes == 2 and g.tasks["b"].nodes == 0
    j = tmp_path / "j.json"
    j.write_text(json.dumps([{"id": "x", "executable": "/bin/true", "placement": "flux"},
                             {"id": "y", "executable": "/bin/true"}]))
    g = formats.load(str(j))
    assert g.tasks["x"].placement == "flux" and g.tasks["y"].placement == ""
    j.write_text(json.dumps([{"id": "x", "executable": "/bin/true", "placement": "moon"}]))
    with pytest.raises(ClusterInputError, match=r"\[0\]\.placement: must be one of auto, flux"):
        formats.load(str(j))


def test_gone_names_the_attempts_that_never_started_and_hold_its_reason() -> None:
    doc = {"worker": 1, "by": "guard", "why": "x", "killed": [], "left": 0, "queued": [3, 9]}
    assert m.check_gone(doc, 2)["queued"] == [3, 9]
    assert m.check_gone({k: v for k, v in doc.items() if k != "queued"}, 2)
    for bad in (0, -1, "3", 3.0, True, None, 2**63, [4]):
        with pytest.raises(m.BadMessage, match="queued"):
            m.check_gone({**doc, "queued": [bad]}, 2)
    for bad in ({}, "1,2", 5):
        with pytest.raises(m.BadMessage, match="queued"):
            m.check_gone({**doc, "queued": bad}, 2)
    assert m.check_reports({"worker": 0, "starved": 0.25}, m.WANT_FIELDS, "want", 1) == []
    for bad in (-1, "1", float("nan"), 1e300, None):
        with pytest.raises(m.BadMessage, match="starved"):
            m.check_reports({"worker": 0, "starved": bad}, m.WANT_FIELDS, "want", 1)
    with pytest.raises(m.BadMessage, match="starved"):  # only a 'want' says it
        m.check_reports({"worker": 0, "starved": 1.0}, m.DONE_FIELDS, "done", 1)
    assert m.check_give({"count": 3}) == 3 and m.check_given({"keys": [4, 5]}) == [4, 5]
    for bad in ({"count": 0}, {"count": "2"}, {"count": 2.0}, {}, {"count": 1, "x": 1}):
        with pytest.raises(m.BadMessage):
            m.check_give(bad)
    for bad in ({"keys": [0]}, {"keys": "4"}, {}, {"keys": [1], "more": True}):
        with pytest.raises(m.BadMessage):
            m.check_given(bad)
    assert m.check_hold({"reason": "fail-fast"}) == "fail-fast"
    assert m.check_hold({}) == "held"
    for bad in ({"reason": 5}, {"reason": "x" * 201}, {"reason": "r", "signum": 9}):
        with pytest.raises(m.BadMessage):
            m.check_hold(bad)
