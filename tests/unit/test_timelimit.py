from __future__ import annotations

import math

from fluxlite.execute.timelimit import from_limits


def test_checkpoint_and_walltime_follow_pegasus() -> None:
    # checkpoint.time=1 min, maxwalltime=2 min -> -k 60 -K 30, as Pegasus's planner computes it
    s = from_limits(maxwalltime=120, checkpoint_time=60)
    assert (s.term_after, s.kill_after) == (60, 90)


def test_walltime_only() -> None:
    s = from_limits(maxwalltime=3600)
    assert s.term_after == 3300 and s.kill_after == 3450
    s = from_limits(maxwalltime=200)  # W - 300 would be negative: W - 10
    assert s.term_after == 190 and s.kill_after == 195


def test_checkpoint_only_uses_the_grace() -> None:
    s = from_limits(checkpoint_time=30, kill_grace=7)
    assert (s.term_after, s.kill_after) == (30, 37)


def test_no_limits_no_schedule() -> None:
    s = from_limits()
    assert s.term_after is None and s.kill_after is None


def test_flux_timeleft_stands_in_for_walltime() -> None:
    s = from_limits(timeleft=620.0, elapsed=20.0)
    assert s.source == "flux" and s.walltime == 600.0
    assert s.term_after == 300.0 and s.kill_after == 450.0
    assert from_limits(timeleft=math.inf).term_after is None
    # the spec wins over Flux
    assert from_limits(maxwalltime=1000, timeleft=50).source == "spec"


def test_an_infinite_limit_is_no_limit() -> None:
    from fluxlite.execute.timelimit import describe

    inf = math.inf
    assert from_limits(maxwalltime=inf).term_after is None
    s = from_limits(maxwalltime=inf, checkpoint_time=30, kill_grace=7)
    assert (s.term_after, s.kill_after) == (30, 37)
    s = from_limits(maxwalltime=math.nan, checkpoint_time=inf)
    assert s.term_after is None and s.kill_after is None
    # the log line never shows nan or inf
    for lim in ({"maxwalltime": inf}, {"checkpoint_time": inf, "kill_grace": inf},
                {"maxwalltime": 120, "checkpoint_time": 60},
                {"checkpoint_time": 5, "kill_grace": inf}):
        text = describe(from_limits(**lim))
        assert "nan" not in text and "inf" not in text, text
    assert describe(from_limits(maxwalltime=120, checkpoint_time=60)) == (
        "TERM after 60.0 s, KILL after 90.0 s (spec)")
