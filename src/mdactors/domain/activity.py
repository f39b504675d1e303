"""The clock-driven part of one symbol's step: its rhythm, volume, trade arrival and spread.

What a live actor and a scenario feed share, tick by tick: the σ level of
the step's UTC hour (:class:`~mdactors.domain.rhythm.Rhythm`, looked up once an
hour), the volume level of the step's move
(:func:`~mdactors.domain.quotes.activity`, its slope cached for the hour, ×
the hour's volume level) and the chance that the step prints a trade (the
hour's volume level over the week's busiest: trades arrive on the same
rhythm). The vectorised twin is :func:`mdactors.domain.backfill.minute_history`.
"""

from __future__ import annotations

import math

import numpy as np

from mdactors.domain.models import PriceModel
from mdactors.domain.quotes import VOLUME_FLOOR
from mdactors.domain.rhythm import HOURS_PER_WEEK

__all__ = ["SPREAD_MOVES", "ActivityClock"]

_NS_PER_HOUR = 3_600 * 1_000_000_000
SPREAD_MOVES = 4.0
"""A move of this many typical moves (at the long-run σ) widens the spread fully."""


class ActivityClock:
    """One symbol's rhythm and volume levels, step by step (plain floats, hot path)."""

    __slots__ = (
        "_dt",
        "_hour",
        "_peak",
        "_rhythm",
        "_scale",
        "_sigma",
        "_slope",
        "_typical",
        "_volume",
        "print_chance",
    )

    def __init__(self, model: PriceModel) -> None:
        self._rhythm = model.rhythm
        self._typical = model.typical_move() * model.volatility
        hours = np.arange(HOURS_PER_WEEK, dtype=np.int64) * _NS_PER_HOUR
        self._peak = float(np.max(self._rhythm.volumes(hours)))
        self._hour = -1
        self._sigma = self._volume = 1.0
        self.print_chance = 1.0
        """The chance the step prints (set by :meth:`season`): the hour's volume
        level over the week's busiest, so the busiest hour prints every tick,
        busiest / quietest trade counts are the profile's ratio, and without a
        rhythm every tick prints."""
        self._dt = -1.0
        self._scale = 0.0
        self._slope = 0.0

    def season(self, ns: int) -> float:
        """The σ level of the step at Unix time ``ns`` (and the clock's hour from now on)."""
        hour = ns // _NS_PER_HOUR
        if hour != self._hour:
            self._hour = hour
            self._sigma = self._rhythm.sigma(ns)
            self._volume = self._rhythm.volume(ns)
            self.print_chance = self._volume / self._peak
            self._slope = 0.0
        return self._sigma

    def volume_level(self, move: float, dt_years: float) -> float:
        """The volume multiplier of a step of ``dt_years`` that moved the log price by ``move``.

        Call after :meth:`season` for the same step.
        """
        if dt_years != self._dt or not self._slope:
            self._dt = dt_years
            self._scale = self._typical * math.sqrt(dt_years)
            if not self._scale:
                return self._volume
            # activity(move, scale·σ) = FLOOR + (1 − FLOOR)·|move| / (scale·σ), per hour.
            self._slope = (1.0 - VOLUME_FLOOR) / (self._scale * self._sigma)
        return (VOLUME_FLOOR + self._slope * abs(move)) * self._volume

    def spread_activity(self, move: float) -> float:
        """How busy the step was for the quote's spread (0 calm .. 1 busy): ``|move|``
        over 4 typical moves at the long-run σ, so spreads widen with the
        volatility state (a spike, a volatile regime, the busy hours), not
        just with a big innovation. Call after :meth:`volume_level`.
        """
        if not self._scale:
            return 0.0
        busy = abs(move) / (SPREAD_MOVES * self._scale)
        return busy if busy < 1.0 else 1.0
