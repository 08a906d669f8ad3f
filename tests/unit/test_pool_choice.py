"""The pool coordinator's choice of a worker for a task, kept as a heap (``Choice``), picks
exactly the worker a look at every worker picks, through any sequence of the changes the
coordinator makes: tasks given and ended, 'want's held and answered, queues resized,
workers lost. No Flux: the coordinator's accounting alone, on workers that said hello."""

from __future__ import annotations

import random

import pytest

from fluxlite.cluster.formats import Task
from fluxlite.cluster.pool.coordinator import Choice, PoolExecutor, Worker


def _scan(ex: PoolExecutor, t: Task) -> Worker | None:
    """The choice by a look at every worker (the rule ``_best`` keeps)."""
    best, rank = None, (0, 0, False)
    for w in ex.workers.values():
        if w.lost or not w.fits(t):
            continue
        r = (max(w.free, 0), w.room, w.want is not None)
        if best is None or r > rank:
            best, rank = w, r
    return best


def _pool(rng: random.Random, n: int) -> PoolExecutor:
    ex = PoolExecutor.__new__(PoolExecutor)
    ex.workers, ex.choice, ex.requeue = {}, Choice(), []
    for i in rng.sample(range(n * 3), n):  # hello order is not index order
        w = Worker(i, i, slots=rng.choice([1, 2, 4, 8]), gpus=rng.choice([0, 0, 1, 2]),
                   memory_mb=rng.choice([0, 1000, 4000]), ready=True)
        ex.workers[i] = w
        ex.choice.add(w)
    return ex


def _task(rng: random.Random) -> Task:
    return Task(id="t", cores=rng.choice([1, 1, 1, 2, 3, 8]), gpus=rng.choice([0, 0, 0, 1]),
                memory_mb=rng.choice([0, 0, 500, 3000]))


@pytest.mark.parametrize("seed", range(12))
def test_the_heap_chooses_as_a_look_at_every_worker(seed: int) -> None:
    rng = random.Random(seed)
    ex = _pool(rng, rng.choice([1, 3, 8, 40]))
    given: list[tuple[Worker, Task]] = []
    for _ in range(3000):
        t = _task(rng)
        assert ex._best(t) is _scan(ex, t)
        assert ex.fits(t) == (_scan(ex, t) is not None or not ex.choice.live)
        op = rng.random()
        live = [w for w in ex.workers.values() if not w.lost]
        if op < 0.45:  # a task given to the chosen worker
            w = ex._best(t)
            if w is not None:
                w.take(t)
                ex.choice.touch(w)
                given.append((w, t))
        elif op < 0.8 and given:  # a result: the task ended there
            w, t = given.pop(rng.randrange(len(given)))
            w.take(t, -1)
            ex.choice.touch(w)
        elif op < 0.93 and live:  # a 'want' held, or answered
            w = rng.choice(live)
            w.want = None if w.want is not None else object()
            ex.choice.touch(w)
        elif op < 0.98 and live:  # the queue resized to the tasks' run time
            w = rng.choice(live)
            w.prefetch = rng.choice([0, 1, 4, 16]) * w.slots
            ex.choice.touch(w)
        elif live and len(live) > 1:  # lost
            w = rng.choice(live)
            w.lost = True
            ex.choice.drop(w)
    # stale entries never pile up: the heap is rebuilt from the live workers
    assert len(ex.choice.heap) <= 4 * len(ex.choice.live) + 64 + 1


def test_ties_go_to_the_first_hello_and_none_is_chosen_when_every_worker_is_lost() -> None:
    ex = PoolExecutor.__new__(PoolExecutor)
    ex.workers, ex.choice, ex.requeue = {}, Choice(), []
    for i in (5, 2, 9):
        ex.workers[i] = Worker(i, 0, slots=2, ready=True)
        ex.choice.add(ex.workers[i])
    t = Task(id="t")
    assert ex._best(t).index == 5
    for w in ex.workers.values():
        w.lost = True
        ex.choice.drop(w)
    assert ex._best(t) is None and ex.live() == []
    assert ex.fits(t)  # no worker left: it "fits", to fail at once in start()
