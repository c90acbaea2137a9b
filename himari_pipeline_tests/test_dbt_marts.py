"""The dbt project over the lake: builds, ranks experiments by DSR (not raw Sharpe), and its tests bite.

A small lake is written with the real :class:`Lake` (contract-shaped tables for two datasets and two
experiments, synthetic numbers), ``dbt build`` runs in-process (``dbtRunner``, parsed once) with the
environment from :func:`prepare_dbt_env`, and the marts are read back from ``marts.duckdb`` and
compared with the numbers planted here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from dbt.adapters.duckdb.connections import DuckDBConnectionManager
from dbt.cli.main import dbtRunner

from himari_pipeline.dbt_project import dbt_project_dir, prepare_dbt_env
from himari_pipeline.storage.lake import Lake

DATASETS = ("SYNTH-PLANTED_1h", "SYNTH-NULL_1h")
REGIMES = ("LOW_VOL", "TRENDING", "HIGH_VOL", "CRISIS")
SECTIONS = ("validation", "test", "live")
SUBJECTS = ("policy", "buy_and_hold", "flat", "ma_crossover", "random_same_turnover")
N_BARS, WARMUP, EMBARGO = 600, 30, 20
SIZES = {"train": 300, "val": 70, "test": 70, "live": 70}  # 30 + 300 + 3 * (20 + 70) = 600 bars

# exp-honest: few checkpoints, modest Sharpe, high DSR. exp-lucky: 40 checkpoints on the null market,
# the highest raw Sharpe of all, but deflated for its 40 trials its DSR is low.
EXPERIMENTS = {
    "exp-honest": {"dataset": DATASETS[0], "val_sharpes": [0.8, 1.2, 1.0], "dsr": 0.93, "psr": 0.97},
    "exp-lucky": {
        "dataset": DATASETS[1],
        "val_sharpes": list(np.linspace(-1.0, 3.5, 40)),
        "dsr": 0.41,
        "psr": 0.99,
    },
    # DSR could not be computed (NaN, stored as NULL by the lake): it must rank last, not first
    "exp-nan": {"dataset": DATASETS[0], "val_sharpes": [0.5, 0.6], "dsr": float("nan"), "psr": float("nan")},
}


def _bars(start: str) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, N_BARS)))
    return pd.DataFrame(
        {
            "timestamp": pd.date_range(start, periods=N_BARS, freq="h", tz="UTC"),
            "open": close * 0.999,
            "high": close * 1.002,
            "low": close * 0.997,
            "close": close,
            "volume": rng.uniform(10, 20, N_BARS),
        }
    )


def _split_summary(bars: pd.DataFrame, version: str, overlap: bool = False) -> pd.DataFrame:
    rows, start, rng = [], WARMUP, np.random.default_rng(1)
    for name, n in SIZES.items():
        ts = bars["timestamp"].iloc[start : start + n]
        shares = rng.dirichlet(np.ones(4))
        first = ts.iloc[0] - pd.Timedelta(hours=40) if overlap and name == "test" else ts.iloc[0]
        rows.append(
            {
                "split": name,
                "n_rows": n,
                "first_timestamp": first,
                "last_timestamp": ts.iloc[-1],
                "embargo_bars": EMBARGO,
                **{f"share_{r.lower()}": float(s) for r, s in zip(REGIMES, shares, strict=True)},
                "split_version": version,
            }
        )
        start += n + EMBARGO
    return pd.DataFrame(rows)


def _checkpoints(name: str, spec: dict, with_dataset: bool) -> pd.DataFrame:
    sharpes = np.asarray(spec["val_sharpes"])
    steps = 1000 * np.arange(1, len(sharpes) + 1)
    df = pd.DataFrame(
        {
            "experiment": name,
            "config_hash": "cfg-" + name,
            "split_version": "split-" + spec["dataset"],
            "step": steps.astype("int64"),
            "checkpoint_path": [f"artifacts/policy_checkpoints/{name}/{s}.safetensors" for s in steps],
            "is_best": sharpes == sharpes.max(),
            "collapsed": False,
            "val_greedy_sharpe": sharpes,
            "val_sampled_sharpe": sharpes - 0.1,
            "val_total_return": sharpes / 20,
            "val_entropy": 0.9,
            "val_share_flat": 0.3,
            "val_share_long": 0.4,
            "val_share_short": 0.3,
            "weights_sha256": [f"{name}-{s}" for s in steps],
        }
    )
    if with_dataset:
        df.insert(1, "dataset", spec["dataset"])
    return df


def _selected_step(spec: dict) -> int:
    return int(1000 * (int(np.argmax(spec["val_sharpes"])) + 1))


def _policy_sharpe(k: int, section: str, regime: str) -> float:
    """A distinct, recognisable number per (experiment, section, regime)."""
    return round(0.1 * k + SECTIONS.index(section) + 0.01 * (["ALL", *REGIMES].index(regime) + 1), 4)


def _metrics(name: str, spec: dict, k: int) -> pd.DataFrame:
    rows = []
    selected = _selected_step(spec)
    for step in (selected, 1000):  # metrics of a non-selected checkpoint must not reach the mart
        if step == selected and rows:
            continue
        offset = 0.0 if step == selected else 100.0
        for section in SECTIONS:
            for regime in ("ALL", *REGIMES):
                for subject in SUBJECTS:
                    sharpe = _policy_sharpe(k, section, regime) + offset
                    values = {
                        "sharpe": sharpe if subject == "policy" else sharpe / 2 - SUBJECTS.index(subject),
                        "cumulative_return": sharpe / 10 if subject == "policy" else 0.01,
                        "bars": 70.0 if regime == "ALL" else 17.5,
                        "share_of_bars": 1.0 if regime == "ALL" else 0.25,
                        "long_share": 0.5 if subject == "policy" else 1.0,
                        "short_share": 0.2 if subject == "policy" else 0.0,
                        "flat_share": 0.3 if subject == "policy" else 0.0,
                    }
                    rows += [
                        (name, spec["dataset"], step, section, subject, regime, metric, value)
                        for metric, value in values.items()
                    ]
    cols = ["experiment", "dataset", "checkpoint_step", "section", "subject", "regime", "metric", "value"]
    return pd.DataFrame(rows, columns=cols).astype({"checkpoint_step": "int64"})


def _summary(name: str, spec: dict, **override) -> pd.DataFrame:
    sharpes = spec["val_sharpes"]
    row = {
        "experiment": name,
        "dataset": spec["dataset"],
        "checkpoint_step": _selected_step(spec),
        "verdict": "PASS" if spec["dsr"] >= 0.9 else "FAIL",
        "reasons": "" if spec["dsr"] >= 0.9 else "Deflated Sharpe Ratio 0.410 < 0.9",
        "warnings": "",
        "n_checkpoints": len(sharpes),
        "val_sharpe": float(max(sharpes)),
        "test_sharpe": 0.7,
        "live_sharpe": 0.5,
        "live_bh_sharpe": 0.4,
        "live_max_drawdown": -0.2,
        "live_final_value": 10500.0,
        "psr": spec["psr"],
        "dsr": spec["dsr"],
        "pbo": 0.2,
        "perm_pvalue": 0.01,
        "leak_flags": 0,
        "report_path": f"artifacts/validation_report/{name}/report.html",
    }
    row.update(override)
    return pd.DataFrame([row]).astype(
        {"checkpoint_step": "int64", "n_checkpoints": "int64", "leak_flags": "int64"}
    )


def _write_lake(root: Path) -> Lake:
    lake = Lake(root)
    for i, ds in enumerate(DATASETS):
        bars = _bars(f"202{i}-01-01")
        lake.write_table("raw_ohlcv", ds, bars)
        lake.write_table("dataset_split_summary", ds, _split_summary(bars, "split-" + ds))
    for k, (name, spec) in enumerate(EXPERIMENTS.items()):
        # exp-lucky's checkpoints omit `dataset`: dbt finds it through the split version
        lake.write_table("checkpoints", name, _checkpoints(name, spec, with_dataset=name != "exp-lucky"))
        lake.write_table("validation_metrics", name, _metrics(name, spec, k))
        lake.write_table("validation_summary", name, _summary(name, spec))
    return lake


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """The parsed project, parsed once: later invocations reuse it instead of re-parsing."""
    target = tmp_path_factory.mktemp("dbt_parse")
    with pytest.MonkeyPatch.context() as mp:
        for key, value in prepare_dbt_env(target / "no_lake", target_path=target).items():
            mp.setenv(key, value)
        result = dbtRunner().invoke(["parse", "--log-path", str(target / "logs")])
    assert result.success, result.exception
    return result.result


def _close_dbt_duckdb() -> None:
    """dbt-duckdb keeps its DuckDB (marts.duckdb + the attached lake) open in-process after an
    invocation; close it, as the end of a `dbt` subprocess would, so this process can reopen them."""
    env = DuckDBConnectionManager._ENV
    DuckDBConnectionManager.close_all_connections()
    if env is not None:
        env.close()


def _dbt(manifest, root: Path, *args: str, out: Path | None = None) -> tuple[bool, dict[str, str]]:
    """Run dbt in-process against the lake at ``root``, writing marts.duckdb and dbt's artifacts to
    ``out`` (default: the lake root); returns (success, {node name: status})."""
    out = out or root
    target = out / "dbt_target"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in prepare_dbt_env(root, marts_path=out / "marts.duckdb", target_path=target).items():
            mp.setenv(key, value)
        try:
            result = dbtRunner(manifest=manifest).invoke([*args, "--log-path", str(target / "logs")])
        finally:
            _close_dbt_duckdb()
    assert result.result is not None, result.exception
    status = {r.node.name: str(r.status) for r in result.result.results}
    return result.success, status


def _marts(root: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(root / "marts.duckdb"), read_only=True) as con:
        return con.execute(sql).df()


@pytest.fixture(scope="module")
def built(manifest, tmp_path_factory) -> tuple[Path, bool, dict[str, str]]:
    root = tmp_path_factory.mktemp("lake")
    _write_lake(root)
    ok, status = _dbt(manifest, root, "build")
    return root, ok, status


MODELS = {
    "stg_dataset_splits",
    "stg_datasets",
    "stg_checkpoints",
    "stg_validation_summary",
    "stg_validation_metrics",
    "mart_checkpoint_leaderboard",
    "mart_regime_performance",
    "mart_dataset_summary",
}
SINGULAR = {
    "assert_leaderboard_probabilities_in_unit_interval",
    "assert_splits_do_not_overlap",
    "assert_split_embargo_respected",
    "assert_selected_checkpoint_exists",
}


def test_dbt_build_passes_every_model_and_test(built):
    _, ok, status = built
    bad = {k: v for k, v in status.items() if v not in ("success", "pass")}
    assert ok and bad == {"not_null_mart_checkpoint_leaderboard_dsr": "warn"}, bad  # exp-nan
    assert MODELS | SINGULAR <= set(status) and len(status) > 50


def test_leaderboard_ranks_by_dsr_not_raw_sharpe(built):
    root, _, _ = built
    board = _marts(root, "select * from mart_checkpoint_leaderboard order by dsr_rank")
    assert list(board["experiment"]) == ["exp-honest", "exp-lucky", "exp-nan"]
    assert list(board["raw_sharpe_rank"]) == [2, 1, 3] and board["dsr"].isna().tolist() == [
        False,
        False,
        True,
    ]
    lucky = board.set_index("experiment").loc["exp-lucky"]
    honest = board.set_index("experiment").loc["exp-honest"]
    # the lucky experiment has the higher raw Sharpe (first by raw rank) but ranks below by DSR
    assert lucky["raw_sharpe_rank"] == 1 and honest["raw_sharpe_rank"] == 2
    assert lucky["best_raw_val_sharpe"] == pytest.approx(3.5)
    assert honest["best_raw_val_sharpe"] == pytest.approx(1.2)
    assert lucky["n_checkpoints_evaluated"] == 40 and lucky["n_checkpoints_saved"] == 40
    assert honest["n_checkpoints_evaluated"] == 3 and lucky["best_raw_val_step"] == 40_000
    assert honest["selected_step"] == 2000 and honest["selected_weights_sha256"] == "exp-honest-2000"
    assert (honest["verdict"], lucky["verdict"]) == ("PASS", "FAIL")
    assert honest["dsr"] == pytest.approx(0.93) and lucky["dsr"] == pytest.approx(0.41)
    assert (honest["dataset"], lucky["dataset"]) == DATASETS
    assert board["n_checkpoints_evaluated"].tolist() == [3, 40, 2]


def test_regime_performance_is_the_selected_checkpoint_vs_buy_and_hold(built):
    root, _, _ = built
    perf = _marts(root, "select * from mart_regime_performance")
    assert len(perf) == len(EXPERIMENTS) * len(SECTIONS) * 5
    assert set(perf["regime"]) == {"ALL", *REGIMES}
    row = perf.set_index(["experiment", "section", "regime"]).loc[("exp-lucky", "live", "TRENDING")]
    expected = _policy_sharpe(1, "live", "TRENDING")  # not the +100 of the non-selected checkpoint
    assert row["policy_sharpe"] == pytest.approx(expected)
    assert row["bh_sharpe"] == pytest.approx(expected / 2 - 1)
    assert row["sharpe_vs_bh"] == pytest.approx(expected - (expected / 2 - 1))
    assert row["policy_return"] == pytest.approx(expected / 10)
    assert (row["policy_long_share"], row["policy_flat_share"], row["bh_long_share"]) == (0.5, 0.3, 1.0)
    assert row["checkpoint_step"] == 40_000 and row["dataset"] == DATASETS[1]


def test_dataset_summary_matches_the_planted_splits(built):
    root, _, _ = built
    summary = _marts(root, "select * from mart_dataset_summary").set_index("dataset")
    assert sorted(summary.index) == sorted(DATASETS)
    row = summary.loc[DATASETS[0]]
    bars = _bars("2020-01-01")
    planted = _split_summary(bars, "split-" + DATASETS[0]).set_index("split")
    # n_experiments counts exp-lucky on the other dataset via its split version (no `dataset` column)
    assert row["n_bars"] == N_BARS and row["n_splits"] == 4 and row["n_experiments"] == 2
    assert summary.loc[DATASETS[1], "n_experiments"] == 1
    assert pd.Timestamp(row["first_bar"]) == bars["timestamp"].iloc[0]
    assert pd.Timestamp(row["last_bar"]) == bars["timestamp"].iloc[-1]
    for split, n in SIZES.items():
        assert row[f"{split}_rows"] == n
        assert pd.Timestamp(row[f"{split}_first"]) == planted.loc[split, "first_timestamp"]
        assert row[f"{split}_share_trending"] == pytest.approx(planted.loc[split, "share_trending"])
    assert row["split_coverage"] == pytest.approx(sum(SIZES.values()) / N_BARS)


def test_singular_tests_fail_the_build(manifest, built, tmp_path):
    # Corrupts the shared lake after the marts above were built; this run writes its own marts file.
    root = built[0]
    lake = Lake(root)
    # a DSR of 1.5 is not a probability: the leaderboard test fails, everything else passes
    lake.write_table(
        "validation_summary", "exp-lucky", _summary("exp-lucky", EXPERIMENTS["exp-lucky"], dsr=1.5)
    )
    ok, status = _dbt(manifest, root, "build", out=tmp_path)
    failed = {k for k, v in status.items() if v not in ("success", "pass", "warn")}
    assert not ok and failed == {"assert_leaderboard_probabilities_in_unit_interval"}, failed
    # test starts 40 bars early, inside val's embargo and over val's end: overlap and embargo both
    # fail, and the models built on the splits are skipped (a failed test blocks what is downstream)
    bars = _bars("2020-01-01")
    lake.write_table("dataset_split_summary", DATASETS[0], _split_summary(bars, "split-" + DATASETS[0], True))
    ok, status = _dbt(manifest, root, "build", "--select", "stg_dataset_splits", "stg_datasets", out=tmp_path)
    assert not ok
    assert status["assert_splits_do_not_overlap"] == "fail"
    assert status["assert_split_embargo_respected"] == "fail"
    assert status["stg_datasets"] == "skipped"


@pytest.mark.timeout(300)
def test_dbt_build_from_the_dbt_folder_as_the_readme_says_over_a_moved_lake(tmp_path):
    """dbt/README.md "By hand": activate the venv, install DuckLake once, `cd dbt && dbt build` (the lake
    defaults to ../data_lake). The lake was written somewhere else and moved into the checkout: its
    catalog records the old absolute data path, and the build still reads every table."""
    written = tmp_path / "written_here" / "data_lake"
    _write_lake(written)
    checkout = tmp_path / "checkout"
    shutil.copytree(dbt_project_dir(), checkout / "dbt", ignore=shutil.ignore_patterns("target", "logs"))
    shutil.move(written, checkout / "data_lake")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HIMARI_", "DBT_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the activated venv
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    install = "from himari_pipeline.dbt_project import ensure_ducklake_installed as f; f()"
    subprocess.run(["python", "-c", install], cwd=checkout, env=env, check=True, timeout=120)
    res = subprocess.run(
        ["dbt", "build"], cwd=checkout / "dbt", env=env, capture_output=True, text=True, timeout=280
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "does not match existing data path" not in res.stdout
    assert "ERROR=0" in res.stdout.replace(" ", "")
    board = _marts(checkout / "data_lake", "select * from mart_checkpoint_leaderboard order by dsr_rank")
    assert list(board["experiment"]) == ["exp-honest", "exp-lucky", "exp-nan"]


def test_strategies_and_pairs_reach_the_marts(manifest, tmp_path):
    """`himari evaluate`'s strategy_summary joins the leaderboard (ranked by its DSR, no checkpoint) and
    `himari pairs`' tables make mart_pair_results: the real evaluation of a planted and a null pair."""
    from himari_pipeline.pairs.evaluate import evaluate_pair
    from himari_pipeline.pairs.report import pair_tables
    from himari_pipeline.pairs.synthetic import SyntheticPair, synthetic_pair

    root = tmp_path / "lake"
    lake = _write_lake(root)
    trend = {"dataset": DATASETS[0], "val_sharpes": [1.5], "dsr": 0.97, "psr": 0.99}
    row = _summary("strategy:trend", trend).drop(columns="checkpoint_step").assign(bars_per_year=8760.0)
    lake.write_table("strategy_summary", "strategy-trend." + DATASETS[0], row)
    evaluations = {}
    for planted in (True, False):
        key = f"{'PLANTED' if planted else 'NULL'}_1d+X_1d"
        ev = evaluate_pair(synthetic_pair(SyntheticPair(planted=planted, seed=0)))
        metrics, summary = pair_tables(ev, key, f"artifacts/pair_evaluations/{key}.md")
        part = "pair-" + key.replace("+", ".")
        lake.write_table("pair_metrics", part, metrics)
        lake.write_table("pair_summary", part, summary)
        evaluations[key] = ev
    ok, status = _dbt(manifest, root, "build")
    bad = {k: v for k, v in status.items() if v not in ("success", "pass")}
    assert ok and bad == {"not_null_mart_checkpoint_leaderboard_dsr": "warn"}, bad
    assert {"stg_strategy_summary", "stg_pair_summary", "stg_pair_metrics", "mart_pair_results"} <= set(
        status
    )

    board = _marts(root, "select * from mart_checkpoint_leaderboard order by dsr_rank")
    assert list(board["experiment"]) == ["strategy:trend", "exp-honest", "exp-lucky", "exp-nan"]
    assert pd.isna(board.loc[0, "selected_step"]) and board.loc[0, "verdict"] == "PASS"

    pairs = _marts(root, "select * from mart_pair_results order by dsr_rank").set_index("pair")
    assert list(pairs.index) == ["PLANTED_1d+X_1d", "NULL_1d+X_1d"]
    assert list(pairs["verdict"]) == ["PASS", "FAIL"]
    ev = evaluations["PLANTED_1d+X_1d"]
    got = pairs.loc["PLANTED_1d+X_1d"]
    for col, segment, metric in (
        ("test_final_value", "test", "final_value"),
        ("live_sharpe", "live", "sharpe"),
    ):
        assert got[col] == pytest.approx(ev.table.loc[(segment, ev.subject), metric])
    assert got["live_buy_and_hold_sharpe"] == pytest.approx(
        ev.table.loc[("live", "buy_and_hold_legs"), "sharpe"]
    )
    assert got["dsr"] == pytest.approx(ev.evidence["dsr"]) and got["leverage"] == 1.5


def test_exit_results_reach_the_marts_on_a_lake_without_trading_results(manifest, tmp_path):
    """The exit optimizer's tables make mart_exit_results (a real evaluation of a planted market, judged
    against fixed stops), on a lake that holds one dataset's data assets and the exit run only: no
    training or validation run wrote checkpoints, validation_metrics or validation_summary, and every
    model still builds (those sources are optional), their marts empty. Ranked by DSR, NaN last."""
    from himari_pipeline.exits.configs import EntryRule, ExitConfig
    from himari_pipeline.exits.data import synthetic_data
    from himari_pipeline.exits.report import exit_tables
    from himari_pipeline.exits.training import rule_subject
    from himari_pipeline.exits.verdict import evaluate_exits

    dataset, key = DATASETS[0], "trend." + DATASETS[0]
    root = tmp_path / "lake"
    lake = Lake(root)
    bars = _bars("2020-01-01")
    lake.write_table("raw_ohlcv", dataset, bars)
    lake.write_table("dataset_split_summary", dataset, _split_summary(bars, "split-" + dataset))
    data = synthetic_data("planted", 7)
    cfg = ExitConfig(stop_loss=0.03, take_profit=0.06, max_hold=96, min_exit_bar=3)
    ev = evaluate_exits(data, EntryRule().entries(data.bars), cfg, rule_subject(data), n_perm=49)
    metrics, summary = exit_tables(ev, key, "x.html")
    summary.insert(1, "dataset", dataset)
    part = "exit-" + key
    lake.write_table("exit_metrics", part, metrics)
    lake.write_table("exit_summary", part, summary)
    # a second experiment whose DSR could not be computed (NaN): it must rank last, not first
    nan_key = "nan." + dataset
    lake.write_table("exit_metrics", "exit-" + nan_key, metrics.assign(key=nan_key))
    lake.write_table("exit_summary", "exit-" + nan_key, summary.assign(key=nan_key, dsr=float("nan")))
    with lake.connect() as con:
        found = con.execute("select table_name from duckdb_tables() where database_name = 'lake'").fetchall()
    tables = {name for (name,) in found}
    assert {"raw_ohlcv", "exit_summary"} <= tables and not tables & {"checkpoints", "validation_summary"}
    assert not tables & {"validation_metrics", "strategy_summary", "pair_summary"}, tables

    ok, status = _dbt(manifest, root, "build")
    bad = {k: v for k, v in status.items() if v not in ("success", "pass")}
    assert ok and not bad, bad
    exit_nodes = {
        "stg_exit_summary",
        "stg_exit_metrics",
        "mart_exit_results",
        "assert_exit_shares_sum_to_one",
    }
    assert MODELS | SINGULAR | exit_nodes <= set(status)
    for empty in ("mart_checkpoint_leaderboard", "mart_regime_performance", "staging.stg_checkpoints"):
        assert _marts(root, f"select count(*) as n from {empty}")["n"].item() == 0, empty
    assert _marts(root, "select n_experiments from mart_dataset_summary")["n_experiments"].tolist() == [0]

    exits = _marts(root, "select * from mart_exit_results order by dsr_rank")
    assert exits["key"].tolist() == [key, nan_key] and exits["experiment"].tolist() == ["trend", "nan"]
    assert pd.isna(exits.loc[1, "dsr"])
    got = exits.iloc[0]
    assert (got["dsr_rank"], got["experiment"], got["dataset"], got["key"]) == (1, "trend", dataset, key)
    assert got["subject"] == ev.subject and got["report_path"] == "x.html"
    assert got["verdict"] == ("PASS" if ev.verdict.passed else "FAIL") == summary["verdict"].item()
    assert got["promotable"] == ev.verdict.passed
    assert got["dsr"] == pytest.approx(ev.evidence["dsr"])
    assert got["permutation_p"] == pytest.approx(ev.evidence["permutation_p"])
    stored = lake.read_table("exit_metrics", part).set_index(["segment", "strategy"])
    for seg in ("test", "live"):
        fixed, mine = stored.loc[(seg, "fixed_stops")], stored.loc[(seg, ev.subject)]
        assert got[f"{seg}_fixed_stops_mean_return"] == pytest.approx(fixed["mean_return"])
        assert got[f"{seg}_fixed_stops_sharpe"] == pytest.approx(fixed["sharpe"])
        for m in ("trades", "mean_return", "win_rate", "sharpe", "avg_holding", "exit_stop_loss"):
            assert got[f"{seg}_{m}"] == pytest.approx(mine[m]), (seg, m)
    summary_fixed = summary["test_fixed_stops_mean_return"].item()
    assert got["test_fixed_stops_mean_return"] == pytest.approx(summary_fixed)
    assert got["test_sharpe"] == pytest.approx(ev.evidence["test_sharpe"])


def test_a_seed_population_has_a_checkpoint_per_seed_at_each_step(manifest, tmp_path):
    """Two seeds at the same steps are distinct checkpoints; the same seed twice at a step is not."""
    lake = _write_lake(tmp_path)
    spec = {"dataset": DATASETS[0], "val_sharpes": [0.5, 1.1]}
    seeds = [_checkpoints("exp-pop", spec, with_dataset=True).assign(seed=s) for s in (1, 2)]
    population = pd.concat(seeds, ignore_index=True)
    population["checkpoint_path"] = population["checkpoint_path"] + "-seed" + population["seed"].astype(str)
    lake.write_table("checkpoints", "exp-pop", population)

    def unique_test(status: dict[str, str]) -> str:
        (name,) = [k for k in status if k.startswith("unique_combination_of_columns_stg_checkpoints")]
        return status[name]

    ok, status = _dbt(manifest, tmp_path, "build")
    assert ok and unique_test(status) == "pass", status
    seeded = _marts(tmp_path, "select experiment, seed, step from staging.stg_checkpoints order by all")
    assert seeded[seeded.experiment == "exp-pop"]["seed"].tolist() == [1, 1, 2, 2]
    assert seeded[seeded.experiment == "exp-honest"]["seed"].isna().all()  # single-seed rows: null

    lake.write_table("checkpoints", "exp-pop", pd.concat([population, population.iloc[[0]]]))
    ok, status = _dbt(manifest, tmp_path, "build")
    assert not ok and unique_test(status) == "fail", status
