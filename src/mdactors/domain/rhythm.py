"""A day's and a week's rhythm of activity: how busy the market is at each UTC hour.

Trading activity follows the clock: volatility and volume peak when Europe
and the US are both open (about 13:00–17:00 UTC) and are lowest in the hours
when both sleep, and weekends are quieter (Eross et al. 2019, "The intraday
dynamics of bitcoin"; Baur et al. 2019 on Bitcoin's weekly pattern). A
:class:`Rhythm` holds one activity level per hour of the week:

``a(d, h) = w(d) · (1 + A·cos(2π(h + ½ − P)/24))``

with amplitude ``A`` (busiest / quietest hour = (1 + A)/(1 − A), so 1/3 gives
2×), peak hour ``P`` (UTC) and ``w`` = ``weekend`` on Saturdays and Sundays,
1 otherwise. The profile is constant within each UTC hour, so everything
stepped within one hour sees the same level.

Two normalisations keep the calibration: :meth:`Rhythm.sigma` (multiplies a
step's standard deviation) has a mean square of 1 over the week, so the
yearly volatility is unchanged; :meth:`Rhythm.volume` has a mean of 1, so the
daily volume is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FLAT", "HOURS_PER_WEEK", "Rhythm", "hour_of_week"]

HOURS_PER_WEEK = 168
_NS_PER_HOUR = 3_600 * 1_000_000_000
# 1970-01-01 was a Thursday: hour 0 of the Unix epoch is hour 72 of a Monday-based week.
_EPOCH_WEEK_HOUR = 72


def hour_of_week(ns: int) -> int:
    """The hour of the UTC week (0 = Monday 00:00–01:00) of a Unix time in nanoseconds."""
    return (ns // _NS_PER_HOUR + _EPOCH_WEEK_HOUR) % HOURS_PER_WEEK


@dataclass(frozen=True, slots=True)
class Rhythm:
    """Activity by hour of the UTC week (see the module docstring)."""

    amplitude: float = 0.0
    peak_hour: float = 15.0
    weekend: float = 1.0
    _sigma: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _volume: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        levels = [
            (self.weekend if hour // 24 >= 5 else 1.0)
            * (
                1.0
                + self.amplitude
                * math.cos(2.0 * math.pi * (hour % 24 + 0.5 - self.peak_hour) / 24.0)
            )
            for hour in range(HOURS_PER_WEEK)
        ]
        rms = math.sqrt(sum(level * level for level in levels) / HOURS_PER_WEEK)
        mean = sum(levels) / HOURS_PER_WEEK
        object.__setattr__(self, "_sigma", tuple(level / rms for level in levels))
        object.__setattr__(self, "_volume", tuple(level / mean for level in levels))

    @property
    def flat(self) -> bool:
        """Whether every hour is alike (no rhythm)."""
        return self.amplitude == 0.0 and self.weekend == 1.0

    def sigma(self, ns: int) -> float:
        """The multiplier of a step's standard deviation at Unix time ``ns``."""
        return self._sigma[hour_of_week(ns)]

    def volume(self, ns: int) -> float:
        """The multiplier of volume (and trade arrival) at Unix time ``ns``."""
        return self._volume[hour_of_week(ns)]

    def sigmas(self, ns: np.ndarray) -> np.ndarray:
        """:meth:`sigma` for each of an array of Unix times (int64 nanoseconds)."""
        return np.asarray(self._sigma)[_hours_of_week(ns)]

    def volumes(self, ns: np.ndarray) -> np.ndarray:
        """:meth:`volume` for each of an array of Unix times (int64 nanoseconds)."""
        return np.asarray(self._volume)[_hours_of_week(ns)]


def _hours_of_week(ns: np.ndarray) -> np.ndarray:
    return (np.asarray(ns, dtype=np.int64) // _NS_PER_HOUR + _EPOCH_WEEK_HOUR) % HOURS_PER_WEEK


FLAT = Rhythm()
"""No rhythm: every multiplier is exactly 1."""
