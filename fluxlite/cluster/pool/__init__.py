"""A worker pool over a Flux instance: ``fluxlite cluster --executor pool``.

One worker per node runs small tasks at local speed; the coordinator, inside the cluster's
scheduler, hands them out over Flux's own messages (see ``messages``).
"""
