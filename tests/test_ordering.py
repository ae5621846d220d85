"""A history topic's delivery order, on its own: positions in, steps out, no event loop."""

from __future__ import annotations

from wsevents._history import Position
from wsevents._ordering import MAX_EARLY, Order


def at(offset: int, epoch: str = "e1") -> Position:
    return Position(epoch, offset)


def msg(offset: int) -> dict[str, int]:
    return {"n": offset}


def test_publications_in_order_are_delivered_as_they_come_and_echoes_are_dropped() -> None:
    order = Order(at(0))
    assert order.arrived(at(1), msg(1)) == [(at(1), msg(1))]
    assert order.arrived(at(2), msg(2)) == [(at(2), msg(2))]
    assert order.arrived(at(2), msg(2)) == []  # heard twice
    assert order.delivered(at(1))
    assert not order.delivered(at(3))
    assert order.gap is None


def test_an_early_publication_waits_for_its_gap_and_goes_out_after_it_in_order() -> None:
    order = Order(at(1))
    assert order.arrived(at(4), msg(4)) == []
    assert order.arrived(at(5), msg(5)) == []
    assert order.gap == (1, 4)  # 2 and 3 are missing: read them
    steps = order.filled(at(5), [(2, msg(2)), (3, msg(3))], first=4)
    assert [position.offset for position, _ in steps] == [2, 3, 4, 5]
    assert order.gap is None


def test_a_gap_closed_by_live_publications_while_read_takes_nothing_twice() -> None:
    order = Order(at(1))
    order.arrived(at(4), msg(4))
    assert order.gap == (1, 4)
    assert [p.offset for p, _ in order.arrived(at(2), msg(2))] == [2]
    assert [p.offset for p, _ in order.arrived(at(3), msg(3))] == [3, 4]
    assert order.filled(at(4), [(2, msg(2)), (3, msg(3))], first=4) == []
    assert order.ready() == []
    assert order.gap is None


def test_a_gap_the_history_cannot_fill_is_announced_then_what_waits_goes() -> None:
    order = Order(at(1))
    order.arrived(at(5), msg(5))
    steps = order.filled(at(5), [(4, msg(4))], first=5)  # 2 and 3 were trimmed
    assert steps == [(at(3), None), (at(4), msg(4)), (at(5), msg(5))]
    order.arrived(at(8), msg(8))
    assert order.skip_gap() == [(at(7), None), (at(8), msg(8))]


def test_a_new_epoch_is_announced_and_its_stragglers_dropped() -> None:
    order = Order(at(9))
    assert order.arrived(at(1, "e2"), msg(1)) == [(at(0, "e2"), None), (at(1, "e2"), msg(1))]
    assert order.arrived(at(10, "e1"), msg(10)) == []  # of the epoch left behind
    assert order.position == at(1, "e2")
    assert order.filled(at(3, "e3"), [], first=5) == [(at(3, "e3"), None)]


def test_too_many_early_publications_skip_the_gap_rather_than_grow() -> None:
    order = Order(at(0))
    for offset in range(3, 3 + MAX_EARLY):
        assert order.arrived(at(offset), msg(offset)) == []
    steps = order.arrived(at(3 + MAX_EARLY), msg(0))
    assert steps[0] == (at(2), None)
    assert len(steps) == MAX_EARLY + 2
    assert order.position == at(3 + MAX_EARLY)  # the new one, after all that waited


def test_catching_up_after_a_reconnect_delivers_what_was_missed_or_says_it_expired() -> None:
    order = Order(at(2))
    steps = order.caught_up(at(4), [(3, msg(3)), (4, msg(4)), (5, msg(5))])
    assert [p.offset for p, _ in steps] == [3, 4]  # 5 is past the position read
    expired = Order(at(2))
    assert expired.caught_up(at(7), []) == [(at(7), None)]
    assert expired.position == at(7)
    lost = Order(at(2))
    assert lost.caught_up(at(0, "e2"), []) == [(at(0, "e2"), None)]
