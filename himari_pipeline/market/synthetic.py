"""The built-in synthetic market: BTC-like bars with regimes, a planted positive control and a null twin.

Mechanism (all rates are per hour of wall time, so ``5m`` and ``1h`` bars show the same market):

* Regimes follow a continuous-time Markov chain over calm, trend-up, trend-down, high-vol chop and
  crash (``REGIME_NAMES``); it is simulated in wall time and sampled at each bar's open, so every
  timeframe with the same seed sees the same regime path. Bar ``t``'s regime is ``true_regime[t]``.
* Noise: ``e[t] = sigma_regime[t] * sqrt(h[t]) * z[t]`` with ``z`` a unit-variance Student-t (4 dof,
  clipped at +-12), ``h`` a unit-mean GARCH(1,1) recursion (volatility clustering), and
  ``sigma_regime`` scaled by ``sqrt(bar length)``. ``e`` is clipped symmetrically at +-35%.
* Crashes: entering the crash regime adds a jump ``J ~ U(-10%, -4%)`` to that bar's return. The jump's
  expected value is compensated by a drift ``c[s[t]] = -P(crash next bar | s[t]) * E[J]``, so the crash
  timing is not predictable on average.
* Planted component (``variant="planted"`` only): ``signal[t] = +d`` when bar ``t`` is in trend-up,
  ``-d`` in trend-down, else 0, with ``d = PLANTED_DRIFT_PER_HOUR * bar hours``; it is added to the
  NEXT bar's return. The regime itself is not observable, but trends last ~1 week, so an observer of
  past bars detects them from the trailing mean return (trend persistence).

Returns are simple returns ``r[t] = close[t]/close[t-1] - 1 = c[s[t-1]] + signal[t-1] + e[t] + jump[t]``.
Given the regime and the past, ``E[r[t+1]] = signal[t]``; in the ``null`` variant it is 0, so returns
are a martingale difference given the past (volatility is predictable, the mean is not). Both
variants share the regime path, noise, jumps, ranges and volumes; only ``signal`` differs.

Measured with ``python -m himari_pipeline.market.synthetic`` (default 1h data, 2020-2025, 52,608 bars):
:func:`reference_rule_positions` (long/short/flat on the z-score of the trailing 120-hour mean return,
with hysteresis; it knows the mechanism, not the regimes) net of 0.15% per unit of position change
(a flip costs 0.30%), annualized with 8,760 bars a year:

* seed 7 (default): planted Sharpe 1.92 (gross 2.09, ~37 position changes a year), null -0.74
  (gross -0.56); corr(signal[t], r[t+1]) = 0.066; corr(trailing mean[t], r[t+1]) = 0.022 planted,
  -0.006 null.
* seeds 0-9: planted Sharpe 1.9 to 3.7 (mean 2.81), null -0.99 to 0.62 (mean -0.20);
  corr(signal, next return) 0.061 to 0.079 (mean 0.068).
* seed 7 on 5m bars (631,296 bars, generated in 0.3-2 s): planted 2.22, null -0.19 (the per-bar
  corr(signal, r[t+1]) is 0.018 there: the same drift per hour drowns in more noise per bar).

Seed 7 null, 1h: annualized volatility 58%, excess kurtosis 32, lag-1 autocorrelation of |r| 0.25.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numba
import numpy as np
import pandas as pd

from himari_pipeline.market.bars import BAR_COLUMNS, bars_per_year, timeframe_delta, validate_name

CALM, TREND_UP, TREND_DOWN, CHOP, CRASH = 0, 1, 2, 3, 4
REGIME_NAMES: tuple[str, ...] = ("calm", "trend_up", "trend_down", "chop", "crash")

#: Per-hour volatility of each regime (annualized: calm ~36%, trends ~51-58%, chop ~94%, crash ~187%).
REGIME_VOL_1H = np.array([0.0038, 0.0055, 0.0062, 0.0100, 0.0200])
#: Mean regime durations in hours.
REGIME_MEAN_HOURS = np.array([240.0, 200.0, 180.0, 96.0, 30.0])
#: Where the chain goes when it leaves a regime (rows sum to 1, zero diagonal).
REGIME_JUMP = np.array(
    [
        [0.00, 0.35, 0.30, 0.30, 0.05],
        [0.50, 0.00, 0.10, 0.30, 0.10],
        [0.40, 0.10, 0.00, 0.35, 0.15],
        [0.45, 0.20, 0.20, 0.00, 0.15],
        [0.20, 0.00, 0.20, 0.60, 0.00],
    ]
)
#: Log-volume offset of each regime (volume is higher in chop and crashes).
REGIME_LOG_VOLUME = np.array([0.0, 0.15, 0.25, 0.55, 1.1])
#: Crash entry jump, simple return, uniform on this interval.
CRASH_JUMP_RANGE = (-0.10, -0.04)
#: Planted drift per hour in the trend regimes (+ in trend-up, - in trend-down).
PLANTED_DRIFT_PER_HOUR = 0.0007
#: GARCH(1,1) parameters per hour (persistence alpha + beta = 0.98).
GARCH_ALPHA_1H, GARCH_BETA_1H = 0.06, 0.92
STUDENT_T_DOF = 4.0
START_PRICE = 7000.0
#: Mean volume of one calm hour (in units of the asset).
BASE_VOLUME_1H = 1500.0


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. ``end`` is inclusive: the last bar opens on ``end`` at the last slot of the day."""

    seed: int = 7
    variant: Literal["planted", "null"] = "planted"
    start: str = "2020-01-01"
    end: str = "2025-12-31"
    timeframe: str = "1h"
    symbol: str | None = None

    @property
    def resolved_symbol(self) -> str:
        return self.symbol or ("SYNTH-PLANTED" if self.variant == "planted" else "SYNTH-NULL")


@dataclass
class SyntheticMarket:
    """Generated bars plus the ground truth the pipeline never sees."""

    config: SyntheticConfig
    bars: pd.DataFrame
    #: Regime of each bar (int8, see ``REGIME_NAMES``).
    true_regime: np.ndarray
    #: ``signal[t]``: the planted expected component of ``r[t+1]`` (zeros for the null variant).
    signal: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def symbol(self) -> str:
        return self.config.resolved_symbol


def _expm(a: np.ndarray) -> np.ndarray:
    """Matrix exponential by scaling and squaring with a Taylor series (small, well-conditioned inputs)."""
    norm = float(np.abs(a).sum(axis=1).max())
    squarings = max(0, int(np.ceil(np.log2(norm / 0.25))) if norm > 0.25 else 0)
    b = a / 2.0**squarings
    out = np.eye(len(a))
    term = np.eye(len(a))
    for k in range(1, 20):
        term = term @ b / k
        out = out + term
    for _ in range(squarings):
        out = out @ out
    return out


def regime_generator() -> np.ndarray:
    """Generator matrix ``Q`` (per hour) of the regime chain."""
    rates = 1.0 / REGIME_MEAN_HOURS
    q = REGIME_JUMP * rates[:, None]
    q[np.diag_indices_from(q)] = -rates
    return q


def regime_transition_matrix(timeframe: str) -> np.ndarray:
    """One-bar transition matrix ``P = expm(Q * bar_hours)`` of the sampled regime chain."""
    hours = timeframe_delta(timeframe).total_seconds() / 3600.0
    p = _expm(regime_generator() * hours)
    return p / p.sum(axis=1, keepdims=True)


def _bar_open_times(cfg: SyntheticConfig) -> pd.DatetimeIndex:
    step = timeframe_delta(cfg.timeframe)
    start = pd.Timestamp(cfg.start, tz="UTC")
    stop = pd.Timestamp(cfg.end, tz="UTC").normalize() + pd.Timedelta(days=1)
    if stop <= start:
        raise ValueError(f"empty synthetic range: start {cfg.start!r} is not before end {cfg.end!r}")
    return pd.date_range(start, stop - step, freq=step)


def _simulate_regimes(rng: np.random.Generator, hours: np.ndarray) -> np.ndarray:
    """Sample the continuous-time regime chain at ``hours`` (hours since start, increasing)."""
    horizon = float(hours[-1]) + 1.0
    jump_cdf = np.cumsum(REGIME_JUMP, axis=1)
    state = CALM
    t = 0.0
    starts, states = [0.0], [state]
    # Segments are few (one every ~5 days), a Python loop is fine.
    while True:
        t += rng.exponential(REGIME_MEAN_HOURS[state])
        if t >= horizon:
            break
        state = int(np.searchsorted(jump_cdf[state], rng.random(), side="right"))
        state = min(state, len(REGIME_NAMES) - 1)
        starts.append(t)
        states.append(state)
    idx = np.searchsorted(np.asarray(starts), hours, side="right") - 1
    return np.asarray(states, dtype=np.int8)[idx]


@numba.njit(cache=True)
def _garch_variance(z: np.ndarray, alpha: float, beta: float) -> np.ndarray:  # pragma: no cover - jit
    """Unit-mean GARCH(1,1) variance multiplier: ``h[t] = (1-a-b) + a*h[t-1]*z[t-1]^2 + b*h[t-1]``."""
    n = z.shape[0]
    h = np.empty(n)
    omega = 1.0 - alpha - beta
    prev = 1.0
    for t in range(n):
        h[t] = prev
        prev = omega + alpha * prev * z[t] * z[t] + beta * prev
    return h


def _garch_params(bar_hours: float) -> tuple[float, float]:
    """Per-bar GARCH parameters: same wall-time persistence as 1h, shock weight proportional to bar length."""
    persistence = (GARCH_ALPHA_1H + GARCH_BETA_1H) ** bar_hours
    alpha = min(GARCH_ALPHA_1H * bar_hours, 0.5 * persistence)
    return alpha, persistence - alpha


def generate_synthetic_market(cfg: SyntheticConfig | None = None) -> SyntheticMarket:
    """Generate the synthetic market for ``cfg`` (deterministic by ``cfg.seed``)."""
    cfg = cfg or SyntheticConfig()
    if cfg.variant not in ("planted", "null"):
        raise ValueError(f"unknown synthetic variant {cfg.variant!r}; expected 'planted' or 'null'")
    validate_name("symbol", cfg.resolved_symbol)
    step = timeframe_delta(cfg.timeframe)
    bar_hours = step.total_seconds() / 3600.0
    opens = _bar_open_times(cfg)
    n = len(opens)
    hours = (opens - opens[0]).total_seconds().to_numpy() / 3600.0

    ss = np.random.SeedSequence(cfg.seed)
    rng_regime, rng_z, rng_jump, rng_range, rng_volume = (np.random.default_rng(s) for s in ss.spawn(5))

    regime = _simulate_regimes(rng_regime, hours)

    # Noise: standardized, clipped Student-t scaled by regime vol and GARCH clustering.
    dof = STUDENT_T_DOF
    z = np.clip(rng_z.standard_t(dof, size=n) * np.sqrt((dof - 2.0) / dof), -12.0, 12.0)
    alpha, beta = _garch_params(bar_hours)
    h = _garch_variance(z, alpha, beta)
    sigma = REGIME_VOL_1H[regime] * np.sqrt(bar_hours) * np.sqrt(h)
    noise = np.clip(sigma * z, -0.35, 0.35)

    # Crash jumps on entry, compensated by a regime-dependent drift on the previous bar.
    jump_size = rng_jump.uniform(*CRASH_JUMP_RANGE, size=n)
    entering = np.zeros(n, dtype=bool)
    entering[1:] = (regime[1:] == CRASH) & (regime[:-1] != CRASH)
    jump = np.where(entering, jump_size, 0.0)
    p_bar = regime_transition_matrix(cfg.timeframe)
    compensation = -p_bar[:, CRASH] * float(np.mean(CRASH_JUMP_RANGE))
    compensation[CRASH] = 0.0

    drift = PLANTED_DRIFT_PER_HOUR * bar_hours
    if cfg.variant == "planted":
        signal = np.where(regime == TREND_UP, drift, np.where(regime == TREND_DOWN, -drift, 0.0))
    else:
        signal = np.zeros(n)

    ret = noise + jump
    ret[1:] += compensation[regime[:-1]] + signal[:-1]
    ret[0] = noise[0]

    close = START_PRICE * np.cumprod(1.0 + ret)
    open_ = np.empty(n)
    open_[0] = START_PRICE
    open_[1:] = close[:-1]

    # Intrabar range: half-normal excursions beyond the body, proportional to the bar's volatility.
    ext_hi = np.abs(rng_range.standard_normal(n)) * sigma * 0.6
    ext_lo = np.abs(rng_range.standard_normal(n)) * sigma * 0.6
    high = np.maximum(open_, close) * np.exp(ext_hi)
    low = np.minimum(open_, close) * np.exp(-ext_lo)

    # Volume: lognormal, higher in volatile regimes and with the size of the bar's move.
    abs_move = np.abs(ret) / (REGIME_VOL_1H[regime] * np.sqrt(bar_hours))
    log_vol = (
        np.log(BASE_VOLUME_1H * bar_hours)
        + REGIME_LOG_VOLUME[regime]
        + 0.35 * np.minimum(abs_move, 10.0)
        + 0.35 * rng_volume.standard_normal(n)
    )
    volume = np.exp(log_vol)

    bars = pd.DataFrame(
        {
            "timestamp": (opens + step).astype("datetime64[ns, UTC]"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
        },
        columns=list(BAR_COLUMNS),
    )
    params = {
        "variant": cfg.variant,
        "seed": cfg.seed,
        "timeframe": cfg.timeframe,
        "planted_drift_per_bar": drift if cfg.variant == "planted" else 0.0,
        "garch_alpha": alpha,
        "garch_beta": beta,
        "student_t_dof": dof,
    }
    return SyntheticMarket(config=cfg, bars=bars, true_regime=regime, signal=signal, params=params)


def generate_synthetic_bars(cfg: SyntheticConfig | None = None) -> pd.DataFrame:
    """Only the bars (canonical schema) of :func:`generate_synthetic_market`."""
    return generate_synthetic_market(cfg).bars


# --- the reference rule that knows the mechanism (positive/negative control measurement) ---------------


def reference_rule_positions(
    close: np.ndarray, timeframe: str, window_hours: float = 120.0, enter_z: float = 2.0, exit_z: float = 0.3
) -> np.ndarray:
    """Causal trend rule: ``pos[t]`` in {-1, 0, 1} from bars ``<= t`` only.

    ``m[t]`` = mean of the last ``window`` returns, normalized by its trailing standard error (the
    trailing std of returns over the same window). Enter long/short when ``|m| > enter_z``, go flat
    when the sign reverses or ``|m| < exit_z``. The first ``window`` bars are flat.
    """
    bar_hours = timeframe_delta(timeframe).total_seconds() / 3600.0
    window = max(int(round(window_hours / bar_hours)), 2)
    r = np.zeros(len(close))
    r[1:] = close[1:] / close[:-1] - 1.0
    s = pd.Series(r)
    mean = s.rolling(window).mean().to_numpy()
    std = s.rolling(window).std().to_numpy()
    score = np.where(std > 0, mean / std * np.sqrt(window), 0.0)
    score = np.nan_to_num(score)
    return _hysteresis(score, enter_z, exit_z)


@numba.njit(cache=True)
def _hysteresis(score: np.ndarray, enter: float, exit_: float) -> np.ndarray:  # pragma: no cover - jit
    pos = np.zeros(score.shape[0])
    cur = 0.0
    for t in range(score.shape[0]):
        x = score[t]
        if cur == 0.0:
            if x > enter:
                cur = 1.0
            elif x < -enter:
                cur = -1.0
        elif cur * x < exit_:
            cur = 0.0
            if x > enter:
                cur = 1.0
            elif x < -enter:
                cur = -1.0
        pos[t] = cur
    return pos


def rule_net_returns(close: np.ndarray, positions: np.ndarray, cost: float = 0.0015) -> np.ndarray:
    """Per-bar net returns of holding ``positions[t]`` during bar ``t+1``, cost ``cost * |change|`` at t."""
    r_next = close[1:] / close[:-1] - 1.0
    pos = positions[:-1]
    change = np.abs(np.diff(np.concatenate([[0.0], pos])))
    return pos * r_next - cost * change


def annualized_sharpe(net: np.ndarray, timeframe: str) -> float:
    sd = float(np.std(net, ddof=1))
    return 0.0 if sd == 0 else float(np.mean(net) / sd * np.sqrt(bars_per_year(timeframe)))


def measure_planted_edge(seed: int = 7, timeframe: str = "1h", cost: float = 0.0015, **kwargs) -> dict:
    """Sharpe of :func:`reference_rule_positions` on the planted and null variants (same seed)."""
    out: dict = {"seed": seed, "timeframe": timeframe, "cost": cost}
    for variant in ("planted", "null"):
        m = generate_synthetic_market(
            SyntheticConfig(seed=seed, variant=variant, timeframe=timeframe, **kwargs)
        )
        close = m.bars["close"].to_numpy()
        pos = reference_rule_positions(close, timeframe)
        net = rule_net_returns(close, pos, cost)
        r_next = close[1:] / close[:-1] - 1.0
        out[f"{variant}_sharpe"] = annualized_sharpe(net, timeframe)
        out[f"{variant}_gross_sharpe"] = annualized_sharpe(rule_net_returns(close, pos, 0.0), timeframe)
        out[f"{variant}_changes_per_year"] = float(
            np.abs(np.diff(pos)).sum() / (len(close) / bars_per_year(timeframe))
        )
        window = max(int(round(120.0 * 3600.0 / timeframe_delta(timeframe).total_seconds())), 2)
        trail = pd.Series(np.concatenate([[0.0], r_next])).rolling(window).mean().to_numpy()[:-1]
        ok = ~np.isnan(trail)
        out[f"{variant}_corr_trailing_mean"] = float(np.corrcoef(trail[ok], r_next[ok])[0, 1])
        if variant == "planted":
            out["corr_signal_next_return"] = float(np.corrcoef(m.signal[:-1], r_next)[0, 1])
    return out


if __name__ == "__main__":  # pragma: no cover - measurement entry point
    import json
    import time

    t0 = time.perf_counter()
    generate_synthetic_market(SyntheticConfig(timeframe="5m"))
    print(f"5m generation: {time.perf_counter() - t0:.2f}s")
    for seed in (7, 1, 2, 3, 4):
        print(json.dumps(measure_planted_edge(seed), indent=None))
