"""`himari run`, `himari report` and `himari experiments` as a user meets them: subprocesses on a temp lake.

One module-scoped `himari run --strict` trains `smoke_collapse` (a policy that must collapse: it holds
its first position to the end) on 4-hour bars, not its YAML's default dataset. The collapse is
validated anyway, the verdict FAIL is printed with the collapse first, and only `--strict` turns the
rejection into a non-zero exit (without it the command succeeds: the end-to-end controls test runs
two FAIL verdicts to exit code 0).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from himari_pipeline.defs.partitions import lake_partition
from himari_pipeline.storage.lake import Lake
from himari_pipeline_tests.builders import himari_env

DATASET = "SYNTH-PLANTED_4h"
EXP = "smoke_collapse"


def himari(env: dict, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "himari_pipeline.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("cli")
    # without HIMARI_TEST_EXPERIMENTS: the CLI enables the smoke* experiments itself
    return himari_env(tmp, synthetic_start="2023-01-01", truncation_prefixes="2")


@pytest.fixture(scope="module")
def collapsed_run(env) -> subprocess.CompletedProcess:
    return himari(env, "run", "-e", EXP, "-d", DATASET, "--strict")


def _partitions(env: dict) -> list[str]:
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return sorted(instance.get_dynamic_partitions("datasets"))


@pytest.mark.timeout(600)
def test_a_collapsed_policy_is_validated_and_rejected_not_broken(collapsed_run, env):
    out = collapsed_run.stdout + collapsed_run.stderr
    assert collapsed_run.returncode == 1, out[-3000:]  # --strict: a FAIL verdict fails the command...
    assert collapsed_run.stderr.strip() == f"--strict: verdict FAIL for {EXP} on {DATASET}"  # ...alone
    assert "Traceback" not in out
    assert f"[{EXP} on {DATASET}] the policy collapsed; validating anyway" in out
    lines = out.splitlines()
    verdict_at = lines.index(f"[{EXP} on {DATASET}] verdict FAIL")
    assert "collapse" in lines[verdict_at + 1], lines[verdict_at : verdict_at + 4]  # the collapse first
    assert f"[{EXP} on {DATASET}] promoted: no (the verdict is FAIL)" in lines
    html = next(ln for ln in lines if "HTML report:" in ln).split("HTML report: ", 1)[1]
    assert Path(html).is_file() and "collapse" in Path(html).read_text()
    summary = Lake(env["HIMARI_LAKE_ROOT"]).read_table("validation_summary", lake_partition(EXP, DATASET))
    assert summary["reasons"].iloc[-1].startswith("policy collapse")
    assert summary["dataset"].iloc[-1] == DATASET
    assert "dbt: Done. PASS=" in out


def test_run_is_quiet_by_default(collapsed_run):
    out = collapsed_run.stdout + collapsed_run.stderr
    assert "DEBUG" not in out and "STEP_START" not in out
    assert max(len(line) for line in out.splitlines()) < 400  # no multi-KB JSON lines
    assert len(out.splitlines()) < 80, out  # one line per step, check and evaluation
    assert sum("validation Sharpe" in line for line in out.splitlines()) == 4  # 512 steps / eval_every 128


@pytest.mark.timeout(120)
def test_report_and_experiments_commands(collapsed_run, env):
    rep = himari(env, "report", EXP, "-d", DATASET)
    assert rep.returncode == 0, rep.stderr
    assert f"[{EXP} on {DATASET}] verdict FAIL" in rep.stdout and "collapse" in rep.stdout
    html = rep.stdout.split("HTML report: ", 1)[1].strip()
    assert Path(html).is_file()
    # its default dataset was never trained: a clear error naming where reports exist
    missing = himari(env, "report", EXP)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert f"no validation report for {EXP} on SYNTH-PLANTED_1h" in missing.stderr
    assert f"exist for: {DATASET}" in missing.stderr
    listing = himari(env, "experiments")
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert {"default", "default_null", "log001_full", EXP} <= set(rows)
    assert DATASET in rows[EXP] and "(test-only)" in rows[EXP]
    assert rows["default"].split()[1] == "SYNTH-PLANTED_1h" and "not trained" in rows["default"]


@pytest.mark.timeout(240)
def test_user_errors_are_named_before_any_work(env, tmp_path):
    fresh = {**env, "DAGSTER_HOME": str(tmp_path / "home"), "HIMARI_LAKE_ROOT": str(tmp_path / "lake")}
    typo = himari(fresh, "run", "-e", "defualt")
    assert typo.returncode == 1 and "Traceback" not in typo.stderr
    assert (
        "unknown experiment 'defualt'; known experiments: default, default_drift_neutral, default_null"
        in (typo.stderr)
    )
    bad_data = himari(fresh, "run", "-e", "smoke", "-d", "TYPO_1h")
    assert bad_data.returncode == 1 and "Traceback" not in bad_data.stderr
    assert "unknown dataset 'TYPO_1h': no files in" in bad_data.stderr and "himari ingest" in bad_data.stderr
    bad_key = himari(fresh, "run", "-d", "no-timeframe")
    assert bad_key.returncode == 1 and "invalid dataset key 'no-timeframe'" in bad_key.stderr
    assert "Traceback" not in bad_key.stderr
    assert not (tmp_path / "lake").exists() or not list((tmp_path / "lake").rglob("*.parquet"))
    assert not (tmp_path / "home").exists() or _partitions(fresh) == []  # no junk partition registered
    # the same command with a real dataset is accepted (and registers exactly it); -v shows Dagster's logs
    good = himari(fresh, "run", "-d", "SYNTH-NULL_4h", "--data-only", "-v")
    assert good.returncode == 0, good.stderr[-2000:]
    assert _partitions(fresh) == ["SYNTH-NULL_4h"]
    assert "STEP_SUCCESS" in good.stdout + good.stderr and "DEBUG" in good.stdout + good.stderr

    # the splits are cut with the preset the experiments name (`split:`); two presets on one dataset
    # in one run are refused before any work, naming both
    def fractions() -> list:
        versions = Lake(fresh["HIMARI_LAKE_ROOT"]).versions("dataset_splits", "SYNTH-NULL_4h")
        return [v.metadata["plan"]["config"]["fractions"] for v in versions]

    assert fractions() == [[0.6, 0.2, 0.2]]
    both = himari(
        fresh, "run", "-e", "default", "-e", "trend_bear_half", "-d", "SYNTH-NULL_4h", "--data-only"
    )
    assert both.returncode == 1 and "Traceback" not in both.stderr
    assert (
        "experiments on SYNTH-NULL_4h want different split presets ('bear': trend_bear_half; " in both.stderr
    )
    assert fractions() == [[0.6, 0.2, 0.2]]
    bear = himari(fresh, "run", "-e", "trend_bear_half", "-d", "SYNTH-NULL_4h", "--data-only")
    assert bear.returncode == 0, bear.stderr[-2000:]
    assert fractions() == [[0.6, 0.2, 0.2], [0.4, 0.4, 0.2]]


@pytest.mark.timeout(300)
def test_an_exit_experiment_runs_through_the_same_command(collapsed_run, env):
    """`himari run -e <exit experiment>`: entries, PPO exit policy, judged report and the marts, on the
    dataset the trading run already materialized; the verdict and the report path are printed."""
    run = himari(env, "run", "-e", "smoke_exit", "-d", DATASET)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    label = f"[smoke_exit on {DATASET}]"
    assert f"{label} exit_job ok" in out
    verdict = next(ln for ln in out.splitlines() if ln.startswith(f"{label} verdict "))
    assert verdict.split()[-1] in ("PASS", "FAIL")
    assert "blocked rate 0.000" in out
    html = Path(next(ln for ln in out.splitlines() if "HTML report:" in ln and label in ln).split(": ", 1)[1])
    text = html.read_text()
    assert "Per-trade metrics against the baselines" in text and "fixed_stops" in text
    summary = Lake(env["HIMARI_LAKE_ROOT"]).read_table("exit_summary", f"exit-smoke_exit.{DATASET}")
    assert summary["verdict"].iloc[-1] == verdict.split()[-1] and summary["dataset"].iloc[-1] == DATASET
    assert "dbt: Done. PASS=" in out
    listing = himari(env, "experiments")
    rows = {line.split()[0]: line for line in listing.stdout.splitlines()[1:]}
    assert DATASET in rows["smoke_exit"] and "(exit, test-only)" in rows["smoke_exit"]
    assert "(exit)" in rows["exit_default"] and "not trained" in rows["exit_default"]
