"""A worker pool over a Flux instance: ``fluxlite cluster --executor pool``.

One worker per node runs small tasks at local speed; the coordinator (``coordinator``),
inside the cluster's scheduler, hands them out over Flux's own messages (``messages``) to
the workers (``worker``), each forked below its guard (``guard``; the mechanism is
:mod:`fluxlite.execute.guard`'s).
"""
