"""Where the train/val/test/live splits lie: the layout of a dataset's rows and its plan.

Layout of the rows of one dataset (``e`` = embargo bars, dropped at every boundary)::

    [warm-up][ train ][e][ val ][e][ test ][e][ live ][rows after the live segment, unused]

* **Warm-up** rows (some feature window or regime statistic not yet full) are dropped once, at the
  start, and nowhere else.
* **Live segment** (``SplitConfig.live``):

  - ``"year"``: every bar whose period ``(close - bar, close]`` lies in calendar year ``live_year``
    (UTC; a bar belongs to the year of ``close - 1ns``, so the hourly bar closing at
    ``2025-01-01 00:00`` belongs to 2024); ``live_year=None`` takes the last year in the data;
  - ``"fraction"``: the last ``live_fraction`` of the rows after the warm-up;
  - ``"date"``: every bar whose period ends after ``live_start`` (``close > live_start``);
  - ``"auto"`` (default): the last calendar year when at least as many rows (after the warm-up)
    precede it as it holds, and enough for the embargo gaps and train/val/test; else the last
    ``live_fraction`` of the rows. Six years of hourly bars keep their last year live; one year of
    hourly bars gets its last 20%.

* **Embargo** ``e >= horizon + context`` bars at each boundary: what leakage needs. The label of
  row ``i`` is ``returns[i + horizon]`` (``horizon = 1``: a decision at ``t`` earns ``r[t+1]``), so
  ``horizon`` rows keep the last training labels out of the next split; ``context`` rows keep the
  model's input window (``context`` rows ending at a decision) of the next split's first decisions
  clear of rows the model was fitted on. The feature warm-up is *not* repeated: features are causal
  (proven row by row by :mod:`himari_pipeline.causality`), so a validation row's features reach
  back into earlier bars the way they will in live use, and never forward.
* The development rows between the warm-up and the live segment lose ``3 * e`` gap rows, and the
  rest is cut by ``fractions`` in time order (no shuffling); each split must exceed ``context``.
  A dataset too short for this gets an error that lists every term, summing to the bars needed.

The arrays themselves (cut, scaled with a train-only scaler, checked) are built in
:mod:`himari_pipeline.datasets.splits`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from himari_pipeline.vocabulary import WARMUP_ID

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test", "live")
FRACTION_PRESETS: dict[str, tuple[float, float, float]] = {
    "default": (0.6, 0.2, 0.2),
    "bear": (0.4, 0.4, 0.2),  # the 2022 bear market falls in validation
}


LIVE_MODES: tuple[str, ...] = ("auto", "year", "fraction", "date")


@dataclass(frozen=True)
class SplitConfig:
    """How to split; ``fractions`` may be a preset name (``"default"``, ``"bear"``).

    ``live`` chooses the live segment (see the module docstring); giving ``live_year`` or
    ``live_start`` with ``live="auto"`` selects ``"year"`` or ``"date"``. ``embargo`` (None: the
    minimum ``horizon + context``) may be set longer, never shorter.
    """

    live_year: int | None = None
    fractions: tuple[float, float, float] | str = (0.6, 0.2, 0.2)
    context: int = 100
    embargo: int | None = None
    live: str = "auto"
    live_fraction: float = 0.2
    live_start: str | None = None
    horizon: int = 1

    def __post_init__(self) -> None:
        fr = self.fractions
        if isinstance(fr, str):
            if fr not in FRACTION_PRESETS:
                raise ValueError(
                    f"unknown fractions preset {fr!r}; expected one of {sorted(FRACTION_PRESETS)}"
                )
            fr = FRACTION_PRESETS[fr]
        fr = tuple(float(x) for x in fr)
        if len(fr) != 3 or min(fr) <= 0 or abs(sum(fr) - 1.0) > 1e-9:
            raise ValueError(f"fractions must be three positive numbers summing to 1, got {self.fractions!r}")
        object.__setattr__(self, "fractions", fr)
        if int(self.context) < 1:
            raise ValueError(f"context must be >= 1, got {self.context}")
        if int(self.horizon) < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.embargo is not None and int(self.embargo) < 0:
            raise ValueError(f"embargo must be >= 0, got {self.embargo}")
        if self.live not in LIVE_MODES:
            raise ValueError(f"unknown live mode {self.live!r}; expected one of {list(LIVE_MODES)}")
        if not 0.0 < float(self.live_fraction) < 1.0:
            raise ValueError(f"live_fraction must be in (0, 1), got {self.live_fraction}")
        mode = self.live_mode
        if self.live_year is not None and mode != "year":
            raise ValueError(f"live_year={self.live_year} applies to live='year', not live={mode!r}")
        if self.live_start is not None and mode != "date":
            raise ValueError(f"live_start={self.live_start!r} applies to live='date', not live={mode!r}")
        if mode == "date":
            if self.live_start is None:
                raise ValueError("live='date' needs live_start (an ISO date or time, UTC)")
            _utc(self.live_start)

    @property
    def live_mode(self) -> str:
        """``live`` with ``"auto"`` resolved by ``live_year`` / ``live_start`` when one is given."""
        if self.live == "auto" and self.live_year is not None:
            return "year"
        if self.live == "auto" and self.live_start is not None:
            return "date"
        return self.live

    @property
    def min_embargo(self) -> int:
        """The embargo leakage needs: label horizon + model context."""
        return int(self.horizon) + int(self.context)

    @classmethod
    def preset(cls, name: str, **overrides) -> SplitConfig:
        """E.g. ``SplitConfig.preset("bear")`` = 40/40/20."""
        return cls(fractions=name, **overrides)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fractions"] = list(self.fractions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SplitConfig:
        d = dict(d)
        if isinstance(d.get("fractions"), list):
            d["fractions"] = tuple(d["fractions"])
        return cls(**d)


def _utc(when: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(when)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"live_start {when!r} is not an ISO date or time: {exc}") from None
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


@dataclass(frozen=True)
class SplitPlan:
    """Integer ``[start, stop)`` row ranges per split, over the rows of the aligned input tables.

    ``live`` is the resolved live mode (``year``/``fraction``/``date``) and ``live_reason`` says
    why (e.g. why ``auto`` fell back to a fraction); ``live_year`` is set in ``year`` mode only.
    """

    n_rows: int
    warmup: int
    embargo: int
    live_year: int | None
    config: SplitConfig
    ranges: dict[str, tuple[int, int]]
    bounds: dict[str, tuple[str, str]] = field(default_factory=dict)  # first/last timestamp, ISO
    live: str = "year"
    live_reason: str = ""

    def sizes(self) -> dict[str, int]:
        return {k: b - a for k, (a, b) in self.ranges.items()}

    def to_dict(self) -> dict:
        return {
            "n_rows": self.n_rows,
            "warmup": self.warmup,
            "embargo": self.embargo,
            "live_year": self.live_year,
            "live": self.live,
            "live_reason": self.live_reason,
            "config": self.config.to_dict(),
            "ranges": {k: [int(a), int(b)] for k, (a, b) in self.ranges.items()},
            "bounds": {k: [a, b] for k, (a, b) in self.bounds.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> SplitPlan:
        return cls(
            n_rows=int(d["n_rows"]),
            warmup=int(d["warmup"]),
            embargo=int(d["embargo"]),
            live_year=None if d.get("live_year") is None else int(d["live_year"]),
            config=SplitConfig.from_dict(d["config"]),
            ranges={k: (int(a), int(b)) for k, (a, b) in d["ranges"].items()},
            bounds={k: (a, b) for k, (a, b) in d.get("bounds", {}).items()},
            live=d.get("live", "year"),
            live_reason=d.get("live_reason", ""),
        )


def _as_utc_index(timestamps) -> pd.DatetimeIndex:
    if not isinstance(timestamps, pd.Series | pd.Index):
        timestamps = np.asarray(timestamps)  # int64 ns or datetime64 values
    idx = pd.DatetimeIndex(pd.to_datetime(timestamps, utc=True))
    if len(idx) and not (idx[1:] > idx[:-1]).all():
        bad = int(np.flatnonzero(~(idx[1:] > idx[:-1]))[0]) + 1
        raise ValueError(f"timestamps must be strictly increasing; row {bad} ({idx[bad]}) is not")
    return idx


def bar_years(timestamps) -> np.ndarray:
    """Calendar year (UTC) of each bar's period ``(close - bar, close]``: the year of ``close - 1ns``."""
    idx = _as_utc_index(timestamps)
    return (idx - pd.Timedelta(1, "ns")).year.to_numpy()


def _min_dev_rows(fractions: tuple[float, float, float], min_rows: int) -> int:
    """Fewest rows that ``fractions`` cut into train/val/test of at least ``min_rows`` each."""
    u = 3 * min_rows
    while True:
        n_train, n_val = int(np.floor(fractions[0] * u)), int(np.floor(fractions[1] * u))
        if min(n_train, n_val, u - n_train - n_val) >= min_rows:
            return u
        u += 1


def _live_range(
    idx: pd.DatetimeIndex, warmup: int, cfg: SplitConfig, min_before: int, min_live: int
) -> tuple[tuple[int, int], str, int | None, str]:
    """``(live [start, stop), resolved mode, live year or None, why)`` for the bars ``idx``.

    ``auto`` keeps the last calendar year when it holds at least ``min_live`` rows and at least as
    many rows as it holds, and at least ``min_before`` (embargo gaps + train/val/test), follow the
    warm-up before it; otherwise it takes the last fraction.
    """
    n = len(idx)
    mode = cfg.live_mode
    fraction_rows = max(int(np.ceil(cfg.live_fraction * (n - warmup))), 1) if n > warmup else 0
    fraction = ((n - fraction_rows, n), "fraction", None, f"the last {cfg.live_fraction:.0%} of the rows")
    if mode == "fraction":
        return fraction
    if mode == "date":
        after = np.flatnonzero(idx > _utc(cfg.live_start))
        if len(after) == 0:
            raise ValueError(f"live_start {cfg.live_start} is after the last bar ({idx[-1]})")
        return (int(after[0]), n), "date", None, f"bars closing after {cfg.live_start}"
    years = bar_years(idx)
    year = int(years[-1]) if cfg.live_year is None else int(cfg.live_year)
    in_year = np.flatnonzero(years == year)
    if len(in_year) == 0:
        raise ValueError(f"live year {year} is not in the data ({int(years[0])}..{int(years[-1])})")
    live = (int(in_year[0]), int(in_year[-1]) + 1)
    if mode == "year":
        return live, "year", year, f"calendar year {year}"
    before, n_year = live[0] - warmup, live[1] - live[0]
    if n_year >= min_live and before >= max(n_year, min_before):
        return live, "year", year, f"auto: the last calendar year {year} ({before} rows precede it)"
    rng, _, _, why = fraction
    because = (
        f"the last calendar year {year} holds only {n_year} rows (fewer than {min_live})"
        if n_year < min_live
        else f"only {max(before, 0)} rows after the warm-up precede the last calendar year {year} "
        f"({n_year} rows; keeping it needs {max(n_year, min_before)})"
    )
    return rng, "fraction", None, f"auto: {why}, because {because}"


def plan_splits(timestamps, warmup: int, cfg: SplitConfig = SplitConfig()) -> SplitPlan:
    """Plan the splits of ``timestamps`` (bar close times) whose first ``warmup`` rows are unusable."""
    idx = _as_utc_index(timestamps)
    n = len(idx)
    warmup = int(warmup)
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    min_embargo = cfg.min_embargo
    embargo = min_embargo if cfg.embargo is None else int(cfg.embargo)
    if embargo < min_embargo:
        raise ValueError(
            f"embargo {embargo} is too short: it must be at least label horizon + model context "
            f"= {cfg.horizon} + {cfg.context} = {min_embargo} bars"
        )
    if n == 0:
        raise ValueError("no bars to split")
    min_rows = cfg.context + 1
    need_dev = _min_dev_rows(cfg.fractions, min_rows)
    live, mode, live_year, reason = _live_range(idx, warmup, cfg, 3 * embargo + need_dev, min_rows)
    n_live, after = live[1] - live[0], n - live[1]
    usable = live[0] - warmup - 3 * embargo
    if n_live < min_rows and usable >= need_dev and mode != "fraction":
        raise ValueError(
            f"live segment too short: {reason} holds {n_live} bars, fewer than {min_rows} (model context "
            f"{cfg.context} + 1); choose another live segment (live: fraction, an earlier live_year or "
            f"live_start)"
        )
    if usable < need_dev or n_live < min_rows:
        need_live = max(n_live, min_rows)
        if mode == "fraction":  # the live segment grows with the data: find the smallest total that fits
            need = n
            while True:
                need_live = max(int(np.ceil(cfg.live_fraction * (need - warmup))), min_rows)
                if need - need_live - warmup - 3 * embargo >= need_dev:
                    break
                need += 1
            need_dev = need - need_live - warmup - 3 * embargo
        else:
            need = warmup + 3 * embargo + need_dev + need_live + after
        raise ValueError(
            f"data too short to split: need {need} bars = {warmup} warm-up + {3 * embargo} embargo "
            f"(3 gaps x {embargo} = label horizon {cfg.horizon} + context {cfg.context}) + {need_dev} "
            f"train/val/test (fractions {'/'.join(f'{f:g}' for f in cfg.fractions)}, each more than the "
            f"context of {cfg.context} bars) + {need_live} live ({reason}"
            + (f"; it has {n_live}, fewer than {min_rows}" if n_live < min_rows else "")
            + f") + {after} after the live segment; the data have {n}, {need - n} short"
        )
    n_train = int(np.floor(cfg.fractions[0] * usable))
    n_val = int(np.floor(cfg.fractions[1] * usable))
    n_test = usable - n_train - n_val
    a = warmup
    ranges: dict[str, tuple[int, int]] = {"train": (a, a + n_train)}
    a += n_train + embargo
    ranges["val"] = (a, a + n_val)
    a += n_val + embargo
    ranges["test"] = (a, a + n_test)
    ranges["live"] = live
    assert a + n_test + embargo == live[0]
    bounds = {k: (idx[s].isoformat(), idx[e - 1].isoformat()) for k, (s, e) in ranges.items()}
    return SplitPlan(
        n_rows=n,
        warmup=warmup,
        embargo=embargo,
        live_year=live_year,
        config=cfg,
        ranges=ranges,
        bounds=bounds,
        live=mode,
        live_reason=reason,
    )


def required_warmup(*tables: pd.DataFrame) -> int:
    """Leading rows to drop so that every table is past its warm-up.

    Looks at a bool ``warmup`` column (features tables) and a ``regime_id`` column (-1 = warm-up);
    returns the index after the last warm-up row over all tables.
    """
    w = 0
    for t in tables:
        if "warmup" in t.columns:
            mask = t["warmup"].to_numpy(dtype=bool)
        elif "regime_id" in t.columns:
            mask = t["regime_id"].to_numpy() == WARMUP_ID
        else:
            raise ValueError(
                f"table with columns {list(t.columns)[:5]}... has neither 'warmup' nor 'regime_id'"
            )
        hit = np.flatnonzero(mask)
        if len(hit):
            w = max(w, int(hit[-1]) + 1)
    return w
