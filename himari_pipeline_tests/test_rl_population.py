"""Seed populations trained batched: stacked policies match their seeds, per-seed Adam, seed folders."""

from __future__ import annotations

import json

import pytest
import torch

from himari_pipeline.rl.checkpoints import BEST_FILE, META_FILE, best_checkpoint
from himari_pipeline.rl.experiments import Experiment, load_experiment
from himari_pipeline.rl.policy import PolicyConfig, RegimeConditionedPolicy
from himari_pipeline.rl.ppo import PPOConfig
from himari_pipeline.rl.stacked_policies import StackedAdam, StackedPolicies
from himari_pipeline.rl.stacked_ppo import seed_run_dir
from himari_pipeline.rl.training import (
    PopulationSummary,
    build_synthetic_splits,
    evaluate_checkpoint,
    train_experiment,
)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def splits():
    return build_synthetic_splits("planted", seed=3, start="2024-01-01", end="2025-12-31", context=16)


def _policies(n: int) -> list[RegimeConditionedPolicy]:
    cfg = PolicyConfig.small(n_features=5, context=8, d_model=16, n_heads=2, ff_dim=32)
    out = []
    for s in range(n):
        torch.manual_seed(s)
        out.append(RegimeConditionedPolicy(cfg))
    return out


def _population(seeds: list[int]) -> Experiment:
    d = load_experiment("smoke").to_dict()
    d["ppo"]["seeds"] = seeds
    d["selection"]["eval_every"] = 256  # one validation every second iteration
    return Experiment.from_dict(d)


def test_stacked_policies_compute_what_each_seed_computes() -> None:
    policies = _policies(3)
    stack = StackedPolicies(policies)
    gen = torch.Generator().manual_seed(0)
    feats, regs = torch.randn(200, 5, generator=gen), torch.randint(0, 4, (200,), generator=gen)
    t = [torch.randint(0, 200, (4, 6), generator=gen) for _ in range(3)]
    enc = stack.encode(feats, regs, t)
    logits, value = stack.heads(
        enc.reshape(3, 24, -1), regs[torch.stack(t)].reshape(3, 24), torch.ones(3, 24, 3)
    )
    for s, p in enumerate(policies):
        own = p.encode_indices(feats, regs, t[s])
        assert torch.allclose(enc[s], own, atol=1e-6)
        l_own, v_own = p.heads(own.reshape(24, -1), regs[t[s]].reshape(24), torch.ones(24, 3))
        assert torch.allclose(logits[s], l_own, atol=1e-5) and torch.allclose(value[s], v_own, atol=1e-5)
    other = stack.encode(feats, regs, [t[1], t[0], t[2]])  # a seed reads its own bars, not the others'
    assert not torch.allclose(other[0], enc[0])
    assert torch.equal(stack.policy(2).state_dict()["actor.2.bias"], policies[2].state_dict()["actor.2.bias"])


def test_stacked_policies_need_one_config() -> None:
    a = _policies(1)[0]
    b = RegimeConditionedPolicy(PolicyConfig.small(n_features=6, context=8, d_model=16, n_heads=2, ff_dim=32))
    with pytest.raises(ValueError, match="one config"):
        StackedPolicies([a, b])


def test_stacked_adam_is_adam_per_seed_and_skips_stopped_seeds() -> None:
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(2, 4, 3, generator=gen)
    params = {"w": w.clone()}
    opt = StackedAdam(params, eps=1e-5)
    refs = [torch.nn.Parameter(w[s].clone()) for s in range(2)]
    torch_opts = [torch.optim.Adam([p], lr=1e-2, eps=1e-5) for p in refs]
    for step in range(3):
        g = torch.randn(2, 4, 3, generator=gen)
        active = torch.tensor([True, step == 0])  # seed 1 stops after its first step
        opt.step({"w": g}, 1e-2, active)
        for s in range(2):
            if bool(active[s]):
                refs[s].grad = g[s].clone()
                torch_opts[s].step()
    for s in range(2):
        assert torch.allclose(params["w"][s], refs[s].detach(), atol=1e-6)
    assert opt.steps.tolist() == [3.0, 1.0]


def test_seeds_must_be_distinct() -> None:
    assert PPOConfig(seeds=[4, 2]).seeds == (4, 2)
    with pytest.raises(ValueError, match="distinct"):
        PPOConfig(seeds=[1, 1])
    with pytest.raises(ValueError, match="non-empty"):
        PPOConfig(seeds=[])


def test_seeds_change_the_hash_only_when_set() -> None:
    base = load_experiment("smoke")
    assert "seeds" not in base.to_dict()["ppo"] and "mirror" not in base.to_dict()["ppo"]
    assert _population([1, 2]).config_hash() != base.config_hash()
    assert (
        _population([1, 2]).config_hash() == Experiment.from_dict(_population([1, 2]).to_dict()).config_hash()
    )


def test_population_trains_each_seed_in_its_folder_and_resumes(tmp_path, splits) -> None:
    exp = _population([3, 11])
    out = tmp_path / "run"
    first = train_experiment(exp, splits, out, progress=False, max_iterations=2, split_version="v1")
    assert isinstance(first, PopulationSummary) and first.seeds == [3, 11]
    for seed, run in zip(first.seeds, first.runs, strict=True):
        folder = seed_run_dir(out, seed)
        assert run.out_dir == str(folder) and (folder / BEST_FILE).is_file()
        meta = json.loads((best_checkpoint(folder) / META_FILE).read_text())
        assert meta["ppo_config"]["seed"] == seed and meta["population"] == {"seeds": [3, 11], "seed": seed}
        assert meta["config_hash"] == exp.config_hash() and meta["metrics"]
    replay = evaluate_checkpoint(best_checkpoint(seed_run_dir(out, 3)), splits["val"])  # as a single run's
    assert replay["greedy"]["net_return"].size > 0
    a, b = (json.loads((seed_run_dir(out, s) / BEST_FILE).read_text()) for s in (3, 11))
    w3 = (best_checkpoint(seed_run_dir(out, 3)) / "model.safetensors").read_bytes()
    w11 = (best_checkpoint(seed_run_dir(out, 11)) / "model.safetensors").read_bytes()
    assert w3 != w11  # different seeds, different policies
    assert a["metric"] == b["metric"] == "greedy_sharpe"

    second = train_experiment(exp, splits, out, progress=False, max_iterations=2, split_version="v1")
    assert second.runs[0].resumed_from_step == first.runs[0].global_step
    assert second.runs[0].global_step > first.runs[0].global_step
    assert len(second.runs[1].evaluations) > len(first.runs[1].evaluations)
    with pytest.raises(ValueError, match="split version"):
        train_experiment(exp, splits, out, progress=False, max_iterations=1, split_version="v2")


def test_population_seed_matches_its_single_seed_start(splits) -> None:
    """Seed s of a population starts from the weights a single-seed run with seed s starts from."""
    from himari_pipeline.rl.env import MarketArrays
    from himari_pipeline.rl.ppo import seed_everything
    from himari_pipeline.rl.stacked_ppo import StackedPPOTrainer

    exp = _population([5, 6])
    market = MarketArrays.from_split(splits["train"])
    pcfg = exp.policy_config(n_features=market.num_features)
    trainer = StackedPPOTrainer(market, exp.env_config(), exp.ppo_config(), pcfg)
    seed_everything(6)
    single = RegimeConditionedPolicy(pcfg)
    weights = single.state_dict()
    assert all(torch.equal(trainer.stack.params[k][1], v) for k, v in weights.items())
    assert not all(torch.equal(trainer.stack.params[k][0], v) for k, v in weights.items())


def test_a_stopped_seed_keeps_its_weights_while_the_others_train(splits) -> None:
    from himari_pipeline.rl.env import MarketArrays
    from himari_pipeline.rl.stacked_ppo import StackedPPOTrainer

    exp = _population([5, 6])
    market = MarketArrays.from_split(splits["train"])
    trainer = StackedPPOTrainer(
        market, exp.env_config(), exp.ppo_config(), exp.policy_config(n_features=market.num_features)
    )
    before = {k: v.detach().clone() for k, v in trainer.stack.params.items()}
    trainer.stop_reason[0] = "no improvement"  # as patience would set it
    trainer.train(max_iterations=1)
    assert all(torch.equal(trainer.stack.params[k][0], v[0]) for k, v in before.items())
    assert not all(torch.equal(trainer.stack.params[k][1], v[1]) for k, v in before.items())


def test_population_validates_from_eval_start(splits) -> None:
    from himari_pipeline.rl.env import MarketArrays
    from himari_pipeline.rl.stacked_ppo import StackedPPOTrainer

    d = _population([1, 2]).to_dict()
    d["selection"]["eval_start"] = 3 * 128  # smoke: 128 env steps an iteration; validations at 384, 640
    exp = Experiment.from_dict(d)
    market = MarketArrays.from_split(splits["train"])
    val = MarketArrays.from_split(splits["val"])
    pcfg = exp.policy_config(n_features=market.num_features)
    trainer = StackedPPOTrainer(market, exp.env_config(), exp.ppo_config(), pcfg, val_market=val)
    trainer.train(max_iterations=5)
    assert [[h["step"] for h in seed] for seed in trainer.eval_history] == [[384, 640], [384, 640]]
