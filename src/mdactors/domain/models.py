"""Price processes: one set of formulas, used step by step and vectorised.

A :class:`PriceModel` combines, on the log price ``x`` with instantaneous
annual variance ``h``:

* diffusion: ``x' = x + (μ − λk)Δt − ½hΔt + √(hΔt)·e`` (GBM when nothing else
  is switched on), or Ornstein–Uhlenbeck mean reversion towards ``log m``:
  ``x' = log m + (x − log m)·e^{−κΔt} + √(h(1 − e^{−2κΔt})/2κ)·e`` (exact
  discretisation);
* Merton jumps: ``N ~ Poisson(λΔt)`` jumps of log size ``N(μ_J, σ_J²)`` each,
  with the drift compensated by ``k = E[e^J] − 1`` so jumps add no trend;
* GARCH(1,1) volatility clustering:
  ``h' = ω + (α e² + β) h`` with ``ω = θ(1 − φ)``, ``α + β = φ = e^{−κ_v Δt}``
  and ``α = √(ξ²Δt / Var(e²))``. This is Nelson's (1990) diffusion limit of
  GARCH, ``dh = κ_v(θ − h)dt + ξ h dW``, so the same parameters give the same
  clustering whatever the tick interval. ``vol_clustering`` = ξ²/2κ_v ∈ [0, 1)
  sets the stationary dispersion of ``h`` (CV² = c / (1 − c)); below 1 the
  returns keep a finite fourth moment;
* long memory: the GARCH variance is multiplied by ``exp(f + s − ½V)``, two
  log-variance components ``s' = φ_s s + g_s (|ē| − E|ē|)`` and
  ``f' = φ_f f + g_f (|ē| − E|ē| − ℓē)``, ``ē`` the innovation clipped to ±3
  (:data:`SHOCK_CAP`), with half-lives from minutes (fast) to weeks (slow).
  Each has a stationary standard deviation of log variance
  (``vol_fast_dispersion``, ``vol_slow_dispersion``) with
  ``g = d·√((1 − φ²) / Var(shock))``, so again the parameters mean the same
  at any tick interval. ``ℓ`` (``vol_fast_asymmetry``) makes a fall raise the
  next half-hour's volatility more than a rise: losses compound faster than
  gains (negative skew of hourly returns) without a lasting equity-style
  leverage effect. ``V`` is the stationary variance of ``f + s``, so
  ``E[exp(f + s − ½V)] ≈ 1`` and the long-run volatility stays
  ``volatility``. A sum of autoregressions with half-lives decades apart has
  an autocorrelation close to a power law over those decades (the
  approximation behind HAR and component GARCH models: Corsi 2009; Engle and
  Lee 1999);
* intraday rhythm: a per-step ``season`` (see :mod:`mdactors.domain.rhythm`)
  scales the step's standard deviation without feeding the variance state;
* fat tails: ``e`` is a Student-t with ν ≥ 5 degrees of freedom, standardised
  to unit variance, mixed with the market factor (see
  :mod:`mdactors.domain.innovations`).

``volatility`` is the long-run yearly σ of log returns from all sources (for
mean-reverting models, the instantaneous σ of the diffusion). The live path,
:meth:`PriceModel.step` on plain floats (~0.5 µs), and the vectorised path,
:meth:`PriceModel.simulate` on numpy arrays, evaluate the same expressions in
the same order: given the same inputs they produce the same log prices.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from mdactors.domain.innovations import (
    BATCH,
    MarketFactor,
    ShockStream,
    TailMix,
    draw,
    draw_batch,
)
from mdactors.domain.rhythm import Rhythm

__all__ = [
    "GBM",
    "SECONDS_PER_YEAR",
    "LiveProcess",
    "ModelError",
    "ModelState",
    "PriceModel",
    "ShockStream",
    "StepCoefficients",
]

SECONDS_PER_YEAR = 365.0 * 86_400.0
HOURS_PER_YEAR = 365.0 * 24.0
_sqrt, _exp = math.sqrt, math.exp
_MAX_JUMPS = 64


SHOCK_CAP = 3.0
"""Innovations drive the long-memory components clipped to ±3: the variance's
log then has bounded shocks, so its exponential has a finite mean even under
Student-t tails (an unclipped exp(g|e|) has none). The two hot loops
(:meth:`PriceModel.step`, the vectorised variances) spell it as the literal 3.0."""


@functools.lru_cache(maxsize=32)
def clipped_moments(tail_dof: float) -> tuple[float, float, float]:
    """``(E|ē|, Var|ē|, E[ē²])`` of ``ē`` = a standardised innovation clipped to ±:data:`SHOCK_CAP`.

    Integrated numerically over the density of the standardised Student-t
    with ``tail_dof`` degrees of freedom (0 = Gaussian).
    """
    x = np.linspace(0.0, SHOCK_CAP, 30_001)
    nu = tail_dof
    if nu:
        scale2 = nu - 2.0  # e = T·√((ν − 2)/ν): density in x of the standardised t
        norm = math.exp(math.lgamma((nu + 1.0) / 2.0) - math.lgamma(nu / 2.0))
        density = norm / math.sqrt(math.pi * scale2) * (1.0 + x * x / scale2) ** (-(nu + 1.0) / 2.0)
    else:
        density = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    inside = 2.0 * float(np.trapezoid(density, x))
    tail = max(0.0, 1.0 - inside)
    mean = 2.0 * float(np.trapezoid(x * density, x)) + SHOCK_CAP * tail
    square = 2.0 * float(np.trapezoid(x * x * density, x)) + SHOCK_CAP**2 * tail
    return mean, square - mean * mean, square


class ModelError(ValueError):
    """A price model's parameters are out of range; the message names the parameter."""


@dataclass(frozen=True, slots=True)
class StepCoefficients:
    """Everything a step needs that depends only on the model and ``dt`` (years).

    Computed once per time step length and cached in the :class:`ModelState`,
    so the hot path does arithmetic only.
    """

    dt: float
    sqrt_dt: float
    drift_dt: float
    half_dt: float
    reverting: bool
    level: float
    decay: float
    ou_scale: float
    clustering: bool
    omega: float
    alpha: float
    beta: float
    no_jump: float
    jump_cdf: tuple[float, ...]
    jump_mean: float
    jump_std: float
    memory: bool
    fast_decay: float
    rise_gain: float
    fall_gain: float
    fast_centre: float
    slow_decay: float
    slow_gain: float
    slow_centre: float
    memory_offset: float

    def jump_count(self, u: float) -> int:
        """The Poisson jump count for a uniform ``u`` ≥ ``no_jump`` (inverse CDF)."""
        cdf = self.jump_cdf
        n = 1
        while n < len(cdf) and u >= cdf[n]:
            n += 1
        return n


@dataclass(slots=True)
class ModelState:
    """One symbol's process state: log price, variance, cached coefficients.

    ``variance`` is the GARCH component; ``fast`` and ``slow`` are the
    long-memory log-variance components (0 when off). :attr:`total_variance`
    is the yearly variance the next step diffuses at (before any season).
    """

    log_price: float
    variance: float
    fast: float = 0.0
    slow: float = 0.0
    coefficients: StepCoefficients | None = None

    @property
    def total_variance(self) -> float:
        """The variance of the next step: the GARCH part times the memory multiplier."""
        c = self.coefficients
        if c is None or not c.memory:
            return self.variance
        return self.variance * math.exp(self.fast + self.slow - c.memory_offset)

    @property
    def price(self) -> float:
        """The current price."""
        return math.exp(self.log_price)


@dataclass(frozen=True, slots=True)
class PriceModel:
    """Parameters of one symbol's price process (yearly units unless named otherwise).

    Components switch on by their parameters: jumps when ``jump_intensity`` >
    0, volatility clustering when ``vol_clustering`` > 0, mean reversion when
    ``reversion_half_life_hours`` > 0, long memory when ``vol_fast_dispersion``
    or ``vol_slow_dispersion`` > 0 (standard deviations of log variance), fat
    tails when ``tail_dof`` > 0 (ν ≥ 5; 0 = Gaussian), correlation with the
    market factor when
    ``factor_loading`` ≠ 0. The rhythm fields (``rhythm_amplitude``,
    ``rhythm_peak_hour``, ``weekend_activity``) describe the symbol's
    :class:`~mdactors.domain.rhythm.Rhythm`, applied by whoever steps the
    model on a clock (the actor, backfills).
    """

    volatility: float
    drift: float = 0.0
    tail_dof: float = 0.0
    factor_loading: float = 0.0
    jump_intensity: float = 0.0
    jump_mean: float = 0.0
    jump_std: float = 0.0
    vol_clustering: float = 0.0
    vol_half_life_hours: float = 6.0
    vol_fast_dispersion: float = 0.0
    vol_fast_half_life_hours: float = 0.5
    vol_fast_asymmetry: float = 0.0
    vol_slow_dispersion: float = 0.0
    vol_slow_half_life_hours: float = 336.0
    reversion_half_life_hours: float = 0.0
    mean_level: float = 1.0
    rhythm_amplitude: float = 0.0
    rhythm_peak_hour: float = 15.0
    weekend_activity: float = 1.0

    def __post_init__(self) -> None:
        checks = (
            ("volatility", self.volatility >= 0.0, "must be ≥ 0"),
            ("tail_dof", self.tail_dof == 0.0 or self.tail_dof >= 5.0,
             "must be 0 (Gaussian) or ≥ 5 (a finite fourth moment)"),
            ("factor_loading", -0.99 <= self.factor_loading <= 0.99, "must be within -0.99..0.99"),
            ("jump_intensity", self.jump_intensity >= 0.0, "must be ≥ 0 jumps per year"),
            ("jump_std", self.jump_std >= 0.0, "must be ≥ 0"),
            ("vol_clustering", 0.0 <= self.vol_clustering < 1.0,
             "must be within 0..1 (1 = infinite kurtosis)"),
            ("vol_half_life_hours", self.vol_half_life_hours > 0.0, "must be > 0"),
            ("vol_fast_dispersion", 0.0 <= self.vol_fast_dispersion <= 2.0,
             "must be within 0..2 (a standard deviation of log variance)"),
            ("vol_fast_half_life_hours", self.vol_fast_half_life_hours > 0.0, "must be > 0"),
            ("vol_fast_asymmetry", 0.0 <= self.vol_fast_asymmetry <= 1.0,
             "must be within 0..1 (0 = falls and rises move volatility alike)"),
            ("vol_slow_dispersion", 0.0 <= self.vol_slow_dispersion <= 2.0,
             "must be within 0..2 (a standard deviation of log variance)"),
            ("vol_slow_half_life_hours", self.vol_slow_half_life_hours > 0.0, "must be > 0"),
            ("reversion_half_life_hours", self.reversion_half_life_hours >= 0.0,
             "must be ≥ 0 (0 = no mean reversion)"),
            ("mean_level", self.mean_level > 0.0, "must be > 0"),
            ("rhythm_amplitude", 0.0 <= self.rhythm_amplitude <= 0.9,
             "must be within 0..0.9 (0 = no daily rhythm)"),
            ("rhythm_peak_hour", 0.0 <= self.rhythm_peak_hour < 24.0, "must be an hour 0..24 UTC"),
            ("weekend_activity", 0.1 <= self.weekend_activity <= 2.0,
             "must be within 0.1..2 (1 = weekends like weekdays)"),
        )  # fmt: skip
        for name, ok, message in checks:
            if not ok or not math.isfinite(getattr(self, name)):
                raise ModelError(f"{name} {message}, got {getattr(self, name)!r}")
        if self.diffusion_variance <= 0.0 and self.volatility > 0.0:
            raise ModelError(
                "jumps carry all of the volatility: lower jump_intensity or jump_std, "
                "or raise volatility"
            )

    @property
    def kind(self) -> str:
        """The dominant feature: ``ou``, ``garch``, ``merton`` or ``gbm``."""
        if self.reversion_half_life_hours:
            return "ou"
        if self.vol_clustering or self.vol_fast_dispersion or self.vol_slow_dispersion:
            return "garch"
        return "merton" if self.jump_intensity else "gbm"

    @property
    def diffusion_variance(self) -> float:
        """θ: the long-run yearly variance left for the diffusion once jumps take theirs."""
        if self.reversion_half_life_hours:
            return self.volatility**2
        jumps = self.jump_intensity * (self.jump_mean**2 + self.jump_std**2)
        return self.volatility**2 - jumps

    @property
    def tail_mix(self) -> TailMix:
        """How this model's innovations are drawn."""
        return TailMix(self.tail_dof, self.factor_loading, self.jump_intensity > 0.0)

    @property
    def rhythm(self) -> Rhythm:
        """The symbol's activity by hour of the UTC week."""
        return Rhythm(self.rhythm_amplitude, self.rhythm_peak_hour, self.weekend_activity)

    def typical_move(self) -> float:
        """About E|r| / (σ√Δt): the mean size of a step's log move in units of its long-run σ.

        ``E|e|`` shrunk by the dispersion of the variance (``E√(h/θ)``, taking
        log variance as Gaussian): what volume models divide by so that an
        ordinary step makes ordinary volume.
        """
        mean, _ = self.abs_moments()
        offset = self._memory(1.0 / SECONDS_PER_YEAR)[4]
        clustering = self.vol_clustering / (1.0 - self.vol_clustering)
        return mean * math.exp(-offset / 4.0 - math.log1p(clustering) / 8.0)

    def fourth_moment(self) -> float:
        """E[e⁴] of one standardised innovation (3 when Gaussian)."""
        nu = self.tail_dof
        tail = 3.0 * (nu - 2.0) / (nu - 4.0) if nu else 3.0
        rho2 = self.factor_loading**2
        return rho2 * rho2 * tail + 6.0 * rho2 * (1.0 - rho2) + (1.0 - rho2) ** 2 * tail

    def initial_state(self, price: float) -> ModelState:
        """The state at ``price`` with the variance at its long-run level."""
        return ModelState(math.log(price), self.diffusion_variance)

    def abs_moments(self) -> tuple[float, float]:
        """``(E|e|, sd|e|)`` of one standardised innovation (Student-t or Gaussian)."""
        nu = self.tail_dof
        if nu:
            mean = math.sqrt((nu - 2.0) / math.pi) * math.exp(
                math.lgamma((nu - 1.0) / 2.0) - math.lgamma(nu / 2.0)
            )
        else:
            mean = math.sqrt(2.0 / math.pi)
        return mean, math.sqrt(1.0 - mean * mean)

    def _memory(self, dt_years: float) -> tuple[float, float, float, float, float]:
        """``(φ_f, g_f, φ_s, g_s, ½V)`` of the long-memory components for steps of ``dt_years``."""
        _, abs_var, square = clipped_moments(self.tail_dof)
        tilt = self.vol_fast_asymmetry
        # With ē = clip(e): Var(|ē| − ℓē) = Var|ē| + ℓ²E[ē²], Cov(|ē| − ℓē, |ē|) = Var|ē|
        # (ē is symmetric).
        fast_var, cross_var, slow_var = abs_var + tilt * tilt * square, abs_var, abs_var
        fast_decay, slow_decay = (
            math.exp(-math.log(2.0) * HOURS_PER_YEAR / half_life * dt_years)
            for half_life in (self.vol_fast_half_life_hours, self.vol_slow_half_life_hours)
        )
        fast_gain = self.vol_fast_dispersion * math.sqrt((1.0 - fast_decay**2) / fast_var)
        slow_gain = self.vol_slow_dispersion * math.sqrt((1.0 - slow_decay**2) / slow_var)
        # Var(f + s) = Σ_jk g_j g_k Cov_jk / (1 − φ_j φ_k): both follow the same e.
        variance = (
            fast_gain * fast_gain * fast_var / (1.0 - fast_decay * fast_decay)
            + 2.0 * fast_gain * slow_gain * cross_var / (1.0 - fast_decay * slow_decay)
            + slow_gain * slow_gain * slow_var / (1.0 - slow_decay * slow_decay)
        )
        return fast_decay, fast_gain, slow_decay, slow_gain, 0.5 * variance

    def coefficients(self, dt_years: float) -> StepCoefficients:
        """The per-step constants for steps of ``dt_years``."""
        theta = self.diffusion_variance
        lam = self.jump_intensity
        compensator = lam * (math.exp(self.jump_mean + 0.5 * self.jump_std**2) - 1.0)
        reverting = self.reversion_half_life_hours > 0.0
        decay, ou_scale = 1.0, 0.0
        if reverting:
            kappa = math.log(2.0) * HOURS_PER_YEAR / self.reversion_half_life_hours
            decay = math.exp(-kappa * dt_years)
            ou_scale = math.sqrt((1.0 - decay * decay) / (2.0 * kappa))
        kappa_v = math.log(2.0) * HOURS_PER_YEAR / self.vol_half_life_hours
        phi = math.exp(-kappa_v * dt_years)
        xi2 = self.vol_clustering * 2.0 * kappa_v
        alpha = min(math.sqrt(xi2 * dt_years / (self.fourth_moment() - 1.0)), phi)
        cdf: list[float] = []
        if lam:
            p, total, mean = 0.0, 0.0, lam * dt_years
            for n in range(_MAX_JUMPS):
                p = math.exp(-mean) if n == 0 else p * mean / n
                total += p
                cdf.append(total)
                if 1.0 - total < 1e-16:
                    break
        fast_decay, fast_gain, slow_decay, slow_gain, offset = self._memory(dt_years)
        abs_mean = clipped_moments(self.tail_dof)[0]
        return StepCoefficients(
            dt=dt_years,
            sqrt_dt=math.sqrt(dt_years),
            drift_dt=(self.drift - compensator) * dt_years,
            half_dt=0.5 * dt_years,
            reverting=reverting,
            level=math.log(self.mean_level),
            decay=decay,
            ou_scale=ou_scale,
            clustering=self.vol_clustering > 0.0,
            omega=theta * (1.0 - phi),
            alpha=alpha,
            beta=phi - alpha,
            no_jump=cdf[0] if cdf else 1.0,
            jump_cdf=tuple(cdf),
            jump_mean=self.jump_mean,
            jump_std=self.jump_std,
            memory=bool(fast_gain or slow_gain),
            fast_decay=fast_decay,
            rise_gain=fast_gain * (1.0 - self.vol_fast_asymmetry),
            fall_gain=fast_gain * (1.0 + self.vol_fast_asymmetry),
            fast_centre=fast_gain * abs_mean,
            slow_decay=slow_decay,
            slow_gain=slow_gain,
            slow_centre=slow_gain * abs_mean,
            memory_offset=offset,
        )

    def step(
        self,
        state: ModelState,
        dt_years: float,
        e: float,
        u: float,
        j: float,
        season: float = 1.0,
    ) -> float:
        """Advance ``state`` by ``dt_years`` and return the new price.

        ``e`` is the unit-variance innovation, ``u`` (uniform) and ``j``
        (standard normal) drive jumps; ``season`` scales this step's standard
        deviation (the intraday rhythm; 1 = none). Plain floats only: this is
        the hot path.
        """
        c = state.coefficients
        if c is None or c.dt != dt_years:
            c = state.coefficients = self.coefficients(dt_years)
        garch = h = state.variance
        if c.memory:
            fast, slow = state.fast, state.slow
            h = garch * _exp(fast + slow - c.memory_offset)
            # |ē| − ℓē is (1 − ℓ)|ē| for a rise and (1 + ℓ)|ē| for a fall.
            if e >= 0.0:
                a = e if e < 3.0 else 3.0
                state.fast = c.fast_decay * fast + (c.rise_gain * a - c.fast_centre)
            else:
                a = -e if e > -3.0 else 3.0
                state.fast = c.fast_decay * fast + (c.fall_gain * a - c.fast_centre)
            state.slow = c.slow_decay * slow + (c.slow_gain * a - c.slow_centre)
        if season != 1.0:
            h = h * season * season
        if c.reverting:
            dx = c.ou_scale * _sqrt(h) * e
        else:
            dx = c.drift_dt - c.half_dt * h + c.sqrt_dt * _sqrt(h) * e
        if u >= c.no_jump:
            n = c.jump_count(u)
            dx += n * c.jump_mean + _sqrt(n) * c.jump_std * j
        if c.reverting:
            x = c.level + (state.log_price - c.level) * c.decay + dx
        else:
            x = state.log_price + dx
        if c.clustering:
            state.variance = c.omega + (c.alpha * e * e + c.beta) * garch
        state.log_price = x
        return _exp(x)

    def simulate(
        self,
        state: ModelState,
        dt_years: float,
        e: np.ndarray,
        u: np.ndarray,
        j: np.ndarray,
        season: np.ndarray | None = None,
    ) -> np.ndarray:
        """The vectorised twin of :meth:`step`: log prices after each of ``len(e)`` steps.

        Elementwise terms are numpy; the first-order recursions (GARCH and
        long-memory variance, OU level) run as tight float loops in the same
        order as :meth:`step`, with :func:`math.exp`. ``season`` (``None`` =
        all 1) scales each step's standard deviation. ``state`` ends where the
        last step left it.
        """
        c = self.coefficients(dt_years)
        count = len(e)
        if c.memory:
            h = self._memory_variances(state, c, e)
        elif c.clustering:
            variances: list[float] = []
            keep, omega, beta, level = variances.append, c.omega, c.beta, state.variance
            for a in (c.alpha * e * e).tolist():
                keep(level)
                level = omega + (a + beta) * level
            h = np.array(variances)
            state.variance = level
        else:
            h = np.full(count, state.variance)
        if season is not None:
            h = h * season * season
        sigma = np.sqrt(h)
        if c.reverting:
            dx = c.ou_scale * sigma * e
        else:
            dx = c.drift_dt - c.half_dt * h + c.sqrt_dt * sigma * e
        jumped = u >= c.no_jump
        if jumped.any():
            n = np.searchsorted(np.asarray(c.jump_cdf), u[jumped], side="right")
            dx[jumped] += n * c.jump_mean + np.sqrt(n) * c.jump_std * j[jumped]
        if c.reverting:
            levels: list[float] = []
            keep, mean, decay, value = levels.append, c.level, c.decay, state.log_price
            for increment in dx.tolist():
                value = mean + (value - mean) * decay + increment
                keep(value)
            x = np.array(levels)
        else:
            x = np.cumsum(np.concatenate(([state.log_price], dx)))[1:]
        if count:
            state.log_price = float(x[-1])
        state.coefficients = c
        return x

    @staticmethod
    def _memory_variances(state: ModelState, c: StepCoefficients, e: np.ndarray) -> np.ndarray:
        """Each step's variance with long memory on, advancing ``state`` as :meth:`step` does."""
        variances: list[float] = []
        keep, exp = variances.append, _exp
        omega, alpha, beta, clustering = c.omega, c.alpha, c.beta, c.clustering
        fd, rise, fall, fc, sd, sg, sc, offset = (
            c.fast_decay, c.rise_gain, c.fall_gain, c.fast_centre,
            c.slow_decay, c.slow_gain, c.slow_centre, c.memory_offset,
        )  # fmt: skip
        garch, fast, slow = state.variance, state.fast, state.slow
        for value in e.tolist():
            keep(garch * exp(fast + slow - offset))
            if value >= 0.0:
                a = value if value < 3.0 else 3.0
                fast = fd * fast + (rise * a - fc)
            else:
                a = -value if value > -3.0 else 3.0
                fast = fd * fast + (fall * a - fc)
            slow = sd * slow + (sg * a - sc)
            if clustering:
                garch = omega + (alpha * value * value + beta) * garch
        state.variance, state.fast, state.slow = garch, fast, slow
        return np.array(variances)

    def path(
        self,
        start_price: float,
        dt_years: float,
        count: int,
        rng: np.random.Generator,
        factor: MarketFactor | None = None,
        start_step: int = 0,
        season: np.ndarray | None = None,
    ) -> np.ndarray:
        """``count + 1`` prices from ``start_price``, drawn as a live actor would.

        With the same generator, factor, step index and ``season`` (per step,
        ``None`` = no rhythm), the path equals what :class:`LiveProcess`
        produces tick by tick.
        """
        inputs = draw(self.tail_mix, rng, count)
        factors = factor.draws(start_step, count) if factor and self.factor_loading else None
        state = self.initial_state(start_price)
        log_prices = self.simulate(
            state, dt_years, inputs.combined(factors), inputs.u, inputs.j, season
        )
        return np.exp(np.concatenate(([math.log(start_price)], log_prices)))


def GBM(volatility: float, drift: float = 0.0) -> PriceModel:
    """Geometric Brownian motion ``dS/S = μ dt + σ dW`` with Gaussian shocks."""
    return PriceModel(volatility=volatility, drift=drift)


class LiveProcess:
    """A symbol's process advanced one tick at a time, as its actor needs it.

    Every :data:`BATCH` ticks it draws the symbol's inputs (:func:`draw_batch`)
    and the market factor's block for those steps, and mixes them in numpy;
    a tick then reads three floats and runs :meth:`PriceModel.step`. The last
    innovation stays in :attr:`shock` (the actor widens spreads on big moves).
    """

    __slots__ = (
        "_e",
        "_factor",
        "_i",
        "_j",
        "_mix",
        "_rng",
        "_u",
        "model",
        "shock",
        "state",
        "steps",
    )

    def __init__(
        self,
        model: PriceModel,
        price: float,
        rng: np.random.Generator,
        factor: MarketFactor | None = None,
    ) -> None:
        self.model = model
        self.state = model.initial_state(price)
        self.steps = 0
        self.shock = 0.0
        self._mix = model.tail_mix
        self._rng = rng
        self._factor = factor if model.factor_loading else None
        self._e: list[float] = []
        self._u: list[float] = []
        self._j: list[float] = []
        self._i = BATCH

    def _refill(self) -> None:
        batch = draw_batch(self._mix, self._rng, BATCH)
        factor = self._factor
        factors = factor.block(self.steps // BATCH) if factor is not None else None
        self._e = batch.combined(factors).tolist()
        self._u, self._j = batch.u.tolist(), batch.j.tolist()

    def advance(
        self, dt_years: float, volatility_factor: float = 1.0, season: float = 1.0
    ) -> float:
        """Step ``dt_years`` ahead and return the new price.

        ``volatility_factor`` scales this step's innovation (the configuration
        service's volatility factor); 1.0 is the model as calibrated.
        ``season`` is the intraday rhythm's multiplier of this step's σ.
        """
        i = self._i
        if i >= BATCH:
            self._refill()
            i = 0
        e = self.shock = self._e[i] * volatility_factor
        self._i = i + 1
        self.steps += 1
        return self.model.step(self.state, dt_years, e, self._u[i], self._j[i], season)
