"""PPO trainer and checkpoints on the vectorized trading env: masks, GAE, updates, determinism, resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from himari_pipeline.rl.checkpoints import (
    BestTracker,
    CollapseDetector,
    best_checkpoint,
    env_state,
    load_checkpoint,
    load_env_state,
    verify_no_pickle,
)
from himari_pipeline.rl.env import EnvConfig, MarketArrays, VecTradingEnv
from himari_pipeline.rl.policy import PolicyConfig, RegimeConditionedPolicy
from himari_pipeline.rl.ppo import PPOConfig, PPOTrainer, Rollout, TensorBoardLogger, return_metrics

CONTEXT = 16
STEPS, ENVS = 24, 4


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _market(n_bars: int, seed: int) -> MarketArrays:
    """Random features; feature 0 at bar t predicts returns[t+1] (a learnable, causal signal)."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n_bars, 6, generator=g)
    rets = 0.01 * torch.randn(n_bars, generator=g, dtype=torch.float64)
    rets[1:] += 0.004 * feats[:-1, 0].double()
    rets[0] = 0.0
    regimes = torch.randint(0, 4, (n_bars,), generator=g)
    return MarketArrays(feats, regimes, rets, 100.0 * torch.cumprod(1.0 + rets, 0))


TRAIN, VAL = _market(500, 1), _market(120, 2)


def _trainer(
    seed: int = 0,
    iterations: int = 3,
    checkpoint_dir=None,
    env_kw: dict | None = None,
    policy_kw: dict | None = None,
    **ppo_kw,
) -> PPOTrainer:
    torch.manual_seed(seed)
    pcfg = dict(n_features=6, context=CONTEXT, d_model=32, ff_dim=64, actor_hidden=32, critic_hidden=32)
    policy = RegimeConditionedPolicy(PolicyConfig.small(**{**pcfg, **(policy_kw or {})}))
    env_cfg = EnvConfig(
        **{
            "transaction_cost": 5e-4,
            "carry_cost": 1e-5,
            "episode_length": 40,
            "context": CONTEXT,
            **(env_kw or {}),
        }
    )
    cfg = dict(
        num_envs=ENVS, num_steps=STEPS, num_minibatches=2, update_epochs=2, seed=seed,
        total_timesteps=ENVS * STEPS * iterations, eval_every=10**9, learning_rate=1e-3,
    )  # fmt: skip
    cfg.update(ppo_kw)
    return PPOTrainer(policy, TRAIN, env_cfg, PPOConfig(**cfg), val_market=VAL, checkpoint_dir=checkpoint_dir)


def _weights(trainer: PPOTrainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.policy.state_dict().items()}


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_rollout_respects_action_masks() -> None:
    tr = _trainer(env_kw={"min_hold": 3, "cooldown": 2})
    tr.train(max_iterations=0)  # initial reset only
    rollout = tr.collect_rollout()
    assert rollout.obs_t.shape == (STEPS, ENVS)
    assert bool((~rollout.masks).any()), "the min-hold/cooldown rules must have masked something"
    assert bool(rollout.masks.gather(-1, rollout.actions[..., None]).all()), "a masked action was sampled"
    assert int(tr.env.blocked_total) == 0
    # within an episode consecutive observations are consecutive bars; episode starts are marked
    step_on = rollout.obs_t[1:] == rollout.obs_t[:-1] + 1
    assert bool((step_on | rollout.dones[1:]).all())


def test_gae_matches_direct_sum() -> None:
    tr = _trainer(gamma=0.9, gae_lambda=0.8, num_steps=4, num_envs=2, num_minibatches=1)
    g = torch.Generator().manual_seed(0)
    s, n = 4, 2
    z = torch.zeros(s, n)
    dones = torch.tensor([[0, 0], [0, 1], [1, 0], [0, 0]], dtype=torch.bool)  # obs k starts a new episode
    r = Rollout(
        obs_t=z.long(),
        regimes=z.long(),
        position_state=torch.zeros(s, n, 3),
        masks=torch.ones(s, n, 3).bool(),
        actions=z.long(),
        logprobs=z,
        values=torch.randn(s, n, generator=g),
        rewards=torch.randn(s, n, generator=g),
        dones=dones,
        next_value=torch.randn(n, generator=g),
        next_done=torch.tensor([False, True]),
    )
    tr.compute_gae(r)
    values = torch.cat([r.values, r.next_value[None]])
    starts = torch.cat([r.dones, r.next_done[None]]).float()
    for env in range(n):
        for k in range(s):
            want, discount = 0.0, 1.0
            for j in range(k, s):
                nonterminal = 1.0 - float(starts[j + 1, env])
                delta = float(r.rewards[j, env] + 0.9 * values[j + 1, env] * nonterminal - values[j, env])
                want += discount * delta
                if nonterminal == 0.0:
                    break
                discount *= 0.9 * 0.8
            assert math.isclose(float(r.advantages[k, env]), want, rel_tol=1e-5, abs_tol=1e-6)
    torch.testing.assert_close(r.returns, r.advantages + r.values)


def test_one_update_reduces_the_loss_on_a_fixed_batch() -> None:
    tr = _trainer(update_epochs=4, target_kl=None, learning_rate=3e-3)
    tr.train(max_iterations=0)
    rollout = tr.collect_rollout()
    tr.compute_gae(rollout)
    before = tr.loss_on(rollout, ent_coef=0.0)
    stats = tr.update(rollout, ent_coef=0.0)
    after = tr.loss_on(rollout, ent_coef=0.0)
    assert after["loss"] < before["loss"]
    assert after["value_loss"] < before["value_loss"]
    assert after["policy_loss"] < before["policy_loss"]
    assert abs(before["approx_kl"]) < 1e-5  # rollout and update encode the same bars identically
    assert stats["epochs"] == 4 and 0.0 <= stats["clipfrac"] <= 1.0


def test_kl_early_stop_cuts_the_epoch_loop() -> None:
    tr = _trainer(update_epochs=8, target_kl=1e-9, learning_rate=3e-3)
    tr.train(max_iterations=0)
    rollout = tr.collect_rollout()
    tr.compute_gae(rollout)
    assert tr.update(rollout, ent_coef=0.0)["epochs"] == 1


def test_training_is_deterministic_per_seed() -> None:
    logs: list[dict] = []
    a = _trainer(seed=3, iterations=2)
    a.log_fn = lambda step, m: logs.append(m)
    a.train()
    b = _trainer(seed=3, iterations=2)
    b.train()
    _assert_same_weights(_weights(a), _weights(b))
    c = _trainer(seed=4, iterations=2)
    c.train()
    assert not torch.equal(_weights(a)["actor.2.weight"], _weights(c)["actor.2.weight"])
    # CleanRL's diagnostics are logged every update, with action shares overall and per regime
    for key in ["losses/approx_kl", "losses/clipfrac", "losses/explained_variance", "losses/entropy",
                "losses/policy_loss", "losses/value_loss", "charts/SPS", "actions/share_short",
                "actions/regime3_share_flat", "charts/learning_rate", "charts/ent_coef"]:  # fmt: skip
        assert key in logs[-1], key
    assert logs[0]["charts/ent_coef"] == pytest.approx(0.10) and logs[-1]["charts/ent_coef"] == pytest.approx(
        0.02
    )
    assert logs[-1]["charts/learning_rate"] < logs[0]["charts/learning_rate"]
    shares = [logs[-1][f"actions/share_{a}"] for a in ("flat", "long", "short")]
    assert sum(shares) == pytest.approx(1.0)


def test_resume_reproduces_uninterrupted_training_exactly(tmp_path) -> None:
    eval_every = ENVS * STEPS * 2  # an evaluation + checkpoint after update 2, in both runs
    straight = _trainer(iterations=4, eval_every=eval_every, checkpoint_dir=tmp_path / "straight")
    straight.train()

    first = _trainer(iterations=4, eval_every=eval_every, checkpoint_dir=tmp_path / "resumed")
    first.train(max_iterations=3)
    first.save(tmp_path / "manual")
    resumed = _trainer(iterations=4, eval_every=eval_every, checkpoint_dir=tmp_path / "resumed")
    resumed.load(tmp_path / "manual")
    assert resumed.global_step == 3 * ENVS * STEPS and resumed.iteration == 3
    resumed.train()

    _assert_same_weights(_weights(straight), _weights(resumed))
    opt_a, opt_b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for i in opt_a:
        for name in opt_a[i]:
            assert torch.equal(opt_a[i][name], opt_b[i][name])
    assert straight.global_step == resumed.global_step == 4 * ENVS * STEPS
    assert [h["greedy_sharpe"] for h in straight.eval_history] == [
        h["greedy_sharpe"] for h in resumed.eval_history
    ]


def test_checkpoints_are_safetensors_and_json_only(tmp_path) -> None:
    tr = _trainer(iterations=2, eval_every=ENVS * STEPS, checkpoint_dir=tmp_path)
    tr.train()
    files = verify_no_pickle(tmp_path)
    assert {p.suffix for p in files} == {".safetensors", ".json"}
    ckpts = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert [p.name for p in ckpts] == ["step_000000096", "step_000000192"]
    best = best_checkpoint(tmp_path)
    assert best in ckpts
    ck = load_checkpoint(best)
    meta = json.loads((best / "checkpoint.json").read_text())
    assert meta["policy_config"]["context"] == CONTEXT and meta["ppo_config"]["num_steps"] == STEPS
    assert meta["env_config"]["transaction_cost"] == 5e-4 and "greedy_sharpe" in meta["metrics"]
    assert ck.step == meta["step"] and set(ck.model) == set(tr.policy.state_dict())
    assert "rng.trainer" in ck.state and any(k.startswith("env.") for k in ck.state)
    # a pickle smuggled into the directory is caught (bytes written by hand, no pickle module involved)
    (best / "extra.json").write_bytes(b"\x80\x05K\x01.")
    with pytest.raises(ValueError, match="pickle"):
        verify_no_pickle(best)


def test_evaluation_returns_are_the_env_arithmetic(tmp_path) -> None:
    tr = _trainer(iterations=1, bars_per_year=8760.0)
    tr.train()
    res = tr.evaluate()
    again = tr.evaluate()
    for mode in ("greedy", "temp"):
        s = res.series[mode]
        t = s["t"]
        assert torch.equal(t, torch.arange(CONTEXT - 1, VAL.num_bars - 1))  # whole series, one pass
        pos = s["position"]
        prev = torch.cat([torch.zeros(1, dtype=pos.dtype), pos[:-1]])
        want = pos * VAL.returns[t + 1] - 5e-4 * (pos - prev).abs() - 1e-5 * pos.abs()
        torch.testing.assert_close(s["net_return"], want)
        torch.testing.assert_close(pos, torch.tensor([0.0, 1.0, -1.0], dtype=pos.dtype)[s["action"]])
        assert torch.equal(s["action"], again.series[mode]["action"])  # seeded temperature sampling
        m = return_metrics(want, 8760.0)
        assert res.metrics[f"{mode}_sharpe"] == pytest.approx(
            float(want.mean() / want.std()) * math.sqrt(8760)
        )
        assert res.metrics[f"{mode}_mean"] == pytest.approx(m["mean"])


def test_collapse_detector_rules() -> None:
    det = CollapseDetector(max_action_share=0.95, entropy_floor=0.1)
    assert det.check([0.96, 0.02, 0.02]).collapsed
    assert not det.check([0.5, 0.3, 0.2], entropy=0.9).collapsed
    status = det.check([0.5, 0.3, 0.2], entropy=0.05)
    assert status.collapsed and "entropy" in status.reasons[0]


def test_collapsed_run_is_marked_and_can_stop(tmp_path) -> None:
    tr = _trainer(
        iterations=3, eval_every=ENVS * STEPS, checkpoint_dir=tmp_path, learning_rate=1e-6,
        stop_on_collapse=True, policy_kw={"actor_bias_init": (8.0, -8.0, -8.0)},
    )  # fmt: skip
    summary = tr.train()
    assert summary["collapsed"] and summary["iteration"] == 1
    assert summary["stop_reason"].startswith("collapse: action 0")
    meta = json.loads((tmp_path / "step_000000096" / "checkpoint.json").read_text())
    assert meta["collapsed"] is True and meta["metrics"]["greedy_share_flat"] == 1.0


def test_best_tracker_patience_and_nan() -> None:
    bt = BestTracker(metric="m", patience=2)
    flags = [bt.update(i, {"m": v}) for i, v in enumerate([1.0, 2.0, float("nan"), 1.9, 1.0])]
    assert flags == [True, True, False, False, False]
    assert bt.best_step == 1 and bt.should_stop
    assert BestTracker.from_dict(bt.to_dict()) == bt


def test_env_state_round_trip_mid_episode() -> None:
    cfg = EnvConfig(transaction_cost=1e-3, episode_length=30, context=CONTEXT, reward="sortino", min_hold=2)
    env = VecTradingEnv(TRAIN, cfg, 3, seed=5)
    env.reset()
    g = torch.Generator().manual_seed(0)
    for _ in range(7):
        env.step(torch.randint(0, 3, (3,), generator=g))
    tensors, meta = env_state(env)
    json.dumps(meta)
    actions = torch.randint(0, 3, (40, 3), generator=g)
    ref = [env.step(a)[1] for a in actions]
    fresh = VecTradingEnv(TRAIN, cfg, 3, seed=99)
    load_env_state(fresh, tensors, json.loads(json.dumps(meta)))
    got = [fresh.step(a)[1] for a in actions]
    for x, y in zip(ref, got, strict=True):
        assert torch.equal(x, y)


def test_tensorboard_logger_writes_events(tmp_path) -> None:
    logger = TensorBoardLogger(tmp_path)
    logger(10, {"losses/value_loss": 0.5, "nan_is_skipped": float("nan")})
    logger.close()
    assert any(p.name.startswith("events.out.tfevents") for p in tmp_path.iterdir())
