"""Diffs between order books, as Binance's aggregated depth streams send them.

A diff event carries the levels that changed since the previous event; a
client may have taken a REST snapshot at any update in between, so the diff
must take *every* book of the window to the newest one (see :class:`DiffWindow`).
"""

from __future__ import annotations

from collections.abc import Sequence

from mdactors.domain.book import Level, OrderBook

__all__ = ["DiffWindow", "book_diff"]


class DiffWindow:
    """The books between two depth events, folded into what the next diff must carry.

    Start it at the book of the last event (the book a client holds), :meth:`see`
    every book after it, then :meth:`diff` gives the changes to the newest book.
    A level is sent when *some* book of the window had a different quantity
    there (or none), so applying the diff to the book of any update in the
    window (a REST snapshot taken in between) gives exactly the newest book,
    as Binance's aggregated diffs do, while a level unchanged throughout is
    left out. Memory is a book's worth of levels, whatever the window's length.
    """

    __slots__ = ("_common", "_varied")

    def __init__(self, start: OrderBook) -> None:
        self._common = (dict(start.bids), dict(start.asks))
        """Per side, levels with the same quantity in every book of the window."""
        self._varied: tuple[set[float], set[float]] = (set(), set())
        """Per side, the other prices some book of the window had."""

    def see(self, book: OrderBook) -> None:
        """Add ``book`` to the window."""
        for side, levels in ((0, book.bids), (1, book.asks)):
            common, varied = self._common[side], self._varied[side]
            current = dict(levels)
            stale = [price for price, _ in common.items() - current.items()]
            for price in stale:
                del common[price]
            varied.update(stale)
            varied.update(current.keys() - common.keys())

    def diff(self, new: OrderBook) -> tuple[list[Level], list[Level]]:
        """The changes taking any book of the window to ``new``: ``(bids, asks)``,
        best first, then removed levels (quantity 0) by price."""
        return self._side(0, new.bids), self._side(1, new.asks)

    def _side(self, side: int, after: Sequence[Level]) -> list[Level]:
        common = self._common[side]
        changes = [(price, qty) for price, qty in after if common.get(price) != qty]
        gone = (common.keys() | self._varied[side]).difference(price for price, _ in after)
        changes.extend((price, 0.0) for price in sorted(gone))
        return changes


def book_diff(
    old: OrderBook, new: OrderBook, between: Sequence[OrderBook] = ()
) -> tuple[list[Level], list[Level]]:
    """The changes taking ``old`` to ``new``: ``(bids, asks)``, quantity 0 = level removed.

    ``between`` are the books of the updates in between: the changes also take
    any of them to ``new`` (see :class:`DiffWindow`).
    """
    window = DiffWindow(old)
    for book in between:
        window.see(book)
    return window.diff(new)
