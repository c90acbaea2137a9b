"""Frozen experiment YAMLs (strict validation, stable hashes) and the train_experiment entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from himari_pipeline.rl.checkpoints import verify_no_pickle
from himari_pipeline.rl.experiments import Experiment, list_experiments, load_experiment
from himari_pipeline.rl.training import (
    build_synthetic_splits,
    evaluate_checkpoint,
    last_checkpoint,
    train_experiment,
)


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def splits():
    """Two years of synthetic 1h bars (2025 = live year); split context 16 keeps the embargo short."""
    return build_synthetic_splits("planted", seed=3, start="2024-01-01", end="2025-12-31", context=16)


def _write(tmp_path: Path, name: str, data: dict) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


# --------------------------------------------------------------------------- YAML and hashes
def test_shipped_experiments_load():
    names = list_experiments()
    assert {"default", "log001_full", "smoke"} <= set(names)
    full = load_experiment("log001_full").policy_config(n_features=44)
    assert (full.context, full.n_layers, full.n_heads, full.d_model) == (100, 3, 4, 256)
    default = load_experiment("default")
    assert default.env_config().transaction_cost == 0.0015
    assert default.env_config().reward == "pnl"
    assert default.dataset == "SYNTH-PLANTED_1h" and default.features is None
    trend = load_experiment("default_trend")
    assert len(trend.features) == 6 and trend.ppo["mirror"] and trend.policy == default.policy
    half = load_experiment("trend_bear_half")  # default_trend on two validation years at half a unit
    assert (half.split, half.env_config().leverage, half.features) == ("bear", 0.5, trend.features)
    assert half.ppo == trend.ppo and half.policy == trend.policy
    assert half.selection == {**trend.selection, "eval_start": 2 * trend.selection["eval_every"]}
    population = load_experiment("default_population")
    assert population.ppo["seeds"] == (1, 2) and population.env == default.env


def test_config_hash_stable_and_canonical(tmp_path):
    a = load_experiment("default")
    assert a.config_hash() == load_experiment("default").config_hash()
    # key order, formatting and spelled-out defaults do not change the hash
    raw = yaml.safe_load(Path(a.source).read_text())
    reordered = dict(reversed(list(raw.items())))
    reordered["ppo"] = {**raw["ppo"], "clip_coef": 0.2, "gamma": 0.99}  # both defaults
    b = load_experiment(_write(tmp_path, "default", reordered))
    assert b.config_hash() == a.config_hash()
    assert Experiment.from_dict(a.to_dict()).config_hash() == a.config_hash()
    # the hash is the sha256 of the canonical JSON
    import hashlib

    blob = json.dumps(a.to_dict(), sort_keys=True, separators=(",", ":"))
    assert a.config_hash() == hashlib.sha256(blob.encode()).hexdigest()
    # an integer spelling of a float field is the same config
    as_int = {**raw, "env": {**raw["env"], "max_leverage": 5}}
    as_float = {**raw, "env": {**raw["env"], "max_leverage": 5.0}}
    h_int = load_experiment(_write(tmp_path, "default", as_int)).config_hash()
    assert h_int == load_experiment(_write(tmp_path, "default", as_float)).config_hash() == a.config_hash()
    # any real change changes it
    changed = {**raw, "ppo": {**raw["ppo"], "learning_rate": 1e-3}}
    assert load_experiment(_write(tmp_path, "default", changed)).config_hash() != a.config_hash()


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"learning_rate": 1e-3}, "'learning_rate' in the experiment"),
        ({"env": {"transaction_costs": 0.001}}, "'transaction_costs' in env"),
        ({"ppo": {"eval_every": 10}}, "'eval_every' in ppo"),  # belongs to selection
        ({"selection": {"num_envs": 8}}, "'num_envs' in selection"),
        ({"policy": {"preset": "small", "d_modle": 8}}, "'d_modle' in policy"),
        ({"policy": "huge"}, "unknown policy preset 'huge'"),
        ({"features_key": "features"}, "features_key must be one of"),
        ({"split": "bull"}, "split must be one of"),
        ({"env": {"reward": "sharpe_magic"}}, "unknown reward"),
        ({"ppo": {"learning_rate": "1e-3"}}, "ppo.learning_rate must be"),  # YAML 1.1 reads 1e-3 as text
        ({"env": {"min_hold": 2.5}}, "env.min_hold must be"),
        ({"selection": {"stop_on_collapse": 1}}, "selection.stop_on_collapse must be"),
        ({"selection": {"eval_start": 0}}, "eval_start must be None or in [1, total_timesteps=500000]"),
        ({"selection": {"eval_start": 600_000}}, "eval_start must be None or in [1, total_timesteps"),
        # bars per year belong to the dataset (calendar and timeframe), never to an experiment
        ({"env": {"bars_per_year": 252}}, "env.bars_per_year may not be set in an experiment"),
        ({"selection": {"bars_per_year": 8760}}, "selection.bars_per_year may not be set"),
    ],
)
def test_validation_errors_name_file_and_key(tmp_path, patch, needle):
    data = {"name": "bad", "dataset": "SYNTH-PLANTED_1h", "policy": "small"}
    data.update(patch)
    path = _write(tmp_path, "bad", data)
    with pytest.raises(ValueError) as err:
        load_experiment(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)  # every message names the file


def test_shipped_experiments_leave_bars_per_year_to_the_dataset():
    for name in list_experiments(include_test=True):
        raw = yaml.safe_load((Path(load_experiment(name).source)).read_text())
        assert "bars_per_year" not in raw.get("env", {}) and "bars_per_year" not in raw.get("selection", {})


def test_on_dataset_sets_dataset_and_annualization():
    smoke = load_experiment("smoke")
    daily = smoke.on_dataset("GOOG_1d", 252.0)
    assert (daily.dataset, daily.env_config().bars_per_year) == ("GOOG_1d", 252.0)
    assert daily.ppo_config().bars_per_year is None  # the selection Sharpe uses the env's number
    assert daily.env_config().borrow_per_bar == daily.env_config().borrow_rate_annual / 252.0
    assert smoke.on_dataset(None, 8760.0).dataset == smoke.dataset  # None: the YAML's default
    assert daily.config_hash() != smoke.on_dataset("GOOG_1d", 365.0).config_hash()
    assert daily.config_hash() == Experiment.from_dict(daily.to_dict()).config_hash()
    with pytest.raises(ValueError, match="bars_per_year must be a positive number"):
        smoke.on_dataset("GOOG_1d", 0)


def test_test_only_experiments_are_listed_only_when_asked(monkeypatch):
    monkeypatch.delenv("HIMARI_TEST_EXPERIMENTS", raising=False)
    assert "smoke" not in list_experiments() and "default" in list_experiments()
    assert "smoke" in list_experiments(include_test=True)
    monkeypatch.setenv("HIMARI_TEST_EXPERIMENTS", "1")
    assert "smoke" in list_experiments()


def test_name_rules(tmp_path):
    with pytest.raises(ValueError, match="must equal the file name"):
        load_experiment(_write(tmp_path, "other", {"name": "mismatch", "dataset": "X_1h"}))
    with pytest.raises(ValueError, match="invalid experiment name"):
        load_experiment("../default")
    with pytest.raises(ValueError, match="missing required key 'dataset'"):
        load_experiment(_write(tmp_path, "nodata", {"name": "nodata"}))
    with pytest.raises(FileNotFoundError, match="known experiments"):
        load_experiment("no_such_experiment")


# --------------------------------------------------------------------------- training end to end
def test_smoke_trains_checkpoints_and_resumes(tmp_path, splits):
    exp = load_experiment("smoke")
    out = tmp_path / "run"
    s1 = train_experiment(exp, splits, out, progress=False, max_iterations=2, split_version="splitv1")
    batch = exp.ppo["num_envs"] * exp.ppo["num_steps"]
    assert s1.global_step == 2 * batch and s1.resumed_from_step is None
    assert len(s1.evaluations) == 2 and [st for st, _ in s1.evaluations] == [batch, 2 * batch]
    assert s1.best_checkpoint is not None and s1.best_step in (batch, 2 * batch)
    assert np.isfinite(s1.best_metrics["greedy_sharpe"]) or s1.best_metrics["greedy_share_flat"] == 1.0
    assert s1.steps_per_s > 0 and s1.wall_time_s > 0
    last = last_checkpoint(out)
    assert last is not None and last.name == f"step_{2 * batch:09d}"
    verify_no_pickle(out)
    meta = json.loads((last / "checkpoint.json").read_text())
    assert meta["split_version"] == "splitv1"
    assert meta["config_hash"] == exp.config_hash()
    assert meta["experiment"] == "smoke" and meta["step"] == 2 * batch

    # resume: the step counter continues from the last checkpoint
    s2 = train_experiment(exp, splits, out, progress=False, max_iterations=2, split_version="splitv1")
    assert s2.resumed_from_step == 2 * batch
    assert s2.global_step == 4 * batch and s2.iterations == 4
    assert [st for st, _ in s2.evaluations] == [batch * k for k in (1, 2, 3, 4)]

    # resuming gives exactly the weights of an uninterrupted run
    s3 = train_experiment(
        exp, splits, tmp_path / "straight", progress=False, max_iterations=4, split_version="splitv1"
    )
    assert s3.global_step == 4 * batch
    w_resumed = load_file(str(last_checkpoint(out) / "model.safetensors"))
    w_straight = load_file(str(last_checkpoint(tmp_path / "straight") / "model.safetensors"))
    assert w_resumed.keys() == w_straight.keys()
    for k in w_resumed:
        torch.testing.assert_close(w_resumed[k], w_straight[k], rtol=0, atol=0)

    # eval_start: no validation (no candidate checkpoint) before it; training itself is unchanged
    late = Experiment.from_dict({**exp.to_dict(), "selection": {**exp.selection, "eval_start": 3 * batch}})
    assert late.config_hash() != exp.config_hash() and "eval_start" not in exp.to_dict()["selection"]
    s4 = train_experiment(late, splits, tmp_path / "late", progress=False, max_iterations=4)
    assert [st for st, _ in s4.evaluations] == [3 * batch, 4 * batch]
    assert sorted(p.name for p in (tmp_path / "late").glob("step_*")) == [
        f"step_{k * batch:09d}" for k in (3, 4)
    ]
    w_late = load_file(str(last_checkpoint(tmp_path / "late") / "model.safetensors"))
    for k in w_late:
        torch.testing.assert_close(w_late[k], w_straight[k], rtol=0, atol=0)

    # a different config or split version may not resume into this directory
    other = Experiment.from_dict({**exp.to_dict(), "description": "changed"})
    with pytest.raises(ValueError, match="config hash"):
        train_experiment(other, splits, out, progress=False, max_iterations=1, split_version="splitv1")
    with pytest.raises(ValueError, match="split version"):
        train_experiment(exp, splits, out, progress=False, max_iterations=1, split_version="splitv2")

    # evaluate_checkpoint replays any split; net returns match a hand computation
    test = splits["test"]
    r = evaluate_checkpoint(s2.best_checkpoint, test)
    cost = exp.env["transaction_cost"]
    for mode in ("greedy", "temp"):
        ser = r[mode]
        t = ser["t"]
        assert t[0] == exp.policy["context"] - 1 and t[-1] == test.n_samples - 2
        assert np.array_equal(np.diff(t), np.ones(len(t) - 1, dtype=t.dtype))
        pos = ser["position"]
        expect_pos = np.select([ser["action"] == 1, ser["action"] == 2], [1.0, -1.0], 0.0)
        assert np.array_equal(pos, expect_pos)
        prev = np.concatenate([[0.0], pos[:-1]])
        expect = pos * test.returns[t + 1] - cost * np.abs(pos - prev)
        np.testing.assert_allclose(ser["net_return"], expect, rtol=0, atol=1e-12)
        assert np.array_equal(ser["timestamp"], test.timestamps[t])
    sharpe = r["metrics"]["greedy_sharpe"]
    net = r["greedy"]["net_return"]
    if net.std() > 0:
        assert sharpe == pytest.approx(net.mean() / net.std(ddof=1) * np.sqrt(8760.0), rel=1e-9)


def test_split_preset_and_context_are_checked(tmp_path, splits):
    exp = load_experiment("smoke")
    bear = Experiment.from_dict({**exp.to_dict(), "split": "bear"})
    with pytest.raises(ValueError, match="split preset 'bear'"):
        train_experiment(bear, splits, tmp_path / "a", progress=False, max_iterations=1)
    wide = Experiment.from_dict({**exp.to_dict(), "policy": {"preset": "small", "context": 32}})
    with pytest.raises(ValueError, match="exceeds the splits' context"):
        train_experiment(wide, splits, tmp_path / "b", progress=False, max_iterations=1)


def test_reported_entropy_ignores_forced_decisions(splits):
    """With min_hold, most decisions are forced (entropy 0); the collapse check must see the free ones."""
    from himari_pipeline.rl.env import EnvConfig, MarketArrays
    from himari_pipeline.rl.policy import PolicyConfig, RegimeConditionedPolicy, masked_logits
    from himari_pipeline.rl.ppo import PPOConfig, PPOTrainer

    torch.manual_seed(0)
    market = MarketArrays.from_split(splits["train"])
    policy = RegimeConditionedPolicy(
        PolicyConfig.small(n_features=market.num_features, context=8, d_model=16)
    )
    cfg = PPOConfig(num_envs=4, num_steps=48, num_minibatches=1, seed=0)
    trainer = PPOTrainer(policy, market, EnvConfig(min_hold=12, episode_length=64), cfg)
    trainer.train(max_iterations=1)  # starts the envs
    r = trainer.collect_rollout()
    trainer.compute_gae(r)
    with torch.no_grad():
        enc = policy.encode_indices(market.features, market.regime_ids, r.obs_t).reshape(-1, 16)
        logits, _ = policy.heads(enc, r.regimes.reshape(-1), r.position_state.reshape(-1, 3))
        mask = r.masks.reshape(-1, 3)
        logp = torch.log_softmax(masked_logits(logits, mask), -1)
        ent = -(logp.exp() * logp).sum(-1)
    free = mask.sum(-1) > 1
    assert 0 < int(free.sum()) < free.numel()  # some decisions forced, some free
    assert float(ent[~free].abs().max()) == 0.0
    stats = trainer.loss_on(r, ent_coef=0.0)
    assert stats["entropy"] == pytest.approx(float(ent[free].mean()), rel=1e-5)
    assert stats["entropy"] > float(ent.mean())


# --------------------------------------------------------------------------- a subset of the features
def test_feature_subset_is_what_the_policy_reads_and_what_the_report_judges(tmp_path, splits):
    """``features:`` cuts the columns (and their scalers) for training, the checkpoint and the report."""
    from himari_pipeline.evaluation.report import build_validation_report

    names = ["logret_96", "logret_12", "rv_48"]
    cut = splits.select_features(names)
    cols = [splits.feature_names.index(n) for n in names]
    assert cut.feature_names == names and cut.metadata["scaler"]["raw"]["mean"] == [
        splits.metadata["scaler"]["raw"]["mean"][j] for j in cols
    ]
    for seg in splits.splits:
        assert np.array_equal(cut[seg].features_denoised, splits[seg].features_denoised[:, cols])
        assert np.array_equal(cut[seg].features_raw, splits[seg].features_raw[:, cols])
        assert cut[seg].returns is splits[seg].returns
    assert splits.select_features(None) is splits and splits.feature_names != names
    with pytest.raises(ValueError, match=r"unknown feature\(s\) \['logret_7'\]"):
        splits.select_features(["logret_7"])

    base = load_experiment("smoke")
    exp = Experiment.from_dict({**base.to_dict(), "name": "smoke_features", "features": names})
    assert exp.config_hash() != base.config_hash() and "features" not in base.to_dict()
    summary = train_experiment(exp, splits, tmp_path / "run", progress=False, max_iterations=2)
    meta = json.loads((Path(summary.best_checkpoint) / "checkpoint.json").read_text())
    assert meta["feature_names"] == names and meta["policy_config"]["n_features"] == 3
    with pytest.raises(ValueError, match="the policy reads 3 features, the split has 44"):
        evaluate_checkpoint(summary.best_checkpoint, splits["test"])
    assert evaluate_checkpoint(summary.best_checkpoint, cut["test"])["greedy"]["t"].size > 0

    report = build_validation_report(
        tmp_path / "run", splits, exp, bars_per_year=8760.0, n_perm=20, n_shuffles=1, pbo_blocks=4
    )
    assert not [w for w in report.verdict.warnings if "split version" in w]  # versioned as a whole
    md = report.to_markdown()
    # the leak probe checks the columns the policy reads: 3 x (raw, denoised) x (Pearson, Spearman)
    assert "Bonferroni over 12 tests" in md
    assert "The policy reads 3 `features_denoised` columns: logret_96, logret_12, rv_48." in md
    assert "Drift-neutral training options: none." in md


@pytest.mark.parametrize(
    ("features", "needle"),
    [
        (["logret_7"], "unknown feature(s) ['logret_7'] in features"),
        (["rv_48", "rv_48"], "features lists a name twice"),
        ([], "features must be a non-empty list"),
        ("rv_48", "features must be a non-empty list"),
    ],
)
def test_feature_subset_errors_name_the_file(tmp_path, features, needle):
    data = {"name": "bad", "dataset": "SYNTH-PLANTED_1h", "features": features}
    path = _write(tmp_path, "bad", data)
    with pytest.raises(ValueError) as err:
        load_experiment(path)
    assert needle in str(err.value) and str(path) in str(err.value)
