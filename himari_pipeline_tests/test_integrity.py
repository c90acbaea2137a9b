"""Checkpoint integrity: the catalog's weights hashes are checked before evaluation and promotion.

A tiny `smoke` run is trained into a real lake folder and registered in the lake's ``checkpoints``
table exactly as the `policy_checkpoints` asset does; then its weights are changed on disk (scaled by
1.5, as in the issue), a checkpoint the catalog never saw is added, and ``best.json`` is pointed
outside its run. Each is refused with the checkpoint named; the untouched run is evaluated.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from himari_pipeline.evaluation.report import build_validation_report
from himari_pipeline.rl.checkpoints import (
    BEST_FILE,
    MODEL_FILE,
    CheckpointIntegrityError,
    WeightsCatalog,
    best_checkpoint,
    verified_checkpoint,
    weights_fingerprint,
)
from himari_pipeline.rl.experiments import load_experiment
from himari_pipeline.rl.training import build_synthetic_splits, train_experiment
from himari_pipeline.rl.training_tables import checkpoints_table
from himari_pipeline.storage.lake import Lake

BPY = 8760.0
TRUNC_OK = {"features": True, "features_denoised": True, "regimes": True}
DATASET = "SYNTH-PLANTED_1h"


def _experiment():
    exp = load_experiment("smoke")
    on_dataset = getattr(exp, "on_dataset", None)  # bars per year come from the dataset
    return on_dataset(DATASET, BPY) if on_dataset else exp


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    splits = build_synthetic_splits("planted", seed=3, start="2024-07-01", end="2025-12-31", context=16)
    exp = _experiment()
    run = root / "checkpoints" / "smoke" / "run"
    summary = train_experiment(exp, splits, run, progress=False, max_iterations=2)
    lake = Lake(root)
    lake.write_table("checkpoints", "smoke", checkpoints_table(summary, root, DATASET))
    return exp, splits, root, run


@pytest.fixture
def copy_of(trained, tmp_path):
    """A private copy of the trained lake (each test tampers with its own)."""
    exp, splits, root, _ = trained
    dest = tmp_path / "lake"
    shutil.copytree(root, dest)
    lake = Lake(dest)
    table = lake.read_table("checkpoints", "smoke")
    return exp, splits, lake, dest / "checkpoints" / "smoke" / "run", table


def _scale_weights(checkpoint: Path, factor: float = 1.5) -> None:
    tensors = load_file(str(checkpoint / MODEL_FILE))
    save_file({k: v * factor for k, v in tensors.items()}, str(checkpoint / MODEL_FILE))


def _report(run, splits, exp, weights):
    return build_validation_report(
        run,
        splits,
        exp,
        bars_per_year=BPY,
        truncation_results=TRUNC_OK,
        n_perm=50,
        n_shuffles=1,
        weights=weights,
    )


@pytest.mark.timeout(240)  # trains the module's run in its setup: 8-40 s here
def test_untouched_checkpoints_are_evaluated_and_changed_weights_are_refused(copy_of):
    exp, splits, lake, run, table = copy_of
    weights = WeightsCatalog.from_table(lake.root, table)
    report = _report(run, splits, exp, weights)  # good input: verified, then evaluated
    assert report.n_checkpoints == len(table) >= 2
    best = best_checkpoint(run)
    _scale_weights(best)
    with pytest.raises(CheckpointIntegrityError, match=rf"checkpoint .*{best.name}.*{MODEL_FILE}.*changed"):
        _report(run, splits, exp, weights)
    row = table.loc[table["is_best"]].iloc[0]
    with pytest.raises(CheckpointIntegrityError, match=best.name):  # promotion checks the same record
        verified_checkpoint(lake.root, row["checkpoint_path"], row["weights_sha256"])


def test_promotion_verifies_the_catalog_record(copy_of):
    _, _, lake, run, table = copy_of
    row = table.loc[table["is_best"]].iloc[0]
    path = verified_checkpoint(lake.root, row["checkpoint_path"], row["weights_sha256"])
    assert path == best_checkpoint(run).resolve()
    other = table.loc[~table["is_best"]].iloc[0]
    (lake.root / other["checkpoint_path"] / "optimizer.safetensors").unlink()  # any file counts
    with pytest.raises(CheckpointIntegrityError, match="optimizer.safetensors"):
        verified_checkpoint(lake.root, other["checkpoint_path"], other["weights_sha256"])
    with pytest.raises(CheckpointIntegrityError, match="no weights hash"):
        verified_checkpoint(lake.root, row["checkpoint_path"], "")


def test_a_checkpoint_the_catalog_never_saw_is_refused(copy_of):
    exp, splits, lake, run, table = copy_of
    weights = WeightsCatalog.from_table(lake.root, table)
    best = best_checkpoint(run)
    planted = run / "step_999999999"
    shutil.copytree(best, planted)  # identical weights, but not registered: refused
    with pytest.raises(CheckpointIntegrityError, match="step_999999999 is not registered"):
        _report(run, splits, exp, weights)
    assert weights_fingerprint(planted) == weights_fingerprint(best)


def test_catalog_paths_are_confined_to_the_lake(copy_of, tmp_path):
    _, _, lake, _, table = copy_of
    row = table.iloc[0]
    outside = tmp_path / "elsewhere"
    shutil.copytree(lake.root / row["checkpoint_path"], outside)
    for bad in (str(outside), f"../{outside.name}", "checkpoints/../../elsewhere"):
        with pytest.raises(CheckpointIntegrityError, match="outside|relative path inside"):
            verified_checkpoint(lake.root, bad, row["weights_sha256"])
        with pytest.raises(CheckpointIntegrityError):
            WeightsCatalog.from_rows(lake.root, [(bad, row["weights_sha256"])])


def test_best_pointer_is_confined_to_its_run(copy_of, tmp_path):
    _, _, _, run, _ = copy_of
    good = best_checkpoint(run)
    assert good.parent == run.resolve() and good.name.startswith("step_")
    pointer = json.loads((run / BEST_FILE).read_text())
    outside = tmp_path / "outside_step"
    shutil.copytree(good, outside)
    (run / "escape").symlink_to(outside, target_is_directory=True)
    for bad in (str(outside), "../outside_step", f"../../../../{outside.name}", "escape", ""):
        (run / BEST_FILE).write_text(json.dumps({**pointer, "checkpoint": bad}))
        with pytest.raises(CheckpointIntegrityError, match=BEST_FILE):
            best_checkpoint(run)


def test_training_resumes_only_from_unchanged_checkpoints(copy_of):
    _, _, lake, run, table = copy_of
    weights = WeightsCatalog.from_table(lake.root, table)
    assert weights.verify_all(under=run) == len(table)
    last = lake.root / table.sort_values("step")["checkpoint_path"].iloc[-1]
    _scale_weights(last)
    with pytest.raises(CheckpointIntegrityError, match=last.name):
        weights.verify_all(under=run)
    shutil.rmtree(run)  # a run folder deleted to train afresh is not tampering
    assert weights.verify_all(under=run) == 0
