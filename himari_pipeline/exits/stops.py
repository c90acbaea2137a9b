"""Stop-loss and take-profit against one bar's open, high and low: which fills, and at what price.

The rule, for a long position (a short is the same on negated prices):

1. the bar opens at or through a level (a gap): that level's order fills at the **open**, the worse
   price the market gave;
2. otherwise the bar's low reaching the stop fills the stop at the stop price, and the high reaching
   the take-profit fills it at the take-profit price;
3. both reached inside one bar: the order of the touches is unknown, so the **stop** fills
   (conservative: a backtest never books the better outcome of an ambiguous bar).

Elementwise on numpy arrays and torch tensors alike (the exit env steps thousands of positions at once).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from himari_pipeline.trading.rules import elementwise_where

NO_FILL, STOP_FILL, TAKE_FILL = 0, 1, 2


class Fill(NamedTuple):
    kind: Any  # NO_FILL, STOP_FILL or TAKE_FILL per position
    price: Any  # the fill price (the bar's close where nothing filled)


def resolve_stops(side: Any, stop: Any, take: Any, open_: Any, high: Any, low: Any, close: Any) -> Fill:
    """Which of the stop and take-profit a bar fills, and the price (see the module doc).

    ``side`` is +1 (long) or -1 (short); ``stop``/``take`` are price levels (a long's stop below, its
    take above the entry; a short's mirrored)."""
    # a short is a long on negated prices: its high is the negated low
    s_stop, s_take, s_open = side * stop, side * take, side * open_
    s_low = elementwise_where(side > 0, low, -high)
    s_high = elementwise_where(side > 0, high, -low)
    gap_stop = s_open <= s_stop
    gap_take = s_open >= s_take
    touch_stop = s_low <= s_stop
    touch_take = s_high >= s_take
    stopped = gap_stop | (~gap_take & touch_stop)  # both touched inside the bar: the stop
    taken = ~stopped & (gap_take | touch_take)
    price = elementwise_where(
        gap_stop | gap_take, open_, elementwise_where(stopped, stop, elementwise_where(taken, take, close))
    )
    kind = elementwise_where(stopped, STOP_FILL, elementwise_where(taken, TAKE_FILL, NO_FILL))
    return Fill(kind, price)
