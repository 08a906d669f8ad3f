"""A module's logger that imports :mod:`logging` when it is first used.

A pool worker imports the local launcher's modules on every node before its first task
can start there, and logs nothing unless something goes wrong. The logging package, with
the ``traceback``, ``textwrap`` and ``string`` it imports, costs such a process 3-4 ms of
CPU; with these loggers it is paid only by a process that logs. A process that has
configured logging (the command line) sees no difference: each call is the real logger's.
A process that has not (a worker) gets logging's last resort, as ``basicConfig`` at
WARNING would: the message alone, on stderr.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported when fluxlite runs: it costs every start
if TYPE_CHECKING:
    from typing import Any


class LazyLogger:
    """``logging.getLogger(name)``, made at the first call of one of its methods."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        import logging

        value = getattr(logging.getLogger(self.name), attr)
        if callable(value):
            self.__dict__[attr] = value  # the real logger's method, from now on
        return value


def get_logger(name: str) -> Any:
    """The logger of module ``name``, imported when first used."""
    return LazyLogger(name)
