"""Each reward's documented formula on hand-made tensors, the registry and the scale diagnostic."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from himari_pipeline.rl.rewards import (
    REWARDS,
    RewardScaleError,
    StepContext,
    make_reward,
    reward_scale_diagnostic,
    training_log_scale_problems,
)


def ctx(
    position=(0.0,),
    new_position=(0.0,),
    r_next=(0.0,),
    costs=None,
    regime=None,
    bars_held=None,
    after_close=None,
) -> StepContext:
    d = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    pos, new, r = d(position), d(new_position), d(r_next)
    n = len(new)
    c = d(costs) if costs is not None else torch.zeros(n, dtype=torch.float64)
    zeros = torch.zeros(n, dtype=torch.float64)
    return StepContext(
        position=pos,
        new_position=new,
        r_next=r,
        pnl=new * r,
        costs=c,
        transaction_cost=c,
        carry_cost=zeros,
        borrow_cost=zeros,
        regime=torch.tensor(regime if regime is not None else [0] * n, dtype=torch.long),
        bars_held=torch.tensor(bars_held if bars_held is not None else [0] * n, dtype=torch.long),
        after_close=torch.tensor(after_close if after_close is not None else [False] * n),
    )


def close(a: torch.Tensor, b) -> None:
    np.testing.assert_allclose(a.double().numpy(), np.asarray(b, dtype=np.float64), rtol=1e-6, atol=1e-9)


def test_registry_names_and_unknown():
    assert set(REWARDS) == {
        "pnl",
        "demeaned_pnl",
        "sortino",
        "carry",
        "anti_overtrading",
        "balance",
        "adaptive_regime",
    }
    for cls in REWARDS.values():
        assert cls.__doc__ and "reward" in cls.__doc__.lower()
    with pytest.raises(KeyError, match="unknown reward"):
        make_reward("nope", 2)


def test_pnl_reward():
    f = make_reward("pnl", 3)  # default scale 100: percent of equity
    out = f(ctx(new_position=[1.0, -2.0, 0.0], r_next=[0.01, 0.02, 0.05], costs=[0.001, 0.0, 0.0015]))
    close(out, [100 * (0.01 - 0.001), 100 * (-0.04), 100 * (-0.0015)])
    assert out.dtype == torch.float32


def test_sortino_reward_trailing_downside_deviation():
    f = make_reward("sortino", 1, scale=1.0, window=3, downside_coef=0.5)
    xs = [0.01, -0.02, -0.01, 0.03, 0.0]
    sq_windows = [[0], [4e-4], [4e-4, 1e-4], [4e-4, 1e-4, 0], [1e-4, 0, 0]]  # min(x,0)^2, last 3
    for x, sq in zip(xs, sq_windows, strict=True):
        out = f(ctx(new_position=[1.0], r_next=[x]))
        close(out, [x - 0.5 * math.sqrt(sum(sq) / 3)])
    f.reset(torch.tensor([True]))  # a new episode forgets the window
    close(f(ctx(new_position=[1.0], r_next=[0.01])), [0.01])


def test_sortino_reset_is_per_env():
    f = make_reward("sortino", 2, scale=1.0, window=2, downside_coef=1.0)
    f(ctx(new_position=[1.0, 1.0], r_next=[-0.02, -0.02]))
    f.reset(torch.tensor([True, False]))
    out = f(ctx(new_position=[1.0, 1.0], r_next=[0.0, 0.0]))
    close(out, [0.0, -math.sqrt(4e-4 / 2)])


def test_carry_reward():
    f = make_reward("carry", 3, scale=1.0, carry_coef=1e-4)
    out = f(ctx(new_position=[2.0, 0.0, -1.0], r_next=[0.01, 0.01, -0.01], costs=[0.003, 0.0, 0.0]))
    close(out, [0.02 - 0.003 - 2e-4, 0.0, 0.01 - 1e-4])


def test_anti_overtrading_reward_cases():
    f = make_reward(
        "anti_overtrading",
        5,
        scale=1.0,
        cooldown_bars=4,
        cooldown_penalty=2e-4,
        min_hold_bars=2,
        min_hold_penalty=1e-4,
        persistence_bonus=5e-5,
    )
    c = ctx(
        position=[0.0, 0.0, 1.0, 1.0, 0.0],
        new_position=[1.0, 1.0, -1.0, 1.0, 0.0],
        r_next=[0.0] * 5,
        bars_held=[2, 4, 1, 7, 1],
        after_close=[True, True, False, False, True],
    )
    # 0: reopen 2 bars after a close (< 4): penalty; 1: reopen after 4 bars: none;
    # 2: reversal after 1 bar (< 2): early exit; 3: keeps the LONG: persistence; 4: stays flat: nothing
    close(f(c), [-2e-4, 0.0, -1e-4, 5e-5, 0.0])


def test_balance_reward_short_share_over_window():
    f = make_reward("balance", 1, scale=1.0, target_short=0.25, balance_penalty=1e-3, window=4)
    positions = [-1.0, 1.0, 1.0, 1.0, 1.0, -1.0]
    shares = [1 / 1, 1 / 2, 1 / 3, 1 / 4, 0 / 4, 1 / 4]
    for p, share in zip(positions, shares, strict=True):
        out = f(ctx(new_position=[p], r_next=[0.001]))
        close(out, [p * 0.001 - 1e-3 * abs(share - 0.25)])
    f.reset(torch.tensor([True]))
    close(f(ctx(new_position=[1.0], r_next=[0.0])), [-1e-3 * 0.25])


def test_adaptive_regime_reward_by_hand():
    r = np.array([0.02, -0.01, 0.005, -0.03])
    new = np.array([1.0, 1.0, 0.0, -2.0])
    regime = [0, 2, 1, 3]
    costs = np.array([0.001, 0.0, 0.0, 0.002])
    f = make_reward("adaptive_regime", 4)
    out = f(ctx(new_position=new, r_next=r, costs=costs, regime=regime))
    vol = math.sqrt(np.mean(r**2)) + 1e-6
    z = r / vol
    e = np.mean(np.abs(z))
    d = np.sign(new)
    expected = [
        d[0] * z[0] - e * 0.40 - costs[0] / vol,  # LOW_VOL trade, right direction
        d[1] * z[1] - e * (0.40 + 0.40 + 0.50),  # HIGH_VOL trade, wrong direction
        -e * 1.0,  # flat in TRENDING: missed opportunity
        d[3] * z[3] - e * (0.40 + 0.60) - costs[3] / vol,  # CRISIS short, right direction
    ]
    close(out, expected)


def test_adaptive_regime_trending_trade_bonus():
    f = make_reward("adaptive_regime", 2, env_cost_coef=0.0)
    out = f(ctx(new_position=[1.0, 0.0], r_next=[0.01, 0.01], regime=[1, 0]))
    # vol = 0.01 (+eps), z = [1, 1], E = 1; trending trade cost 0.40 - 0.40 = 0; flat LOW_VOL costs 0
    close(out, [1.0 / (1 + 1e-4), 0.0])


def test_scale_diagnostic_passes_sane_rewards():
    rng = np.random.default_rng(0)
    d = reward_scale_diagnostic(torch.tensor(rng.standard_normal(1000) * 0.5), value_loss=0.3)
    assert d["ok"] and abs(d["mean"]) < 0.1 and d["std"] == pytest.approx(0.5, rel=0.1)
    assert d["abs_max"] < 5 and d["n"] == 1000 and not d["tiny"]
    assert reward_scale_diagnostic(torch.zeros(10))["tiny"]


@pytest.mark.parametrize(
    ("rewards", "value_loss", "match"),
    [
        (np.full(100, -1.2e7), None, "mean"),  # log 003: mean episode reward -1.2e7
        (np.r_[np.full(50, 500.0), np.full(50, -500.0)], None, "std"),
        (np.r_[np.zeros(99_999), 2e4], None, "max"),
        (np.zeros(10), 1.91e13, "value loss"),  # log 003: value loss 1.9e13
        (np.r_[0.1, np.nan], None, "non-finite"),
    ],
)
def test_scale_diagnostic_raises_on_absurd_scale(rewards, value_loss, match):
    with pytest.raises(RewardScaleError, match=match):
        reward_scale_diagnostic(torch.tensor(rewards), value_loss=value_loss)


def test_windows_match_a_naive_reference_across_random_resets():
    """Sortino and balance windows (ring buffer, lazy reset) vs plain per-env episode lists."""
    rng = np.random.default_rng(4)
    n, w = 3, 5
    sortino = make_reward("sortino", n, scale=1.0, window=w, downside_coef=1.0)
    balance = make_reward("balance", n, scale=1.0, target_short=0.3, balance_penalty=1.0, window=w)
    history: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    for _ in range(60):
        x = rng.standard_normal(n) * 0.01
        pos = rng.choice([-1.0, 0.0, 1.0], size=n)
        c = ctx(new_position=pos, r_next=x * pos)  # pnl = pos * r_next = x * pos^2
        got_s, got_b = sortino(c).double().numpy(), balance(c).double().numpy()
        for i in range(n):
            pnl = float(pos[i] * x[i] * pos[i])
            history[i].append((pnl, pos[i]))
            last = history[i][-w:]
            dd = math.sqrt(sum(min(p, 0.0) ** 2 for p, _ in last) / w)
            share = sum(q < 0 for _, q in last) / len(last)
            assert got_s[i] == pytest.approx(pnl - dd, abs=1e-7)
            assert got_b[i] == pytest.approx(pnl - abs(share - 0.3), abs=1e-7)
        done = rng.random(n) < 0.15
        sortino.reset(torch.tensor(done))
        balance.reset(torch.tensor(done))
        for i in np.flatnonzero(done):
            history[i] = []


def test_training_log_scales_sane_and_absurd() -> None:
    sane = {
        "rollout/reward_mean": [0.1, -0.3],
        "rollout/reward_std": [1.0, 2.0],
        "losses/value_loss": [0.5, 3.0],
    }
    assert training_log_scale_problems(sane) == []
    assert training_log_scale_problems({}) == []  # nothing logged, nothing to judge
    absurd = {
        "rollout/reward_mean": [0.1, -1.2e7],
        "rollout/reward_std": [1.0, 2e7],
        "losses/value_loss": [1.9e13],
    }
    problems = training_log_scale_problems(absurd)
    assert len(problems) == 3 and "reward mean" in problems[0] and "value loss" in problems[2]
    nan_only = {"losses/value_loss": [float("nan")]}
    with pytest.warns(RuntimeWarning):  # numpy warns on an all-NaN column; the column is a problem
        assert training_log_scale_problems(nan_only) == ["value loss reached nan (> 1e+06)"]
