"""The one backoff schedule and the one log throttle every part shares."""

from __future__ import annotations

import pytest

from wsevents._retry import Backoff, Tally


def test_backoff_waits_double_within_the_upper_half_of_each_step_up_to_the_longest() -> None:
    backoff = Backoff(0.05, 0.4)
    waits = [backoff.next() for _ in range(6)]
    steps = [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]
    for wait, step in zip(waits, steps, strict=True):
        assert step / 2 <= wait <= step
    backoff.reset()
    assert 0.025 <= backoff.next() <= 0.05


@pytest.mark.parametrize(("first", "longest"), [(0, 1), (-1, 1), (2, 1)])
def test_a_backoff_that_cannot_wait_is_refused(first: float, longest: float) -> None:
    with pytest.raises(ValueError, match="0 < first <= longest"):
        Backoff(first, longest)


def test_a_tally_says_to_log_the_first_failure_then_every_thousandth() -> None:
    tally = Tally()
    logged = [n for n in range(1, 3001) if tally.add("publish")]
    assert logged == [1, 1000, 2000, 3000]
    assert tally["publish"] == 3000
    assert tally["other"] == 0
    assert tally.add("batch", 999)  # a first failure, however many at once
    assert not tally.add("batch", 0)
    assert tally.add("batch", 5)  # crossed 1000
