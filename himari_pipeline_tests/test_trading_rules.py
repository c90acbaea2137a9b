"""One set of trading rules: the env, the greedy replay and the backtest agree, by hand and at random."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from himari_pipeline.evaluation.backtest import backtest
from himari_pipeline.evaluation.replay import costs_from_experiment, replay_greedy
from himari_pipeline.rl.env import EnvConfig, MarketArrays, VecTradingEnv
from himari_pipeline.rl.policy import PolicyConfig, RegimeConditionedPolicy
from himari_pipeline.trading.rules import TradingRules, advance_hold, enforce_holds, hold_blocked, trade_step
from himari_pipeline.vocabulary import FLAT, LONG, SHORT

DIRECTION = np.array([0.0, 1.0, -1.0])  # of FLAT, LONG, SHORT


def _market(ret: np.ndarray, gaps: np.ndarray, n_features: int = 4, seed: int = 0) -> MarketArrays:
    rng = np.random.default_rng(seed)
    n = len(ret)
    feats = rng.standard_normal((n, n_features)).astype(np.float32)
    prices = 100.0 * np.cumprod(1.0 + np.nan_to_num(ret))
    return MarketArrays.from_numpy(feats, rng.integers(0, 4, n), ret, prices, gap_before=gaps)


def _env_run(market: MarketArrays, cfg: EnvConfig, actions: np.ndarray, start: int) -> dict[str, np.ndarray]:
    """Step one env from ``start`` through ``actions`` until done; the per-step info as arrays."""
    env = VecTradingEnv(market, cfg, 1)
    env.reset(start=start)
    rows: dict[str, list] = {k: [] for k in ("position", "net", "equity", "blocked", "terminated")}
    for a in actions:
        _, _, done, info = env.step(torch.tensor([int(a)]))
        rows["position"].append(info["position"].item())
        rows["net"].append(info["pnl"].item() - info["cost"].item())
        rows["equity"].append(info["equity"].item())
        rows["blocked"].append(bool(info["blocked"][0]))
        rows["terminated"].append(bool(info["terminated"][0]))
        if bool(done[0]):
            break
    return {k: np.array(v) for k, v in rows.items()}


def _env_cfg(rules: TradingRules, context: int = 1) -> EnvConfig:
    fields = {f.name: getattr(rules, f.name) for f in dataclasses.fields(rules)}
    return EnvConfig(**fields, episode_length=None, context=context)


# ---------------------------------------------------------------- by hand
HAND_RULES = TradingRules(
    transaction_cost=0.01,
    carry_cost=0.001,
    borrow_rate_annual=0.002 * 8760,  # 0.002 per bar per unit short
    bars_per_year=8760,
    leverage=2.0,
    max_leverage=2.0,
    min_hold=2,
    cooldown=2,
)
HAND_RET = np.array([np.nan, 0.01, -0.02, 0.03, 0.01, -0.01, 0.02])
HAND_GAPS = np.array([0, 0, 0, 2, 0, 0, 1])  # step 2 spans 3 bars (held short), step 5 spans 2 (flat)
HAND_TARGETS = np.array([1.0, -1.0, -1.0, 0.0, 0.0, 1.0, 0.0])  # directions; the last earns nothing
# worked out by hand: kept exposure, transaction, carry, borrow, pnl per step
HAND_STEPS = [
    (2.0, 0.02, 0.002, 0.0, 0.02),  # open long
    (2.0, 0.0, 0.002, 0.0, -0.04),  # short wanted, held 1 < min_hold 2: kept long
    (-2.0, 0.04, 0.002 * 3, 0.004 * 3, -0.06),  # reversal; carry and borrow over 1 + 2 missing bars
    (-2.0, 0.0, 0.002, 0.004, -0.02),  # close wanted, held 1 < 2: kept short
    (0.0, 0.02, 0.0, 0.0, 0.0),  # close
    (0.0, 0.0, 0.0, 0.0, 0.0),  # long wanted, 1 bar after the close < cooldown 2: kept flat
]


def test_hand_computed_backtest_with_every_rule() -> None:
    res = backtest(HAND_TARGETS, HAND_RET, HAND_RULES, gap_before=HAND_GAPS)
    expo, tx, carry, borrow, pnl = (np.array(c) for c in zip(*HAND_STEPS, strict=True))
    np.testing.assert_array_equal(res.exposure, expo)
    np.testing.assert_allclose(res.transaction_costs, tx, atol=1e-15)
    np.testing.assert_allclose(res.carry_costs, carry, atol=1e-15)
    np.testing.assert_allclose(res.borrow_costs, borrow, atol=1e-15)
    np.testing.assert_allclose(res.gross_returns, pnl, atol=1e-15)
    net = pnl - tx - carry - borrow
    np.testing.assert_allclose(net, [-0.002, -0.042, -0.118, -0.026, -0.02, 0.0], atol=1e-15)
    np.testing.assert_allclose(res.net_returns, net, atol=1e-15)
    np.testing.assert_allclose(res.equity, np.r_[1.0, np.cumprod(1.0 + net)], rtol=1e-14)
    assert res.blocked.tolist() == [False, True, False, True, False, True, False]
    assert res.gap_steps.tolist() == [0, 0, 2, 0, 0, 1]
    assert res.held_across_gaps.tolist() == [False, False, True, False, False, False]
    assert not res.ruined


def test_hand_computed_env_with_every_rule() -> None:
    actions = np.array([LONG, SHORT, SHORT, FLAT, FLAT, LONG])
    run = _env_run(_market(HAND_RET, HAND_GAPS), _env_cfg(HAND_RULES), actions, start=0)
    expo, tx, carry, borrow, pnl = (np.array(c) for c in zip(*HAND_STEPS, strict=True))
    np.testing.assert_array_equal(run["position"], expo)
    np.testing.assert_allclose(run["net"], pnl - tx - carry - borrow, atol=1e-15)
    assert run["blocked"].tolist() == [False, True, False, True, False, True]
    assert run["equity"][-1] == pytest.approx(0.998 * 0.958 * 0.882 * 0.974 * 0.98, rel=1e-14)


def test_gap_costs_scale_with_time_only_when_holding() -> None:
    """Holding through k missing bars costs carry and borrow k+1 times; the trade itself costs once."""
    rules = TradingRules(transaction_cost=0.01, carry_cost=0.001, borrow_rate_annual=8.76, bars_per_year=8760)
    short = np.array([-1.0, -1.0, 0.0])
    one = trade_step(rules, np.zeros(3), short, np.zeros(3), 1.0)
    four = trade_step(rules, np.zeros(3), short, np.zeros(3), 1.0, span=np.full(3, 4.0))
    np.testing.assert_allclose(four.carry_cost, 4 * one.carry_cost, atol=1e-18)
    np.testing.assert_allclose(four.borrow_cost, 4 * one.borrow_cost, atol=1e-18)
    np.testing.assert_array_equal(four.transaction_cost, one.transaction_cost)
    assert four.cost[2] == 0.0 and four.cost[0] > one.cost[0]


# ---------------------------------------------------------------- env = replay = backtest, at random
def _random_case(seed: int) -> tuple[TradingRules, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(80, 200))
    vol = [0.003, 0.01, 0.15][seed % 3]  # the largest reach ruin
    ret = np.r_[np.nan, rng.standard_t(4, n - 1) * vol]
    gaps = np.where(rng.random(n) < 0.1, rng.integers(1, 6, n), 0)
    rules = TradingRules(
        transaction_cost=float(rng.uniform(1e-4, 5e-3)),
        carry_cost=float(rng.uniform(1e-6, 1e-4)),
        borrow_rate_annual=float(rng.uniform(0.01, 0.2)),
        bars_per_year=float(rng.choice([252.0, 8760.0, 105_120.0])),
        leverage=float(rng.uniform(0.5, 3.0)),
        max_leverage=3.0,
        ruin_equity=float(rng.choice([0.0, 0.5])),
        min_hold=int(rng.integers(2, 5)),
        cooldown=int(rng.integers(2, 4)),
    )
    return rules, ret, gaps


def _agree(env: dict[str, np.ndarray], res, lev: float) -> None:
    """The env's steps (up to ruin) and the backtest's agree to 1e-12; ruin at the same step."""
    k = len(env["net"])
    np.testing.assert_allclose(res.exposure[:k], env["position"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.raw_net_returns[:k], env["net"], rtol=0, atol=1e-12)
    if env["terminated"][-1]:
        assert res.ruined and res.ruin_bar == k
        np.testing.assert_allclose(res.equity[1:k], env["equity"][:-1], rtol=1e-12, atol=1e-12)
    else:
        assert not res.ruined
        np.testing.assert_allclose(res.equity[1 : k + 1], env["equity"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(9))
def test_env_and_backtest_agree_with_every_rule_on(seed: int) -> None:
    rules, ret, gaps = _random_case(seed)
    actions = np.random.default_rng(100 + seed).integers(0, 3, len(ret) - 1)
    env = _env_run(_market(ret, gaps), _env_cfg(rules), actions, start=0)
    res = backtest(np.r_[DIRECTION[actions], 0.0], ret, rules, gap_before=gaps)
    _agree(env, res, rules.leverage)
    k = len(env["net"])
    np.testing.assert_array_equal(res.blocked[:k], env["blocked"])
    if k >= 20:  # not ruined at once: the hold rules blocked some wanted changes
        assert env["blocked"].any()


def _policy(seed: int, n_features: int = 4, context: int = 4) -> RegimeConditionedPolicy:
    torch.manual_seed(seed)
    cfg = PolicyConfig(
        n_features=n_features,
        context=context,
        d_model=8,
        n_heads=2,
        n_layers=1,
        ff_dim=8,
        actor_hidden=8,
        critic_hidden=8,
    )
    policy = RegimeConditionedPolicy(cfg)
    with torch.no_grad():
        policy.actor[2].weight.mul_(300.0)  # decisive logits that change with the features
    return policy.eval()


@pytest.mark.parametrize("seed", range(6))
def test_replay_env_and_backtest_agree_with_every_rule_on(seed: int) -> None:
    rules, ret, gaps = _random_case(seed)
    context = 4
    market = _market(ret, gaps, seed=seed)
    feats, regimes = market.features.numpy(), market.regime_ids.numpy()
    cfg = _env_cfg(rules, context)
    rp = replay_greedy([_policy(seed)], [(feats, regimes, ret, gaps)], cfg)[0]
    env = _env_run(market, cfg, rp.action, start=context - 1)
    # the replay's decisions already obey the hold rules: the env blocks none of them
    assert not env["blocked"].any()
    np.testing.assert_allclose(rp.position, env["position"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(rp.net_return, env["net"], rtol=0, atol=1e-12)
    assert rp.ruined == bool(env["terminated"][-1])
    equity = np.cumprod(1.0 + rp.net_return)
    np.testing.assert_allclose(equity, env["equity"], rtol=1e-12, atol=1e-12)
    directions = DIRECTION[np.r_[rp.action, rp.action[-1]]]  # the last decision earns nothing
    res = backtest(
        directions,
        ret[context - 1 : context + len(directions) - 1],
        rules,
        gap_before=gaps[context - 1 :][: len(directions)],
    )
    assert not res.blocked.any()
    _agree(env, res, rules.leverage)
    free = replay_greedy(
        [_policy(seed)], [(feats, regimes, ret, gaps)], dataclasses.replace(cfg, min_hold=0, cooldown=0)
    )[0]
    assert not np.array_equal(free.action, rp.action)  # the rules changed the decisions


# ---------------------------------------------------------------- the rules' own checks, both ways
def test_rules_validate() -> None:
    TradingRules(transaction_cost=0.0, leverage=5.0, max_leverage=5.0, min_hold=3, ruin_equity=0.5)
    for bad in (
        {"transaction_cost": -0.1},
        {"carry_cost": float("nan")},
        {"bars_per_year": 0.0},
        {"leverage": 6.0},
        {"max_leverage": float("inf")},
        {"ruin_equity": -1.0},
        {"min_hold": -1},
    ):
        with pytest.raises(ValueError):
            TradingRules(**bad)
    with pytest.raises(ValueError, match="leverage"):
        EnvConfig(leverage=6.0)


def test_enforce_holds_leaves_a_compliant_series_alone() -> None:
    rules = TradingRules(min_hold=2, cooldown=2)
    ok = np.array([1.0, 1.0, 0.0, 0.0, -1.0, -1.0, -1.0])
    kept, blocked = enforce_holds(rules, ok)
    np.testing.assert_array_equal(kept, ok)
    assert not blocked.any()
    kept, blocked = enforce_holds(rules, np.array([1.0, 0.0, 0.0, 1.0, 1.0, -1.0]))
    np.testing.assert_array_equal(kept, [1.0, 1.0, 0.0, 0.0, 1.0, 1.0])
    assert blocked.tolist() == [False, True, False, True, False, True]


def test_costs_from_experiment_are_the_env_rules() -> None:
    cfg = EnvConfig(transaction_cost=0.002, carry_cost=1e-5, min_hold=4, bars_per_year=252.0)
    assert costs_from_experiment(None, cfg) == cfg.rules
    assert costs_from_experiment(None, cfg).min_hold == 4
    assert costs_from_experiment(None, None) == TradingRules()


def test_gap_array_is_checked() -> None:
    ret = np.array([np.nan, 0.01, 0.02])
    with pytest.raises(ValueError, match="gap_before"):
        _market(ret, np.array([0, -1, 0]))
    with pytest.raises(ValueError, match="gap_before"):
        backtest(np.ones(3), ret, TradingRules(), gap_before=np.array([0, 1]))
    assert _market(ret, np.array([0, 1, 0])).gap_before.tolist() == [0, 1, 0]


@pytest.mark.parametrize("seed", range(4))
def test_enforce_holds_matches_a_bar_by_bar_walk(seed: int) -> None:
    """The run-skipping walk gives what stepping every bar through the hold rules gives."""
    rng = np.random.default_rng(seed)
    rules = TradingRules(min_hold=int(rng.integers(1, 6)), cooldown=int(rng.integers(0, 6)))
    targets = np.repeat(rng.choice([-1.0, -0.5, 0.0, 1.0], 300), rng.integers(1, 8, 300))
    kept, blocked = enforce_holds(rules, targets)
    position, held, after_close = 0.0, 0, False
    for i, target in enumerate(targets):
        assert blocked[i] == hold_blocked(rules, position, target, held, after_close)
        new = position if blocked[i] else target
        assert kept[i] == new
        held, after_close = advance_hold(position, new, held, after_close)
        position = new
    assert blocked.any()
