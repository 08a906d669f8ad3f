"""When the task gets SIGTERM and SIGKILL, computed as Pegasus's planner does."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Schedule:
    """Seconds after the task starts at which it is sent TERM, then KILL (None: never)."""

    term_after: float | None = None
    kill_after: float | None = None
    source: str = "none"  # "spec", "flux" or "none"
    walltime: float | None = None

    def as_dict(self) -> dict[str, object]:
        """The schedule as the JSON record keeps it."""
        return {"term_after": self.term_after, "kill_after": self.kill_after,
                "source": self.source, "walltime": self.walltime}


def from_limits(*, maxwalltime: float | None = None, checkpoint_time: float | None = None,
                kill_grace: float = 5.0, timeleft: float | None = None,
                elapsed: float = 0.0) -> Schedule:
    """The schedule from a job's limits (seconds), or from Flux's time left when it has none.

    - checkpoint C and walltime W: TERM at C, KILL at C + (W - C) / 2;
    - W only: TERM at W - 300 s (W - 10 s when that is not positive), KILL halfway to W;
    - C only: TERM at C, KILL ``kill_grace`` seconds later.
    ``timeleft`` (seconds, measured ``elapsed`` seconds before the task starts) stands in for
    W when the job gives no walltime. A limit that is not a finite number is no limit.
    """
    c = _finite(checkpoint_time)
    w = _finite(maxwalltime)  # an infinite limit is no limit
    source = "spec"
    if w is None and timeleft is not None and math.isfinite(timeleft):
        w = max(timeleft - elapsed, 1.0)
        source = "flux"
    if c is not None and w is not None and c < w:
        return Schedule(c, c + (w - c) / 2.0, source, w)
    if w is not None:
        term = w - 300.0
        if term <= 0:
            term = w - 10.0
        if term <= 0:
            term = w / 2.0
        return Schedule(term, term + (w - term) / 2.0, source, w)
    if c is not None:
        grace = _finite(kill_grace)
        return Schedule(c, c + (5.0 if grace is None else grace), "spec", None)
    return Schedule()


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def describe(s: Schedule) -> str:
    """The schedule in words for the log: "TERM after 30.0 s, KILL after 35.0 s (spec)"."""
    if s.term_after is None and s.kill_after is None:
        return "no time limit"
    parts = [f"{sig} after {t:.1f} s" for sig, t in (("TERM", s.term_after),
                                                     ("KILL", s.kill_after)) if t is not None]
    return ", ".join(parts) + f" ({s.source})"
