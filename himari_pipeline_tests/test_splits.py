"""Splits: live year, embargo, disjointness, train-only scaler, npz and table round trips."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from himari_pipeline.datasets import (
    ARRAY_FIELDS,
    SPLIT_NAMES,
    SplitConfig,
    SplitPlan,
    build_splits,
    check_splits,
    export_npz,
    load_npz,
    plan_splits,
    required_warmup,
    splits_from_frame,
    splits_to_frame,
)
from himari_pipeline.regimes import detect_regimes
from himari_pipeline_tests.builders import walk_bars

N_FEAT = 44
NAMES = [f"f{j:02d}_x" for j in range(N_FEAT)]
FEAT_WARMUP = 60


def random_walk_bars(start: str, end: str, freq: str = "4h", seed: int = 0) -> pd.DataFrame:
    """Random-walk OHLCV bars with close timestamps from ``start`` to ``end`` inclusive."""
    return walk_bars(pd.date_range(start, end, freq=freq, tz="UTC"), seed)


def random_features(ts: pd.Series, seed: int, warmup: int = FEAT_WARMUP) -> pd.DataFrame:
    """A features-shaped frame: 44 float columns with offsets/scales, NaN warm-up rows flagged."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (len(ts), N_FEAT)) * rng.uniform(0.5, 5, N_FEAT) + rng.uniform(-10, 10, N_FEAT)
    x[:warmup] = np.nan
    df = pd.DataFrame(x, columns=NAMES)
    df.insert(0, "timestamp", ts.to_numpy())
    df["warmup"] = np.arange(len(ts)) < warmup
    return df


@pytest.fixture(scope="module")
def inputs():
    # Close times up to 2025-01-01 00:00: that last bar's period lies in 2024.
    bars = random_walk_bars("2020-01-01 04:00", "2025-01-01 00:00")
    feats = random_features(bars["timestamp"], seed=1)
    den = random_features(bars["timestamp"], seed=2, warmup=FEAT_WARMUP + 5)
    regimes = detect_regimes(bars, "4h")
    return bars, feats, den, regimes


@pytest.fixture(scope="module")
def built(inputs):
    bars, feats, den, regimes = inputs
    warmup = required_warmup(feats, den, regimes)
    plan = plan_splits(bars["timestamp"], warmup, SplitConfig())
    return build_splits(bars, feats, den, regimes, NAMES, plan, {"features": "abc123"}), warmup


def test_required_warmup(inputs):
    _, feats, den, regimes = inputs
    w = required_warmup(feats, den, regimes)
    reg_w = int(np.flatnonzero(regimes["regime_id"].to_numpy() == -1)[-1]) + 1
    assert w == max(FEAT_WARMUP + 5, reg_w) and reg_w > FEAT_WARMUP  # 4h: 30 days of vol values


def test_disjoint_ordered_and_embargoed(inputs, built):
    bars, *_ = inputs
    ds, warmup = built
    plan = ds.metadata["plan"]
    assert plan["embargo"] == 1 + 100  # label horizon + context; the warm-up is dropped once, at the start
    r = {k: tuple(v) for k, v in plan["ranges"].items()}
    assert r["train"][0] == warmup
    for a, b in zip(SPLIT_NAMES, SPLIT_NAMES[1:], strict=False):
        assert r[b][0] - r[a][1] == plan["embargo"] >= 101
        assert ds[a].timestamps[-1] < ds[b].timestamps[0]
        # In bars of time, too: the gap holds exactly `embargo` bars.
        gap = (ds[b].timestamps[0] - ds[a].timestamps[-1]) // pd.Timedelta("4h").value - 1
        assert gap == plan["embargo"]
    all_ts = np.concatenate([ds[k].timestamps for k in SPLIT_NAMES])
    assert len(np.unique(all_ts)) == len(all_ts)
    assert check_splits(ds, min_embargo=101) == []
    assert any("embargo" in p for p in check_splits(ds, min_embargo=102))
    for k in SPLIT_NAMES:
        s = ds[k]
        assert (np.diff(s.timestamps) > 0).all()
        assert s.features_raw.shape == (s.n_samples, N_FEAT) and s.features_raw.dtype == np.float32
        assert s.regime_ids.dtype == np.int8 and (s.regime_ids >= 0).all()
        assert all(np.isfinite(getattr(s, f)).all() for f in ARRAY_FIELDS if getattr(s, f).dtype.kind == "f")
        # Prices and timestamps are the bars' own rows.
        a, b = r[k]
        assert (s.prices == bars["close"].to_numpy()[a:b]).all()
        assert (s.timestamps == bars["timestamp"].iloc[a:b].astype("int64").to_numpy()).all()


def test_live_year_is_last_calendar_year(inputs, built):
    bars, *_ = inputs
    ds, _ = built
    live = pd.to_datetime(ds["live"].timestamps, utc=True)
    period_year = (live - pd.Timedelta(1, "ns")).year
    assert ds.metadata["plan"]["live_year"] == 2024 and (period_year == 2024).all()
    # Every 2024 bar (first closes 2024-01-01 04:00, last 2025-01-01 00:00) is in live, none elsewhere.
    assert live[0] == pd.Timestamp("2024-01-01 04:00", tz="UTC")
    assert live[-1] == pd.Timestamp("2025-01-01 00:00", tz="UTC")
    assert ds["live"].n_samples == 366 * 6  # leap year of 4h bars
    assert pd.Timestamp(ds["test"].timestamps[-1], tz="UTC") < pd.Timestamp("2024-01-01", tz="UTC")


def test_explicit_live_year_drops_later_rows(inputs):
    bars, *_ = inputs
    plan = plan_splits(bars["timestamp"], 300, SplitConfig(live_year=2022))
    a, b = plan.ranges["live"]
    ts = bars["timestamp"]
    assert ts.iloc[a] == pd.Timestamp("2022-01-01 04:00", tz="UTC")
    assert ts.iloc[b - 1] == pd.Timestamp("2023-01-01 00:00", tz="UTC")
    assert plan.ranges["test"][1] + plan.embargo == a
    with pytest.raises(ValueError, match="live year 2030 is not in the data"):
        plan_splits(bars["timestamp"], 300, SplitConfig(live_year=2030))


def test_fractions_and_bear_preset(inputs):
    bars, *_ = inputs
    for cfg, fr in ((SplitConfig(), (0.6, 0.2, 0.2)), (SplitConfig.preset("bear"), (0.4, 0.4, 0.2))):
        plan = plan_splits(bars["timestamp"], 300, cfg)
        sizes = plan.sizes()
        usable = plan.ranges["live"][0] - 300 - 3 * plan.embargo
        assert sizes["train"] + sizes["val"] + sizes["test"] == usable
        for k, f in zip(("train", "val", "test"), fr, strict=True):
            assert abs(sizes[k] - f * usable) <= 2  # two floors: test takes the remainder
    assert SplitConfig(fractions="bear").fractions == (0.4, 0.4, 0.2)
    assert SplitConfig.from_dict(json.loads(json.dumps(SplitConfig.preset("bear").to_dict()))).fractions == (
        0.4,
        0.4,
        0.2,
    )
    with pytest.raises(ValueError, match="preset"):
        SplitConfig(fractions="bull")
    with pytest.raises(ValueError, match="sum"):
        SplitConfig(fractions=(0.5, 0.3, 0.3))


def test_embargo_errors_and_short_data(inputs):
    bars, *_ = inputs
    with pytest.raises(ValueError, match=r"embargo 50 is too short.*context = 1 \+ 100 = 101"):
        plan_splits(bars["timestamp"], 300, SplitConfig(embargo=50))
    assert plan_splits(bars["timestamp"], 300, SplitConfig(embargo=500)).embargo == 500
    short = bars[bars["timestamp"] >= pd.Timestamp("2024-09-01", tz="UTC")]["timestamp"]
    with pytest.raises(ValueError, match="data too short"):
        plan_splits(short, 300, SplitConfig())
    with pytest.raises(ValueError, match="strictly increasing"):
        plan_splits(bars["timestamp"].iloc[::-1], 0, SplitConfig())


def test_returns_convention(inputs, built):
    bars, *_ = inputs
    ds, _ = built
    close = bars["close"].to_numpy()
    a = ds.metadata["plan"]["ranges"]["val"][0]
    val = ds["val"]
    assert val.returns[0] == close[a] / close[a - 1] - 1  # first row uses the previous (embargo) bar
    assert np.allclose(val.returns[1:], val.prices[1:] / val.prices[:-1] - 1, rtol=0, atol=1e-15)


def test_scaler_fitted_on_train_rows_only(inputs, built):
    bars, feats, den, regimes = inputs
    ds, _ = built
    plan = ds.metadata["plan"]
    a, b = plan["ranges"]["train"]
    x = feats[NAMES].to_numpy()[a:b]
    assert np.allclose(ds.metadata["scaler"]["raw"]["mean"], x.mean(axis=0), rtol=1e-12)
    assert np.allclose(ds.metadata["scaler"]["raw"]["std"], x.std(axis=0), rtol=1e-12)
    tr = ds["train"].features_raw.astype(np.float64)
    assert np.abs(tr.mean(axis=0)).max() < 1e-5 and np.abs(tr.std(axis=0) - 1).max() < 1e-5
    assert ds.metadata["scaler"]["raw"] != ds.metadata["scaler"]["denoised"]

    p = SplitPlan.from_dict(plan)
    v0 = plan["ranges"]["val"][0]
    changed = feats.copy()
    changed.loc[v0 + 3, NAMES[5]] += 1e6
    ds2 = build_splits(bars, changed, den, regimes, NAMES, p, {})
    assert ds2.metadata["scaler"] == ds.metadata["scaler"]
    assert (ds2["train"].features_raw == ds["train"].features_raw).all()
    assert ds2["val"].features_raw[3, 5] != ds["val"].features_raw[3, 5]
    # ... whereas a change inside train moves the scaler.
    changed.loc[a + 3, NAMES[5]] += 1e6
    assert build_splits(bars, changed, den, regimes, NAMES, p, {}).metadata["scaler"] != ds.metadata["scaler"]


def test_alignment_and_nan_errors(inputs, built):
    bars, feats, den, regimes = inputs
    ds, _ = built
    p = SplitPlan.from_dict(ds.metadata["plan"])
    shifted = feats.copy()
    shifted["timestamp"] = shifted["timestamp"] + pd.Timedelta("4h")
    with pytest.raises(ValueError, match="features is not aligned with bars on timestamp: row 0"):
        build_splits(bars, shifted, den, regimes, NAMES, p, {})
    with pytest.raises(ValueError, match="regimes has"):
        build_splits(bars, feats, den, regimes.iloc[:-1], NAMES, p, {})
    holed = den.copy()
    t0 = p.ranges["test"][0]
    holed.loc[t0 + 7, NAMES[0]] = np.nan
    with pytest.raises(ValueError, match=r"split 'test': features_denoised invalid .* first at row 7"):
        build_splits(bars, feats, holed, regimes, NAMES, p, {})
    # Warm-up inside a split (plan made with too small a warm-up) is refused.
    bad_plan = plan_splits(bars["timestamp"], 0, SplitConfig())
    with pytest.raises(ValueError, match="split 'train'"):
        build_splits(bars, feats, den, regimes, NAMES, bad_plan, {})


def test_check_splits_finds_problems(built):
    ds, warmup = built
    bad = copy.deepcopy(ds)
    bad["val"].features_raw[10, 2] = np.nan
    bad["test"].timestamps[5] = bad["test"].timestamps[4]
    bad["live"].timestamps[0] = bad["test"].timestamps[-1]
    bad["train"].features_denoised[:, 3] += 0.5  # as if the scaler had been fitted on other rows
    problems = " | ".join(check_splits(bad, 101))
    assert "val: features_raw has 1 NaN" in problems
    assert "test: timestamps not strictly increasing" in problems
    assert "test and live overlap" in problems
    assert "train features_denoised is not standardized" in problems
    assert "train features_raw" not in problems


def assert_same(a, b):
    assert a.metadata == b.metadata
    assert list(a.splits) == list(b.splits)
    for k in a.splits:
        for f in ARRAY_FIELDS:
            x, y = getattr(a[k], f), getattr(b[k], f)
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), (k, f)
        assert a[k].n_samples == b[k].n_samples
    assert a.content_hash() == b.content_hash()


def test_npz_round_trip_atomic(built, tmp_path):
    ds, _ = built
    path = tmp_path / "sub" / "dataset.npz"
    export_npz(ds, path)
    export_npz(ds, path)  # overwrite in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["dataset.npz"]  # no temp file left
    back = load_npz(path)
    assert_same(ds, back)
    assert back.metadata["input_versions"] == {"features": "abc123"}
    d = back.to_dict()
    assert set(d) == {"train", "val", "test", "live", "metadata"} and d["train"]["n_samples"] > 0
    with np.load(path, allow_pickle=False) as z:
        assert z["metadata_json"].dtype.kind == "U" and "train/features_raw" in z.files


def test_npz_loads_without_project(built, tmp_path):
    ds, _ = built
    path = tmp_path / "dataset.npz"
    export_npz(ds, path)
    code = (
        "import sys; sys.modules['himari_pipeline'] = None\n"  # any import of the project would fail
        "import json, numpy as np\n"
        f"z = np.load({str(path)!r}, allow_pickle=False)\n"
        "meta = json.loads(str(z['metadata_json']))\n"
        "out = {s: {k.split('/', 1)[1]: z[k] for k in z.files if k.startswith(s + '/')}\n"
        "       for s in meta['splits']}\n"
        "assert sys.modules['himari_pipeline'] is None\n"
        "assert not [m for m in sys.modules if m.startswith('himari_pipeline.')]\n"
        "info = {s: [int(d['n_samples']), list(d['features_raw'].shape), str(d['regime_ids'].dtype)]\n"
        "        for s, d in out.items()}\n"
        "print(json.dumps(info), len(meta['feature_names']))\n"
    )
    res = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    shapes, n_names = res.stdout.rsplit(" ", 1)
    expected = {k: [ds[k].n_samples, [ds[k].n_samples, N_FEAT], "int8"] for k in SPLIT_NAMES}
    assert json.loads(shapes) == expected and int(n_names) == N_FEAT


def test_frame_round_trip(built):
    ds, _ = built
    df = splits_to_frame(ds)
    assert len(df) == sum(ds[k].n_samples for k in SPLIT_NAMES)
    assert {"split", "timestamp", "price", "return", "regime_id", "regime_confidence"} <= set(df.columns)
    assert f"raw_{NAMES[0]}" in df.columns and f"den_{NAMES[-1]}" in df.columns
    assert str(df["timestamp"].dtype) == "datetime64[ns, UTC]"
    back = splits_from_frame(df.sample(frac=1.0, random_state=0), ds.metadata)  # order restored
    assert_same(ds, back)


def test_gap_before_carried_from_the_bars(inputs):
    bars, feats, den, regimes = inputs
    gaps = np.zeros(len(bars), dtype=np.int64)
    gaps[::97] = np.arange(len(gaps[::97])) % 5  # some bars follow missing ones
    plan = plan_splits(bars["timestamp"], required_warmup(feats, den, regimes), SplitConfig())
    ds = build_splits(bars.assign(gap_before=gaps), feats, den, regimes, NAMES, plan)
    for name in SPLIT_NAMES:
        lo, hi = plan.ranges[name]
        assert ds[name].gap_before.dtype == np.int64
        np.testing.assert_array_equal(ds[name].gap_before, gaps[lo:hi])
    assert sum(int(ds[k].gap_before.sum()) for k in SPLIT_NAMES) > 0
    assert check_splits(ds, plan.embargo) == []
    with pytest.raises(ValueError, match="negative gap_before"):
        build_splits(bars.assign(gap_before=-gaps), feats, den, regimes, NAMES, plan)


def test_gap_before_round_trips_and_old_files_load_as_zeros(inputs, built, tmp_path):
    bars, feats, den, regimes = inputs
    ds0, _ = built
    assert all(not ds0[k].gap_before.any() for k in SPLIT_NAMES)  # bars without the column: no gaps
    plan = SplitPlan.from_dict(ds0.metadata["plan"])
    gaps = (np.arange(len(bars)) % 7 == 3).astype(np.int64) * 2
    ds = build_splits(bars.assign(gap_before=gaps), feats, den, regimes, NAMES, plan)
    path = export_npz(ds, tmp_path / "new.npz")
    assert_same(ds, load_npz(path))
    assert_same(ds, splits_from_frame(splits_to_frame(ds), ds.metadata))
    with np.load(path, allow_pickle=False) as z:  # a file from before gap_before existed
        old = {k: z[k] for k in z.files if not k.endswith("/gap_before")}
    np.savez(tmp_path / "old.npz", **old)
    back = load_npz(tmp_path / "old.npz")
    for k in SPLIT_NAMES:
        assert back[k].gap_before.dtype == np.int64 and not back[k].gap_before.any()
        assert len(back[k].gap_before) == ds[k].n_samples
    with np.load(path, allow_pickle=False) as z:  # any other missing array is still an error
        broken = {k: z[k] for k in z.files if k != "train/prices"}
    np.savez(tmp_path / "broken.npz", **broken)
    with pytest.raises(ValueError, match="missing array"):
        load_npz(tmp_path / "broken.npz")
