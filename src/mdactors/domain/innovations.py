"""The random inputs of the price models, drawn in numpy batches.

Two sources feed each step of a symbol's process:

* the symbol's own generator: a standard normal ``n``, a Student-t mixing
  scale ``w`` and, for jump models, a uniform ``u`` and a normal ``j``;
* the market factor ``f``: one standard normal per time step, the same for
  every symbol.

A step's unit-variance innovation is ``e = (ρ f + √(1−ρ²) n) · w``. The bracket
is exactly standard normal, and ``w = √((ν−2)/χ²_ν)`` turns it into a Student-t
with ``ν`` degrees of freedom scaled to unit variance, so every symbol keeps its
own tail shape whatever its factor loading ``ρ``. Two symbols' innovations
correlate by ``ρ₁ρ₂·E[w₁]E[w₂]`` (≈ 0.85 ρ₁ρ₂ for ν = 5).

Why a counter-based generator for the factor: each actor must compute ``f`` for
step ``k`` on its own, without a shared object or a message per tick. numpy's
``Philox`` (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3") is a
keyed bijection of a 256-bit counter: the draws for ``(key, counter)`` are a
pure function of both, so any actor (or a vectorised path generator, or another
process) gets the same factor for step ``k`` in O(1), by setting the counter to
the block that holds ``k``. Hashing ``(seed, k)`` through ``SeedSequence`` for
every block would also work but costs more per block and is not designed for
random access. A block of 1024 steps costs one small numpy call, so the factor
adds ~20 ns per tick per actor. Distribution algorithms are those of the pinned
numpy, so seeded runs are bit-reproducible with the pinned dependencies.

Batches are drawn in a fixed layout (:data:`BATCH` steps at a time), so a live
actor and :func:`draw` on a generator with the same seed see the same inputs.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

__all__ = [
    "BATCH",
    "Innovations",
    "MarketFactor",
    "ShockStream",
    "TailMix",
    "draw",
    "draw_batch",
]

BATCH = 1024


class ShockStream:
    """Standard-normal shocks drawn from a seeded generator in numpy batches.

    Drawing one float at a time from numpy costs ~700 ns; a batch of 1024
    turned into a Python list costs ~15 ns a draw. The sequence depends only
    on the generator's seed, never on how the draws are consumed.
    """

    __slots__ = ("_batch", "_buffer", "_index", "_rng")

    def __init__(self, rng: np.random.Generator, batch: int = BATCH) -> None:
        self._rng = rng
        self._batch = batch
        self._buffer: list[float] = []
        self._index = 0

    def next(self) -> float:
        """Return the next standard-normal draw."""
        if self._index >= len(self._buffer):
            self._buffer = self._rng.standard_normal(self._batch).tolist()
            self._index = 0
        value = self._buffer[self._index]
        self._index += 1
        return value


class MarketFactor:
    """The common market factor: one standard normal per time step, by counter.

    ``MarketFactor(seed, purpose)`` objects built anywhere with the same
    arguments return the same draws, in blocks of :data:`BATCH` steps (the
    same size as a symbol's batches, so an actor fetches one factor block
    per batch of its own inputs).
    """

    __slots__ = ("_key",)

    def __init__(self, seed: int, purpose: str = "live") -> None:
        entropy = np.random.SeedSequence(
            [seed, zlib.crc32(b"market-factor"), zlib.crc32(purpose.encode())]
        )
        self._key = entropy.generate_state(2, np.uint64)

    def block(self, index: int) -> np.ndarray:
        """The :data:`BATCH` draws of steps ``index·B .. index·B + B − 1``."""
        counter = np.array([0, index, 0, 0], dtype=np.uint64)
        philox = np.random.Philox(key=self._key, counter=counter)
        return np.random.Generator(philox).standard_normal(BATCH)

    def draws(self, start: int, count: int) -> np.ndarray:
        """The factor draws of steps ``start .. start + count − 1``."""
        if count <= 0:
            return np.empty(0)
        first, last = start // BATCH, (start + count - 1) // BATCH
        joined = np.concatenate([self.block(index) for index in range(first, last + 1)])
        offset = start - first * BATCH
        return joined[offset : offset + count]


@dataclass(frozen=True, slots=True)
class TailMix:
    """How a symbol turns raw draws into its innovations.

    ``tail_dof`` is ν of the standardised Student-t (0 = Gaussian);
    ``loading`` is ρ, the correlation of the Gaussian core with the market
    factor; ``jumps`` says whether the jump inputs ``u`` and ``j`` are drawn.
    """

    tail_dof: float
    loading: float
    jumps: bool


@dataclass(frozen=True, slots=True)
class Innovations:
    """Per-step random inputs, before the market factor is mixed in.

    ``factor_scale`` = ρ·w and ``idio`` = √(1−ρ²)·n·w, so the step's
    innovation is ``factor_scale · f + idio``. ``u`` and ``j`` drive jumps
    (``u`` = 0 and ``j`` = 0 when the model has none). ``idio_weight`` is
    √(1−ρ²).
    """

    factor_scale: np.ndarray
    idio: np.ndarray
    u: np.ndarray
    j: np.ndarray
    idio_weight: float = 1.0

    def combined(self, factor: np.ndarray | None) -> np.ndarray:
        """The unit-variance innovations ``e`` given the factor draws.

        Without a factor (``None``: a symbol on its own) ``e`` is the
        symbol's own draw at full weight, ``n·w``, still of unit variance.
        """
        if factor is None:
            return self.idio if self.idio_weight == 1.0 else self.idio / self.idio_weight
        return self.factor_scale * factor + self.idio


def draw_batch(mix: TailMix, rng: np.random.Generator, count: int) -> Innovations:
    """Draw ``count`` steps of inputs in the fixed layout shared by actors and paths."""
    normal = rng.standard_normal(count)
    if mix.tail_dof:
        scale = np.sqrt((mix.tail_dof - 2.0) / rng.chisquare(mix.tail_dof, count))
    else:
        scale = np.ones(count)
    if mix.jumps:
        u, j = rng.random(count), rng.standard_normal(count)
    else:
        u = j = np.zeros(count)
    idio_weight = (1.0 - mix.loading * mix.loading) ** 0.5
    return Innovations(mix.loading * scale, idio_weight * normal * scale, u, j, idio_weight)


def draw(mix: TailMix, rng: np.random.Generator, count: int) -> Innovations:
    """``count`` steps of inputs, drawn :data:`BATCH` at a time as a live actor does."""
    batches = [draw_batch(mix, rng, BATCH) for _ in range(-(-count // BATCH))]
    if not batches:
        empty = np.empty(0)
        return Innovations(empty, empty, empty, empty)
    return Innovations(
        *(
            np.concatenate([getattr(batch, name) for batch in batches])[:count]
            for name in ("factor_scale", "idio", "u", "j")
        ),
        batches[0].idio_weight,
    )
