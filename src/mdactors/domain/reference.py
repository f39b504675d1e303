"""The historical side of a simulation: recorded bars, completed by the symbol's model.

Where the history store has candles over the requested span they are used
as they are; bars before the first recorded candle (or every bar, when
nothing is recorded) come from the symbol's own price model, scaled to end
exactly where recorded history starts (or at the symbol's current price), so
the series has no seam.
"""

from __future__ import annotations

import math

import numpy as np

from mdactors.domain.backfill import model_history
from mdactors.domain.bars import Bars
from mdactors.domain.models import PriceModel
from mdactors.domain.symbols import SymbolSpec

__all__ = ["complete_history", "model_bars"]

_SUBSTEPS = 4


def model_bars(
    model: PriceModel,
    spec: SymbolSpec,
    end_price: float,
    start_ns: int,
    step_ns: int,
    count: int,
    rng: np.random.Generator,
) -> Bars:
    """``count`` bars of ``model`` from ``start_ns`` whose last close is ``end_price``.

    The start-up history's generator (:func:`~mdactors.domain.backfill.model_history`):
    each bar is ``4`` model steps, so highs and lows are real path extremes,
    with the model's rhythm and volume.
    """
    end_ns = start_ns + count * step_ns
    return model_history(spec, model, end_price, end_ns, step_ns, count, rng, _SUBSTEPS)


def complete_history(
    recorded: Bars,
    model: PriceModel,
    spec: SymbolSpec,
    anchor_price: float,
    rng: np.random.Generator,
) -> tuple[Bars, bool]:
    """``recorded`` with its leading gap (NaN bars) filled from ``model``.

    The filler ends at the first recorded bar's open (no seam), or at
    ``anchor_price`` when nothing is recorded.

    Returns the bars and whether any recorded bar was used.
    """
    count = len(recorded)
    known = np.flatnonzero(~np.isnan(recorded.close))
    leading = int(known[0]) if len(known) else count
    if leading == 0:
        return recorded, True
    end_price = float(recorded.open[leading]) if leading < count else anchor_price
    if not (end_price > 0.0 and math.isfinite(end_price)):
        end_price = spec.seed_price
    filler = model_bars(model, spec, end_price, recorded.start_ns, recorded.step_ns, leading, rng)
    if leading == count:
        return filler, False
    columns = [
        np.concatenate((getattr(filler, name), getattr(recorded, name)[leading:]))
        for name in ("open", "high", "low", "close", "volume")
    ]
    return Bars(recorded.start_ns, recorded.step_ns, *columns), True
