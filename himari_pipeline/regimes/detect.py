"""Causal four-regime labels (LOW_VOL, TRENDING, HIGH_VOL, CRISIS) with confidences.

Every input is trailing: at bar ``t`` we use bars ``<= t`` only.

* ``vol``: realized volatility, rolling std of log close returns over ``vol_window_hours``
  (annualized with the data's calendar, for readability only; the percentile is scale-free),
  summed afresh per window (:func:`~himari_pipeline.features.compute.rolling_std`) so that it
  depends on the window's values only and can be continued exactly from a stored tail.
* ``vol_pct``: percentile rank of ``vol[t]`` among the last ``pct_window_days`` of ``vol`` values
  (pandas' ``rolling(w).rank(pct=True)``, ties averaged, exact integer counts:
  :mod:`himari_pipeline.regimes.windows`), valid once ``pct_min_days`` of values exist. No threshold is fitted
  on the full sample.
* ``adx``: ADX from the ``ta`` library (``fillna=False``; its zero-filled warm-up is masked to NaN).
* ``drawdown``: ``close / max(close over the last dd_window_days) - 1`` (<= 0).

Raw conditions, in priority order CRISIS > HIGH_VOL > TRENDING > LOW_VOL:
CRISIS if ``drawdown <= crisis_drawdown`` and ``vol_pct >= high_vol_pct``; HIGH_VOL if
``vol_pct >= high_vol_pct``; TRENDING if ``adx >= adx_trend``; else LOW_VOL.

Hysteresis is a forward state machine: the regime currently held stays while its condition holds
with *exit* thresholds loosened by the margins (``vol_pct_margin``, ``adx_margin``,
``drawdown_margin``), and a new regime is only adopted after the current one has been held
``min_dwell`` bars (entering CRISIS is never delayed).

The state machine can be resumed (:func:`label_regimes` takes and returns the held label and the
bars it has been held), and ADX's Wilder smoothings run through a resumable
:class:`~himari_pipeline.features.compute.EWMRunner`: :mod:`himari_pipeline.incremental` appends
new bars without recomputing history and gets exactly the full computation's rows.

Confidence is ``logistic(d) = 0.5 * (1 + tanh(d / 2))`` of the signed distance ``d`` of the inputs
from the *entry* thresholds that define the held regime, each distance in units of its scale
(``conf_scale_vol_pct``, ``conf_scale_adx``, ``conf_scale_drawdown``), taking the binding (minimum)
one when several conditions define the regime. It is monotone in each distance, 0.5 on a threshold,
above 0.5 deep inside a regime and below 0.5 while the label is only held by hysteresis.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from himari_pipeline.features.compute import EWMRunner, lagged, pad_front, rolling_std, wilder_adx
from himari_pipeline.market.bars import bars_per_year, timeframe_delta
from himari_pipeline.regimes.windows import rolling_pct_rank, rolling_peak
from himari_pipeline.vocabulary import CRISIS, HIGH_VOL, LOW_VOL, REGIMES, TRENDING, WARMUP_ID

REGIME_COLUMNS: tuple[str, ...] = (
    "timestamp",
    "regime_id",
    "regime",
    "confidence",
    "vol",
    "vol_pct",
    "adx",
    "drawdown",
)


@dataclass(frozen=True)
class RegimeParams:
    """Windows (in calendar time, converted with the timeframe), thresholds and hysteresis."""

    vol_window_hours: float = 24.0
    pct_window_days: float = 90.0
    pct_min_days: float = 30.0
    adx_window_hours: float = 14.0
    dd_window_days: float = 30.0
    min_window_bars: int = 14
    high_vol_pct: float = 0.80
    adx_trend: float = 25.0
    crisis_drawdown: float = -0.20
    vol_pct_margin: float = 0.05
    adx_margin: float = 3.0
    drawdown_margin: float = 0.03
    min_dwell: int = 6
    conf_scale_vol_pct: float = 0.10
    conf_scale_adx: float = 5.0
    conf_scale_drawdown: float = 0.05

    def __post_init__(self) -> None:
        if not 0.0 < self.high_vol_pct < 1.0:
            raise ValueError(f"high_vol_pct must be in (0, 1), got {self.high_vol_pct}")
        if self.crisis_drawdown >= 0:
            raise ValueError(f"crisis_drawdown must be negative, got {self.crisis_drawdown}")
        if min(self.vol_pct_margin, self.adx_margin, self.drawdown_margin) < 0:
            raise ValueError("hysteresis margins must be >= 0")
        if self.min_dwell < 1 or self.min_window_bars < 2:
            raise ValueError("min_dwell must be >= 1 and min_window_bars >= 2")
        if self.pct_min_days > self.pct_window_days:
            raise ValueError("pct_min_days must not exceed pct_window_days")
        if min(self.conf_scale_vol_pct, self.conf_scale_adx, self.conf_scale_drawdown) <= 0:
            raise ValueError("confidence scales must be > 0")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RegimeParams:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown RegimeParams keys: {sorted(unknown)}")
        return cls(**d)

    def without_hysteresis(self) -> RegimeParams:
        """Same thresholds, no margins and no dwell (labels follow the raw conditions)."""
        return RegimeParams(
            **{
                **asdict(self),
                "vol_pct_margin": 0.0,
                "adx_margin": 0.0,
                "drawdown_margin": 0.0,
                "min_dwell": 1,
            }
        )

    def window_bars(self, timeframe: str) -> dict[str, int]:
        """The windows in bars for ``timeframe`` (at least ``min_window_bars`` each)."""
        hours = timeframe_delta(timeframe).total_seconds() / 3600.0

        def bars(h: float) -> int:
            return max(self.min_window_bars, int(round(h / hours)))

        return {
            "vol": bars(self.vol_window_hours),
            "pct": bars(self.pct_window_days * 24.0),
            "pct_min": bars(self.pct_min_days * 24.0),
            "adx": bars(self.adx_window_hours),
            "dd": bars(self.dd_window_days * 24.0),
        }


def indicator_arrays(
    close: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    timeframe: str,
    params: RegimeParams,
    ewm: EWMRunner,
    first: int = 0,
    vol_before: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """``vol``, ``vol_pct``, ``adx``, ``drawdown`` along the last axis of the bar arrays.

    A 2-D input is a stack of bar windows, each computed on its own. ``vol_pct`` and ``drawdown``
    are only computed at positions ``>= first`` (NaN before; 0 computes all), ``vol`` where they
    read it.
    ``vol_before`` (``(..., pct - 1)``), when given, are the ``vol`` values of the bars before the
    last position, as computed for those bars' own rows: ``vol_pct`` at the last position then
    ranks among them, and the window needs only the bars of the shorter windows (the every-row
    check passes them; each of those values is checked at its own row).
    """
    w = params.window_bars(timeframe)
    close = np.asarray(close, dtype=np.float64)
    vol_from = first if vol_before is not None else max(first - w["pct"] + 1, 0)  # what the ranks read
    lo = max(vol_from - w["vol"], 0)  # the bars those vol values read (a suffix: less work per window)
    log_close = np.log(close[..., lo:])
    part = rolling_std(log_close - lagged(log_close, 1), w["vol"], first=vol_from - lo)
    vol = pad_front(part * np.sqrt(bars_per_year(timeframe)), close.shape[-1])
    if vol_before is None:
        vol_pct = rolling_pct_rank(vol, w["pct"], w["pct_min"], first)
    else:
        joined = np.concatenate([vol_before, vol[..., -1:]], axis=-1)
        vol_pct = np.full(vol.shape, np.nan)
        vol_pct[..., -1] = rolling_pct_rank(joined, w["pct"], w["pct_min"], joined.shape[-1] - 1)[..., -1]
    drawdown = close / rolling_peak(close, w["dd"], 1, first) - 1.0
    s = max(ewm.start - 1, 0)  # ADX's EWMs run from `start`; their inputs read one bar before
    h, lw = (np.asarray(x, dtype=np.float64)[..., s:] for x in (high, low))
    adx = pad_front(wilder_adx(h, lw, close[..., s:], w["adx"], ewm.shifted(s))[0], close.shape[-1])
    return {"vol": vol, "vol_pct": vol_pct, "adx": adx, "drawdown": drawdown}


def compute_indicators(
    bars: pd.DataFrame, timeframe: str, params: RegimeParams = RegimeParams()
) -> pd.DataFrame:
    """The causal diagnostics ``vol``, ``vol_pct``, ``adx``, ``drawdown`` (NaN while warming up)."""
    return compute_indicators_resumable(bars, timeframe, params)[0]


def compute_indicators_resumable(
    bars: pd.DataFrame,
    timeframe: str,
    params: RegimeParams = RegimeParams(),
    ewm_states: dict[str, list[float]] | None = None,
    start: int = 0,
    snapshot: int | None = None,
) -> tuple[pd.DataFrame, dict[str, list[float]]]:
    """:func:`compute_indicators` with ADX's EWM states exposed (see ``EWMRunner``).

    With the defaults it is exactly :func:`compute_indicators`. Resumed on a slice, rows before
    ``start + regime_lookback(...)`` are incomplete; callers drop them.
    """
    ewm = EWMRunner(ewm_states, start, snapshot)
    h, low, c = (bars[k].to_numpy(dtype=np.float64) for k in ("high", "low", "close"))
    ind = indicator_arrays(c, h, low, timeframe, params, ewm)
    table = pd.DataFrame({"timestamp": bars["timestamp"].reset_index(drop=True), **ind})
    return table, ewm.recorded


def regime_lookback(timeframe: str, params: RegimeParams = RegimeParams()) -> int:
    """Bars a regime row at ``t`` reaches back when ADX's EWM states are carried.

    ``vol_pct`` ranks ``pct`` vol values, each from ``vol`` returns (one bar before each); the
    drawdown's peak spans ``dd`` bars.
    """
    w = params.window_bars(timeframe)
    return max(w["pct"] + w["vol"], w["dd"])


def _label(vol_pct: np.ndarray, adx: np.ndarray, dd: np.ndarray, p: RegimeParams) -> np.ndarray:
    """Forward state machine with hysteresis; -1 where an input is NaN (warm-up)."""
    return label_resumable(vol_pct, adx, dd, p)[0]


def label_resumable(
    vol_pct: np.ndarray,
    adx: np.ndarray,
    dd: np.ndarray,
    p: RegimeParams,
    state: int = WARMUP_ID,
    held: int = 0,
    before: np.ndarray | None = None,
) -> tuple[np.ndarray, int, int]:
    """:func:`_label` continued from ``(state, held)``; also returns the final ``(state, held)``.

    ``before`` (an ``(n, 2)`` int array), when given, receives the ``(state, held)`` before each row.
    """
    n = len(vol_pct)
    out = np.full(n, WARMUP_ID, dtype=np.int8)
    valid = (~(np.isnan(vol_pct) | np.isnan(adx) | np.isnan(dd))).tolist()
    vp, ax, dw = vol_pct.tolist(), adx.tolist(), dd.tolist()
    state, held = int(state), int(held)
    for t in range(n):
        if before is not None:
            before[t] = (state, held)
        if not valid[t]:
            continue
        v, a, d = vp[t], ax[t], dw[t]
        # Exit thresholds apply to the regime currently held, entry thresholds to the others.
        vthr_c = p.high_vol_pct - (p.vol_pct_margin if state == CRISIS else 0.0)
        dthr_c = p.crisis_drawdown + (p.drawdown_margin if state == CRISIS else 0.0)
        vthr_h = p.high_vol_pct - (p.vol_pct_margin if state == HIGH_VOL else 0.0)
        athr = p.adx_trend - (p.adx_margin if state == TRENDING else 0.0)
        if d <= dthr_c and v >= vthr_c:
            cand = CRISIS
        elif v >= vthr_h:
            cand = HIGH_VOL
        elif a >= athr:
            cand = TRENDING
        else:
            cand = LOW_VOL
        if state == WARMUP_ID or (cand != state and (held >= p.min_dwell or cand == CRISIS)):
            state, held = cand, 1
        else:
            held += 1
        out[t] = state
    return out, state, held


def regime_confidence(ids: np.ndarray, vol_pct: np.ndarray, adx: np.ndarray, dd: np.ndarray, p: RegimeParams):
    """Logistic of the binding signed distance to the entry thresholds of the held regime."""
    d_vol = (vol_pct - p.high_vol_pct) / p.conf_scale_vol_pct  # > 0: high vol
    d_adx = (adx - p.adx_trend) / p.conf_scale_adx  # > 0: trending
    d_dd = (p.crisis_drawdown - dd) / p.conf_scale_drawdown  # > 0: crash-deep drawdown
    dist = np.select(
        [ids == CRISIS, ids == HIGH_VOL, ids == TRENDING, ids == LOW_VOL],
        [
            np.minimum(d_vol, d_dd),
            np.minimum(d_vol, -d_dd),
            np.minimum(d_adx, -d_vol),
            np.minimum(-d_adx, -d_vol),
        ],
        default=np.nan,
    )
    return 0.5 * (1.0 + np.tanh(dist / 2.0))


def detect_regimes(bars: pd.DataFrame, timeframe: str, params: RegimeParams = RegimeParams()) -> pd.DataFrame:
    """Label every bar with a regime, a confidence and the causal diagnostics behind it.

    Returns columns ``REGIME_COLUMNS``: ``regime_id`` int8 (-1 in warm-up), ``regime`` str
    (``"WARMUP"`` in warm-up), ``confidence`` float64 in [0, 1] (NaN in warm-up).
    """
    return label_regimes(compute_indicators(bars, timeframe, params), params)[0]


def label_regimes(
    ind: pd.DataFrame, params: RegimeParams = RegimeParams(), state: int = WARMUP_ID, held: int = 0
) -> tuple[pd.DataFrame, int, int]:
    """The regime table for indicator rows (:func:`compute_indicators`), continuing the state machine.

    ``state``/``held`` are the label held before the first row and for how many bars; returns the
    table and the pair after the last row.
    """
    vp, ax, dd = (ind[c].to_numpy(dtype=float) for c in ("vol_pct", "adx", "drawdown"))
    ids, state, held = label_resumable(vp, ax, dd, params, state, held)
    conf = np.where(ids >= 0, regime_confidence(ids, vp, ax, dd, params), np.nan)
    names = np.array(("WARMUP",) + REGIMES, dtype=object)[ids.astype(int) + 1]
    table = pd.DataFrame(
        {
            "timestamp": ind["timestamp"].reset_index(drop=True),
            "regime_id": ids,
            "regime": names,
            "confidence": conf.astype(np.float64),
            "vol": ind["vol"].reset_index(drop=True),
            "vol_pct": ind["vol_pct"].reset_index(drop=True),
            "adx": ind["adx"].reset_index(drop=True),
            "drawdown": ind["drawdown"].reset_index(drop=True),
        }
    )
    return table, state, held


def regime_warmup(regime_ids: np.ndarray | pd.Series) -> int:
    """Number of rows up to and including the last warm-up (-1) label."""
    ids = np.asarray(regime_ids)
    warm = np.flatnonzero(ids == WARMUP_ID)
    return int(warm[-1]) + 1 if len(warm) else 0


def regime_distribution(regime_ids: np.ndarray | pd.Series) -> dict[str, float]:
    """Share of each regime name among labelled rows (warm-up excluded); all 0.0 if none."""
    ids = np.asarray(regime_ids).astype(int)
    ids = ids[ids >= 0]
    if len(ids) == 0:
        return {name: 0.0 for name in REGIMES}
    counts = np.bincount(ids, minlength=len(REGIMES))
    return {name: float(counts[i] / len(ids)) for i, name in enumerate(REGIMES)}


def switches_per_1000(regime_ids: np.ndarray | pd.Series) -> float:
    """Label changes per 1000 labelled bars (warm-up excluded): the flicker measure."""
    ids = np.asarray(regime_ids).astype(int)
    ids = ids[ids >= 0]
    if len(ids) < 2:
        return 0.0
    return float(np.count_nonzero(np.diff(ids)) * 1000.0 / len(ids))
