"""The exit env (log 002): the stop/take-profit rule on constructed bars, masks in effect, observations
that cannot see the next bar, and one trade by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from himari_pipeline.exits.env import (
    BY_AGENT,
    BY_STOP,
    BY_TAKE,
    BY_TIME,
    EXIT,
    HOLD,
    PARTIAL_EXIT,
    TIGHTEN_SL,
    TRAIL_BE,
    ExitConfig,
    ExitMarket,
    VecExitEnv,
    exit_observation,
)
from himari_pipeline.exits.stops import NO_FILL, STOP_FILL, TAKE_FILL, resolve_stops


def test_stops_on_constructed_bars_long_and_short():
    """Gaps fill at the open, touches at the level, both touched in one bar = the stop."""
    # columns: side, stop, take, open, high, low, close -> kind, price
    cases = [
        (1, 99, 102, 100.0, 101.0, 99.5, 100.5, NO_FILL, 100.5),
        (1, 99, 102, 100.0, 101.0, 98.5, 99.8, STOP_FILL, 99.0),
        (1, 99, 102, 100.0, 102.5, 99.5, 101.0, TAKE_FILL, 102.0),
        (1, 99, 102, 100.0, 102.5, 98.0, 101.0, STOP_FILL, 99.0),  # both: the stop
        (1, 99, 102, 97.0, 98.0, 96.0, 97.5, STOP_FILL, 97.0),  # gap through the stop: the open
        (1, 99, 102, 103.0, 104.0, 102.5, 103.5, TAKE_FILL, 103.0),  # gap through the take: the open
        (-1, 101, 98, 100.0, 101.5, 99.0, 100.2, STOP_FILL, 101.0),
        (-1, 101, 98, 100.0, 100.5, 97.5, 98.2, TAKE_FILL, 98.0),
        (-1, 101, 98, 100.0, 101.5, 97.5, 99.0, STOP_FILL, 101.0),  # both: the stop
        (-1, 101, 98, 102.0, 102.5, 101.5, 102.0, STOP_FILL, 102.0),  # gap up through a short's stop
        (-1, 101, 98, 100.0, 100.8, 98.5, 99.0, NO_FILL, 99.0),
    ]
    arr = np.array([c[:7] for c in cases], dtype=np.float64)
    want_kind = np.array([c[7] for c in cases])
    want_price = np.array([c[8] for c in cases])
    got = resolve_stops(*arr.T)
    np.testing.assert_array_equal(got.kind, want_kind)
    np.testing.assert_array_equal(got.price, want_price)
    t = resolve_stops(*torch.from_numpy(arr).T)
    np.testing.assert_array_equal(t.kind.numpy(), want_kind)
    np.testing.assert_array_equal(t.price.numpy(), want_price)


def _market(n: int = 400, seed: int = 0, entries: int = 60) -> tuple[dict, ExitMarket]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.001, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.002, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.002, n)))
    bars = {"open": open_, "high": high, "low": low, "close": close}
    e = np.sort(rng.choice(np.arange(20, n - 60), entries, replace=False))
    side = rng.choice([-1.0, 1.0], entries)
    return bars, ExitMarket.from_numpy(bars, e, side)


def _masked_sample(env: VecExitEnv, gen: torch.Generator) -> torch.Tensor:
    logits = torch.zeros(env.n, 5).masked_fill(~env.action_mask(), -torch.inf)
    return torch.multinomial(torch.softmax(logits, 1), 1, generator=gen)[:, 0]


def test_masks_block_what_they_should_and_a_masked_policy_is_never_blocked():
    _, market = _market()
    cfg = ExitConfig(min_exit_bar=3, max_hold=30)
    env = VecExitEnv(market, cfg, 256, seed=1)
    mask = env.action_mask()
    assert not mask[:, EXIT].any() and not mask[:, PARTIAL_EXIT].any()  # k = 0 < min_exit_bar
    assert mask[:, HOLD].all() and mask[:, TIGHTEN_SL].all()
    gen = torch.Generator().manual_seed(0)
    agent_holds = []
    for _ in range(400):
        m = env.action_mask()
        px = env.m.close[env.e + env.k]
        assert torch.equal(
            m[:, TRAIL_BE], (env.side * (px - env.entry) > 0) & (env.side * (env.stop - env.entry) < 0)
        )
        assert not (m[:, PARTIAL_EXIT] & (env.remaining < 1)).any()  # once
        _, _, done, info = env.step(_masked_sample(env, gen))
        agent = done & (info["exit_reason"] == BY_AGENT)
        agent_holds += info["holding_bars"][agent].tolist()
    assert env.blocked_rate == 0.0 and agent_holds and min(agent_holds) >= 3

    # an unmasked random policy: blocked actions are counted and replaced by HOLD, no early agent exit
    env = VecExitEnv(market, cfg, 256, seed=2)
    holds = []
    for _ in range(200):
        a = torch.randint(0, 5, (env.n,), generator=gen)
        _, _, done, info = env.step(a)
        holds += info["holding_bars"][done & (info["exit_reason"] == BY_AGENT)].tolist()
    assert env.blocked_rate > 0.05 and min(holds) >= 3


def test_the_observation_cannot_see_the_next_bar():
    """Log 002's v3 bug: the P&L of bar t+1 visible at decision k. Changing every bar after t leaves
    the observation at t unchanged; changing bar t changes it."""
    bars, market = _market()
    cfg = ExitConfig(window=8)
    env = VecExitEnv(market, cfg, 64, seed=3)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        env.step(_masked_sample(env, gen))
    t = env.e + env.k
    args = (t, env.side, env.entry, env.k.double(), env.remaining, env.stop, env.take, cfg)
    obs = exit_observation(market.close, *args)
    assert torch.equal(obs, env.observe())
    for i in range(env.n):
        future = market.close.clone()
        future[int(t[i]) + 1 :] *= 1.5
        row = exit_observation(future, *(a[i : i + 1] if torch.is_tensor(a) else a for a in args))
        assert torch.equal(row[0], obs[i])
        now = market.close.clone()
        now[int(t[i])] *= 1.01
        assert not torch.equal(
            exit_observation(now, *(a[i : i + 1] if torch.is_tensor(a) else a for a in args))[0], obs[i]
        )


def test_one_trade_by_hand():
    """Long at 100: hold, partial at +1 %, trail to breakeven, then a bar that touches both levels
    fills the stop at breakeven. Money and rewards by hand; the rewards sum to the return plus the
    entry cost."""
    close = np.array([100.0, 100.5, 101.0, 101.5, 100.8, 100.9])
    bars = {
        "open": np.array([100.0, 100.0, 100.5, 101.0, 101.5, 100.8]),
        "high": np.array([100.0, 100.6, 101.1, 101.6, 102.5, 101.0]),
        "low": np.array([100.0, 100.4, 100.4, 100.9, 99.9, 100.7]),
        "close": close,
    }
    c = 0.001
    cfg = ExitConfig(
        stop_loss=0.01, take_profit=0.02, min_exit_bar=2, max_hold=10, transaction_cost=c, window=2
    )
    env = VecExitEnv(ExitMarket.from_numpy(bars, [0], [1.0]), cfg, 1)
    rewards, infos = [], []
    for a in (HOLD, HOLD, PARTIAL_EXIT, TRAIL_BE):
        _, r, done, info = env.step(torch.tensor([a]))
        rewards.append(float(r[0]))
        infos.append(info)
    assert bool(done[0]) and int(infos[-1]["exit_reason"][0]) == BY_STOP
    # partial at close 101.0 (k=2): half at +1 %; the rest stopped at the entry (bar 4 touches 99.9 and 102.5)
    expected = -c + 0.5 * (0.01 - c) + 0.5 * (0.0 - c)
    assert float(infos[-1]["trade_return"][0]) == pytest.approx(expected, abs=1e-15)
    assert sum(rewards) == pytest.approx((expected + c) * cfg.reward_scale, abs=1e-4)
    assert int(infos[-1]["holding_bars"][0]) == 4
    assert int(infos[0]["exit_reason"][0]) == 0


def test_time_and_take_profit_exits():
    close = np.linspace(100, 101, 12)
    bars = {"open": close, "high": close + 0.01, "low": close - 0.01, "close": close}
    cfg = ExitConfig(
        stop_loss=0.05, take_profit=0.5, min_exit_bar=1, max_hold=5, transaction_cost=0.0, window=3
    )
    env = VecExitEnv(ExitMarket.from_numpy(bars, [0], [1.0]), cfg, 1)
    for _ in range(5):
        _, _, done, info = env.step(torch.tensor([HOLD]))
    assert bool(done[0]) and int(info["exit_reason"][0]) == BY_TIME and int(info["holding_bars"][0]) == 5
    assert float(info["trade_return"][0]) == pytest.approx(close[5] / 100 - 1)
    bars["high"] = bars["high"].copy()
    bars["high"][2] = 200.0
    env = VecExitEnv(ExitMarket.from_numpy(bars, [0], [1.0]), cfg, 1)
    env.step(torch.tensor([HOLD]))
    _, _, done, info = env.step(torch.tensor([HOLD]))
    assert int(info["exit_reason"][0]) == BY_TAKE and float(info["trade_return"][0]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="a bar must follow"):
        ExitMarket.from_numpy(bars, [11], [1.0])


def _fixed_stops_by_hand(bars: dict, entry: int, side: float, cfg: ExitConfig) -> tuple[float, int, str]:
    """The fixed stop-loss / take-profit trade written out bar by bar, without the env."""
    price = bars["close"][entry]
    stop, take = price * (1 - side * cfg.stop_loss), price * (1 + side * cfg.take_profit)
    c = cfg.transaction_cost
    for k in range(1, cfg.max_hold + 1):
        t = entry + k
        fill = resolve_stops(
            side, stop, take, bars["open"][t], bars["high"][t], bars["low"][t], bars["close"][t]
        )
        if fill.kind != NO_FILL or k == cfg.max_hold or t == len(bars["close"]) - 1:
            ret = side * (float(fill.price) / price - 1) - 2 * c
            kind = {STOP_FILL: "stop_loss", TAKE_FILL: "take_profit"}.get(int(fill.kind), "time")
            return ret, k, kind
    raise AssertionError("unreachable")


def test_played_trades_equal_a_bar_by_bar_reference_and_baselines_differ():
    from himari_pipeline.exits.evaluate import (
        fixed_stops,
        play_trades,
        random_exit,
        time_exit,
        trade_metrics,
        trailing_stop,
    )

    bars, market = _market(entries=40)
    cfg = ExitConfig(stop_loss=0.006, take_profit=0.012, min_exit_bar=3, max_hold=30, transaction_cost=0.0005)
    trades, info = play_trades(market, cfg, fixed_stops)
    assert info["blocked_rate"] == 0.0 and info["actions"]["hold"] == trades["holding_bars"].sum()
    for _, row in trades.iterrows():
        ret, held, kind = _fixed_stops_by_hand(bars, int(row["entry_bar"]), float(row["side"]), cfg)
        assert (row["holding_bars"], row["exit_reason"]) == (held, kind)
        assert row["return"] == pytest.approx(ret, abs=1e-12)
    timed, _ = play_trades(market, cfg, time_exit(5))
    assert set(timed["exit_reason"]) <= {"agent", "stop_loss", "take_profit"}
    assert (timed.loc[timed["exit_reason"] == "agent", "holding_bars"] == 5).all()
    trailed, _ = play_trades(market, cfg, trailing_stop)
    assert trailed["holding_bars"].mean() < trades["holding_bars"].mean()  # a tightening stop exits sooner
    lengths = np.array([4, 9, 17])
    rand, _ = play_trades(market, cfg, random_exit(lengths, len(market.entry_bar), seed=3))
    agent = rand[rand["exit_reason"] == "agent"]
    assert len(agent) > 0 and set(agent["holding_bars"]) <= set(lengths.tolist())
    m = trade_metrics(trades, cfg.min_exit_bar)
    r = trades["return"].to_numpy()
    assert m["trades"] == 40 and m["mean_return"] == pytest.approx(r.mean())
    assert m["win_rate"] == pytest.approx((r > 0).mean())
    assert m["profit_factor"] == pytest.approx(r[r > 0].sum() / -r[r < 0].sum())
    assert m["exit_stop_loss"] + m["exit_take_profit"] + m["exit_time"] + m["exit_agent"] == pytest.approx(
        1.0
    )


def test_breakout_entries_are_causal_and_split_inside_segments():
    from himari_pipeline.exits.entries import breakout_entries, split_entries

    bars, _ = _market(n=600, seed=5)
    full = breakout_entries(bars["high"], bars["low"], bars["close"], lookback=20, min_gap=5)
    assert len(full) > 10 and set(full["side"]) == {-1, 1}
    for cut in (150, 300, 451):
        part = breakout_entries(
            bars["high"][:cut], bars["low"][:cut], bars["close"][:cut], lookback=20, min_gap=5
        )
        assert part.equals(full[full["entry_bar"] < cut].reset_index(drop=True)), cut
    e = full.iloc[0]
    t = int(e["entry_bar"])
    past = bars["high"][t - 20 : t] if e["side"] > 0 else bars["low"][t - 20 : t]
    assert (bars["close"][t] > past.max()) if e["side"] > 0 else (bars["close"][t] < past.min())
    assert (np.diff(full["entry_bar"]) >= 5).all()
    ranges = {"train": (0, 300), "val": (310, 450), "test": (460, 600)}
    parts = split_entries(full, ranges, max_hold=30)
    for name, (lo, hi) in ranges.items():
        eb = parts[name]["entry_bar"]
        assert ((eb >= lo) & (eb + 30 < hi)).all()
    kept = sum(len(p) for p in parts.values())
    inside = sum(
        ((full["entry_bar"] >= lo) & (full["entry_bar"] + 30 < hi)).sum() for lo, hi in ranges.values()
    )
    assert kept == inside and kept < len(full)


def test_entries_from_a_file_and_from_positions(tmp_path):
    from himari_pipeline.exits.entries import EntriesError, entries_from_positions, read_entries

    bars = pd.date_range("2024-01-01 01:00", periods=50, freq="h", tz="UTC")
    ns = bars.asi8
    good = "timestamp,side\n2024-01-01T05:00:00Z,long\n2024-01-01T03:00:00Z,-1\n2024-01-01T10:00:00Z,short\n"
    (tmp_path / "e.csv").write_text(good)
    got = read_entries(tmp_path / "e.csv", ns)
    assert got["entry_bar"].tolist() == [2, 4, 9] and got["side"].tolist() == [-1, 1, -1]
    cases = {
        "side.csv": ("timestamp,side\n2024-01-01T05:00:00Z,up\n", "row 1: rule bad_side"),
        "time.csv": ("timestamp,side\nsoon,1\n", "row 1: rule bad_timestamp"),
        "open.csv": (
            "timestamp,side\n2024-01-01T05:00:00Z,1\n2024-01-01T05:30:00Z,1\n",
            "row 2: rule unknown_timestamp",
        ),
        "dup.csv": (
            "timestamp,side\n2024-01-01T05:00:00Z,1\n2024-01-01T05:00:00Z,-1\n",
            "row 2: rule duplicate_timestamp",
        ),
        "cols.csv": ("time,side\n2024-01-01T05:00:00Z,1\n", "rule missing_column"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(EntriesError, match=message):
            read_entries(tmp_path / name, ns)
    pos = np.array([0, 0, 1, 1, 0, -1, -1, 1, 0.5, 0])
    e = entries_from_positions(pos)
    assert e["entry_bar"].tolist() == [2, 5, 7] and e["side"].tolist() == [1, -1, 1]
