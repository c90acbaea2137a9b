"""PPO formulas shared by the single-seed and population trainers; checkpoint writes, env-state loads."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from himari_pipeline.rl.checkpoints import (
    META_FILE,
    best_checkpoint,
    env_state,
    load_checkpoint,
    load_env_state,
    save_checkpoint,
    write_best_pointer,
)
from himari_pipeline.rl.env import EnvConfig, MarketArrays, VecTradingEnv
from himari_pipeline.rl.ppo import PPOConfig
from himari_pipeline.rl.ppo_math import clipped_losses, ent_coef_at, gae, iteration_log, lr_at


def _batch(shape: tuple[int, ...], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    old = -1.1 + 0.1 * torch.randn(shape, generator=g)
    return {
        "newlogprob": old + 0.5 * torch.randn(shape, generator=g),  # ratios well outside the clip range
        "oldlogprob": old,
        "advantages": torch.randn(shape, generator=g),
        "newvalue": torch.randn(shape, generator=g),
        "oldvalue": torch.randn(shape, generator=g),
        "returns": torch.randn(shape, generator=g),
        "entropy": torch.rand(shape, generator=g),
    }


def test_schedules_anneal_linearly_over_the_updates() -> None:
    cfg = PPOConfig(total_timesteps=4 * 8 * 128, num_envs=8, num_steps=128, learning_rate=1e-3)
    assert cfg.num_iterations == 4
    assert [lr_at(cfg, i) for i in (1, 2, 4)] == pytest.approx([1e-3, 0.75e-3, 0.25e-3])
    assert [ent_coef_at(cfg, i) for i in (1, 4)] == pytest.approx([cfg.ent_coef_start, cfg.ent_coef_end])
    flat = PPOConfig(total_timesteps=4 * 8 * 128, num_envs=8, num_steps=128, anneal_lr=False)
    assert lr_at(flat, 4) == flat.learning_rate
    one = PPOConfig(total_timesteps=8, num_envs=8, num_steps=128)  # a single update: the start value
    assert ent_coef_at(one, 1) == one.ent_coef_start


def test_clipped_losses_by_hand() -> None:
    """One sample: the ratio e^0.5 is clipped at 1.2 for a positive advantage, not for a negative one."""
    cfg = PPOConfig(clip_coef=0.2, norm_adv=False, vf_coef=0.5)
    one = {k: torch.tensor([v]) for k, v in dict(
        newlogprob=0.5, oldlogprob=0.0, newvalue=2.0, oldvalue=0.0, returns=1.0, entropy=0.3,
    ).items()}  # fmt: skip
    loss, stats = clipped_losses(cfg, advantages=torch.tensor([1.0]), ent_coef=0.1, **one)
    assert float(stats["policy_loss"]) == pytest.approx(-1.2)
    # value: unclipped error 1, clipped value 0.2 has error 0.8 -> max(1, 0.64) / 2
    assert float(stats["value_loss"]) == pytest.approx(0.5)
    assert float(loss) == pytest.approx(-1.2 - 0.1 * 0.3 + 0.5 * 0.5)
    assert float(stats["clipfrac"]) == 1.0
    assert float(stats["approx_kl"]) == pytest.approx(math.exp(0.5) - 1 - 0.5)
    _, neg = clipped_losses(cfg, advantages=torch.tensor([-1.0]), ent_coef=0.1, **one)
    assert float(neg["policy_loss"]) == pytest.approx(math.exp(0.5))  # the pessimistic (unclipped) side
    no_vclip = dataclasses.replace(cfg, clip_vloss=False)
    _, plain = clipped_losses(no_vclip, advantages=torch.tensor([1.0]), ent_coef=0.1, **one)
    assert float(plain["value_loss"]) == pytest.approx(0.5 * (2.0 - 1.0) ** 2)


def test_per_seed_losses_equal_each_seeds_own_losses() -> None:
    """Reducing over dim 1 of (seeds, samples) gives each seed what the single-seed reduction gives it."""
    cfg = PPOConfig()
    batch = _batch((3, 24))
    loss, stats = clipped_losses(cfg, ent_coef=0.05, dim=1, **batch)
    assert loss.shape == (3,)
    for s in range(3):
        one_loss, one = clipped_losses(cfg, ent_coef=0.05, **{k: v[s] for k, v in batch.items()})
        torch.testing.assert_close(loss[s], one_loss)
        for key, value in one.items():
            torch.testing.assert_close(stats[key][s], value)
    # normalising the advantages matters: without it the losses differ
    _, raw = clipped_losses(dataclasses.replace(cfg, norm_adv=False), ent_coef=0.05, dim=1, **batch)
    assert not torch.allclose(raw["policy_loss"], stats["policy_loss"])


def test_gae_on_a_seed_axis_equals_gae_per_seed() -> None:
    g = torch.Generator().manual_seed(1)
    k, s, n = 6, 3, 4
    rewards, values = torch.randn(k, s, n, generator=g), torch.randn(k, s, n, generator=g)
    dones = torch.rand(k, s, n, generator=g) < 0.3
    next_value, next_done = torch.randn(s, n, generator=g), torch.rand(s, n, generator=g) < 0.3
    adv, ret = gae(rewards, values, dones, next_value, next_done, 0.9, 0.8)
    for i in range(s):
        a, r = gae(rewards[:, i], values[:, i], dones[:, i], next_value[i], next_done[i], 0.9, 0.8)
        torch.testing.assert_close(adv[:, i], a)
        torch.testing.assert_close(ret[:, i], r)
    # an episode boundary cuts the recursion: the step before a new episode sees only its own delta
    ones, zeros, no = torch.ones(2, 1), torch.zeros(2, 1), torch.zeros(1, dtype=torch.bool)
    new_episode = torch.tensor([[False], [True]])
    cut, _ = gae(ones, zeros, new_episode, torch.zeros(1), no, 0.9, 0.8)
    assert float(cut[0, 0]) == pytest.approx(1.0)
    joined, _ = gae(ones, zeros, torch.zeros(2, 1, dtype=torch.bool), torch.zeros(1), no, 0.9, 0.8)
    assert float(joined[0, 0]) == pytest.approx(1.0 + 0.9 * 0.8)


def test_iteration_log_reports_episodes_rewards_and_shares() -> None:
    log = iteration_log(
        torch.zeros(4, 2), torch.arange(8.0).reshape(4, 2), torch.ones(4, 2), [0.1, 0.3], {"approx_kl": 0.01},
        torch.tensor([[0, 1], [1, 1], [2, 0], [1, 1]]),
    )  # fmt: skip
    assert log["charts/episodic_return"] == pytest.approx(0.2) and log["charts/episodes"] == 2.0
    assert log["rollout/reward_mean"] == 1.0 and log["losses/approx_kl"] == 0.01
    assert sum(v for k, v in log.items() if k.startswith("actions/share_")) == pytest.approx(1.0)
    assert math.isnan(iteration_log(*(torch.zeros(2, 1),) * 3, [], {}, torch.zeros(2, 1).long())[
        "charts/episodic_return"
    ])  # fmt: skip


# --------------------------------------------------------------------------- atomic checkpoint writes
def test_checkpoint_writes_replace_whole_or_not_at_all(tmp_path) -> None:
    path = tmp_path / "step_000000001"
    save_checkpoint(path, model={"w": torch.zeros(2)}, meta={"step": 1})
    save_checkpoint(path, model={"w": torch.ones(2)}, meta={"step": 1})  # a rewrite replaces it
    assert torch.equal(load_checkpoint(path).model["w"], torch.ones(2))
    with pytest.raises(TypeError, match="JSON"):  # the tensors are written, then the JSON fails
        save_checkpoint(path, model={"w": torch.full((2,), 7.0)}, meta={"step": object()})
    assert torch.equal(load_checkpoint(path).model["w"], torch.ones(2))  # the old one is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left behind
    write_best_pointer(tmp_path, path, 1, "greedy_sharpe", 0.5)
    assert best_checkpoint(tmp_path) == path
    assert json.loads((path / META_FILE).read_text()) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json", path.name]


def test_env_state_loads_only_into_an_env_of_its_layout() -> None:
    g = torch.Generator().manual_seed(0)
    rets = 0.01 * torch.randn(300, generator=g, dtype=torch.float64)
    feats, regimes = torch.randn(300, 4, generator=g), torch.zeros(300, dtype=torch.long)
    market = MarketArrays(feats, regimes, rets, 1 + rets)
    env = VecTradingEnv(market, EnvConfig(episode_length=20, context=4), 3, seed=1)
    env.reset()
    env.step(torch.tensor([1, 2, 0]))
    tensors, meta = env_state(env)
    other = VecTradingEnv(market, EnvConfig(episode_length=20, context=4), 3, seed=2)
    load_env_state(other, tensors, meta)
    assert torch.equal(other.t, env.t) and torch.equal(other.equity, env.equity)
    per_segment = {f"segment0.{k}": v for k, v in tensors.items()}  # a state saved by per-segment envs
    with pytest.raises(ValueError, match="another layout"):
        load_env_state(other, per_segment, meta)
