"""Pickle-free training checkpoints (safetensors + JSON), best-by-validation selection, collapse flags.

A checkpoint is a directory::

    step_000004096/
        model.safetensors       policy weights
        optimizer.safetensors   optimizer per-parameter state (Adam moments, step counters)
        state.safetensors       RNG states, environment state, the trainer's pending observation
        checkpoint.json         configs, step, metrics, optimizer hyperparameters, scalar state

Everything needed to resume exactly is there; nothing is pickled and loading never unpickles.
Directories are written under a temporary name and renamed, so a killed run leaves no half-written
checkpoint behind.

Integrity: the catalog (the lake's ``checkpoints`` table) records each checkpoint's path relative to
the lake and the sha256 of its safetensors files (:func:`weights_fingerprint`). Before a checkpoint is
evaluated or promoted, :class:`WeightsCatalog` / :func:`verified_checkpoint` confine its path to the
lake and compare its files with that record; any difference is a :class:`CheckpointIntegrityError`
naming the checkpoint and the file. ``best.json`` may only name a directory inside its run folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from himari_pipeline.storage.atomic import atomic_directory, atomic_write_text
from himari_pipeline.storage.hashing import file_sha256
from himari_pipeline.vocabulary import COLLAPSE_MAX_SHARE

if TYPE_CHECKING:
    from himari_pipeline.rl.env import VecTradingEnv

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.safetensors"
META_FILE = "checkpoint.json"
BEST_FILE = "best.json"
_ALLOWED_SUFFIXES = (".safetensors", ".json")


# --------------------------------------------------------------------------- JSON helpers
def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples, tensors (scalars), paths and non-finite floats -> strict JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Tensor):
        return to_jsonable(obj.item() if obj.numel() == 1 else obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, bool | int | float | str) or obj is None:
        return obj
    if isinstance(obj, Path | torch.device):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalar
        return to_jsonable(obj.item())
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint's JSON")


def _tensors_for_file(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


# --------------------------------------------------------------------------- optimizer state
def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and JSON (hyperparameters)."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict] = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, Tensor):
                tensors[f"state.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": to_jsonable(sd["param_groups"]), "scalar_state": to_jsonable(scalars)}


def optimizer_from_flat(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict) -> None:
    """Inverse of :func:`optimizer_to_flat`; loads into ``optimizer`` in place."""
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, values in meta.get("scalar_state", {}).items():
        state.setdefault(int(idx), {}).update(values)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# --------------------------------------------------------------------------- environment state
def env_state(env: VecTradingEnv) -> tuple[dict[str, Tensor], dict]:
    """An environment's ``state_dict()`` split into tensors (safetensors) and JSON scalars."""
    tensors, scalars = {}, {}
    for k, v in env.state_dict().items():
        if isinstance(v, Tensor):
            tensors[k] = v.detach().clone()
        else:
            scalars[k] = v
    return tensors, {"kind": "state_dict", "scalars": to_jsonable(scalars)}


def load_env_state(env: VecTradingEnv, tensors: dict[str, Tensor], meta: dict) -> None:
    """Inverse of :func:`env_state`; refuses a state written by an env of another layout."""
    state = {**tensors, **meta["scalars"]}
    missing = sorted(set(env.state_dict()) - set(state))
    if missing:
        raise ValueError(
            f"the checkpoint's env state lacks {missing[:4]}: it was written by an env of another "
            "layout (e.g. per-segment envs); resume into a fresh run directory"
        )
    env.load_state_dict(state)


# --------------------------------------------------------------------------- save / load
@dataclass
class Checkpoint:
    """A loaded checkpoint: tensors grouped by file plus the JSON metadata."""

    path: Path
    model: dict[str, Tensor]
    optimizer: dict[str, Tensor]
    state: dict[str, Tensor]
    meta: dict

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def save_checkpoint(
    path: str | Path,
    *,
    model: dict[str, Tensor],
    meta: dict,
    optimizer: dict[str, Tensor] | None = None,
    state: dict[str, Tensor] | None = None,
) -> Path:
    """Write one checkpoint directory atomically (filled under a temporary name, then renamed)."""
    path = Path(path)
    with atomic_directory(path) as tmp:
        save_file(_tensors_for_file(model), str(tmp / MODEL_FILE))
        save_file(_tensors_for_file(optimizer or {}), str(tmp / OPTIMIZER_FILE))
        save_file(_tensors_for_file(state or {}), str(tmp / STATE_FILE))
        (tmp / META_FILE).write_text(json.dumps(to_jsonable(meta), indent=2, allow_nan=False))
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint directory (safetensors + JSON only; no unpickling anywhere)."""
    path = Path(path)
    dev = str(device)
    return Checkpoint(
        path=path,
        model=load_file(str(path / MODEL_FILE), device=dev),
        optimizer=load_file(str(path / OPTIMIZER_FILE), device=dev),
        state=load_file(str(path / STATE_FILE), device="cpu"),
        meta=json.loads((path / META_FILE).read_text()),
    )


def verify_no_pickle(path: str | Path) -> list[Path]:
    """Check every file under ``path`` is safetensors or JSON and parses as such; returns the files.

    Raises ``ValueError`` naming the first offending file (a pickle, a ``torch.save`` zip, ...).
    """
    files = sorted(p for p in Path(path).rglob("*") if p.is_file())
    for p in files:
        head = p.read_bytes()[:4]
        if not p.name.endswith(_ALLOWED_SUFFIXES):
            raise ValueError(f"{p}: not a safetensors or JSON file")
        if head[:1] == b"\x80" or head[:2] == b"PK":
            raise ValueError(f"{p}: looks like a pickle or a torch.save archive")
        if p.suffix == ".json":
            json.loads(p.read_text())
        else:
            with safe_open(str(p), framework="pt") as f:
                list(f.keys())
    return files


# --------------------------------------------------------------------------- selection and collapse
@dataclass
class CollapseStatus:
    collapsed: bool
    reasons: list[str] = field(default_factory=list)


@dataclass
class CollapseDetector:
    """Flags a policy whose decisions are (nearly) all one action or whose entropy has died.

    Collapsed runs put 99-100 % of decisions on one action and their entropy falls towards 0.
    """

    max_action_share: float = COLLAPSE_MAX_SHARE
    entropy_floor: float = 0.1  # nats; a uniform 3-way policy has ln 3 = 1.0986

    def check(self, action_shares: Tensor | list[float], entropy: float | None = None) -> CollapseStatus:
        shares = torch.as_tensor(action_shares, dtype=torch.float64)
        reasons = []
        top = int(shares.argmax())
        if float(shares[top]) > self.max_action_share:
            reasons.append(
                f"action {top} takes {float(shares[top]):.1%} of decisions (> {self.max_action_share:.0%})"
            )
        if entropy is not None and math.isfinite(entropy) and entropy < self.entropy_floor:
            reasons.append(f"policy entropy {entropy:.4f} below floor {self.entropy_floor}")
        return CollapseStatus(bool(reasons), reasons)


@dataclass
class BestTracker:
    """Best-by-validation selection with patience-based early stopping (patience in evaluations)."""

    metric: str = "greedy_sharpe"
    mode: str = "max"
    patience: int | None = None
    best_value: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0

    def update(self, step: int, metrics: dict) -> bool:
        """Record an evaluation; True when it is the new best. NaN never wins."""
        value = metrics.get(self.metric)
        value = float("nan") if value is None else float(value)
        better = math.isfinite(value) and (
            self.best_value is None
            or (value > self.best_value if self.mode == "max" else value < self.best_value)
        )
        if better:
            self.best_value, self.best_step, self.evals_since_best = value, int(step), 0
        else:
            self.evals_since_best += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.evals_since_best > self.patience

    def to_dict(self) -> dict:
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, d: dict) -> BestTracker:
        return cls(**d)


def write_best_pointer(run_dir: str | Path, checkpoint: Path, step: int, metric: str, value: float) -> None:
    """Point ``run_dir/best.json`` at ``checkpoint`` (written atomically)."""
    payload = {"checkpoint": checkpoint.name, "step": step, "metric": metric, "value": value}
    atomic_write_text(Path(run_dir) / BEST_FILE, json.dumps(to_jsonable(payload), indent=2, allow_nan=False))


def record_evaluation(
    best: BestTracker,
    step: int,
    metrics: dict,
    history: list[dict],
    log_fn: Callable[[int, dict], None] | None,
    checkpoint_dir: Path | None,
    save: Callable[[Path, dict], Path],
    stop: Callable[[str], None],
) -> bool:
    """One validation's bookkeeping, shared by the trainers: update the best and the patience (calling
    ``stop(reason)`` when patience runs out, before the checkpoint is written so it records why),
    append to ``history``, log ``eval/*``, save ``checkpoint_dir/step_N`` and point ``best.json`` at it
    when best. Returns whether this evaluation is the new best."""
    is_best = best.update(step, metrics)
    if best.should_stop:
        stop(f"no improvement in {best.metric} for {best.evals_since_best} evaluations")
    history.append({"step": step, **metrics})
    if log_fn is not None:
        log_fn(step, {f"eval/{k}": v for k, v in metrics.items()})
    if checkpoint_dir is not None:
        path = save(checkpoint_dir / f"step_{step:09d}", metrics)
        if is_best:
            write_best_pointer(checkpoint_dir, path, step, best.metric, best.best_value)
    return is_best


def best_checkpoint(run_dir: str | Path) -> Path | None:
    """The directory of the best checkpoint recorded in ``run_dir/best.json`` (None if none yet).

    The pointer must name a directory inside ``run_dir``: an absolute path, ``..`` or a symlink that
    leads elsewhere is refused (:class:`CheckpointIntegrityError`).
    """
    p = Path(run_dir) / BEST_FILE
    if not p.exists():
        return None
    try:
        name = json.loads(p.read_text())["checkpoint"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointIntegrityError(f"{p}: not a best-checkpoint pointer ({exc})") from None
    try:
        return confined_path(run_dir, name)
    except CheckpointIntegrityError as exc:
        raise CheckpointIntegrityError(f"{p}: {exc}") from None


# --------------------------------------------------------------------------- integrity
class CheckpointIntegrityError(ValueError):
    """A checkpoint's path leaves the lake, or its weights differ from what the catalog recorded."""


def confined_path(root: str | Path, relative: str | os.PathLike) -> Path:
    """``root / relative`` resolved, refused unless it stays inside ``root``.

    ``relative`` must be a relative path without ``..`` parts; symlinks are followed, so a link that
    points out of ``root`` is refused as well.
    """
    text = os.fspath(relative)
    rel = PurePosixPath(text.replace("\\", "/"))
    if not text or "\x00" in text or rel.is_absolute() or Path(text).is_absolute() or ".." in rel.parts:
        raise CheckpointIntegrityError(
            f"checkpoint path {text!r} is not a relative path inside {root} "
            "(absolute paths and '..' are refused)"
        )
    base = Path(root).resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        raise CheckpointIntegrityError(f"checkpoint path {text!r} resolves to {target}, outside {base}")
    return target


def weights_fingerprint(path: str | Path) -> str:
    """The catalog's ``weights_sha256`` of a checkpoint: ``name:sha256[:16]`` of each safetensors file."""
    return ",".join(f"{f.name}:{file_sha256(f)[:16]}" for f in sorted(Path(path).glob("*.safetensors")))


def _parse_fingerprint(text: str) -> dict[str, str]:
    return dict(item.split(":", 1) for item in str(text).split(",") if ":" in item)


def verify_weights(path: str | Path, expected: str) -> None:
    """Raise :class:`CheckpointIntegrityError` unless ``path``'s files match the recorded fingerprint."""
    want = _parse_fingerprint(expected)
    if not want or MODEL_FILE not in want:
        raise CheckpointIntegrityError(
            f"checkpoint {path}: the catalog records no weights hash for it ({expected!r}); "
            "refusing to use it"
        )
    have = _parse_fingerprint(weights_fingerprint(path))
    for name in sorted(set(want) | set(have)):
        if want.get(name) != have.get(name):
            raise CheckpointIntegrityError(
                f"checkpoint {path}: {name} has sha256 {have.get(name, '(missing)')}, the catalog recorded "
                f"{want.get(name, '(no such file)')}: the checkpoint changed after training; refusing to "
                "evaluate or promote it"
            )


def verified_checkpoint(lake_root: str | Path, checkpoint_path: str, expected: str) -> Path:
    """A catalog row's checkpoint directory, confined to the lake and checked against its weights hash."""
    path = confined_path(lake_root, checkpoint_path)
    verify_weights(path, expected)
    return path


@dataclass(frozen=True)
class WeightsCatalog:
    """The catalog's record of one run's checkpoints: resolved directory -> ``weights_sha256``."""

    lake_root: Path
    expected: dict[Path, str]

    @classmethod
    def from_rows(cls, lake_root: str | Path, rows: Iterable[tuple[str, str]]) -> WeightsCatalog:
        """From ``(checkpoint_path, weights_sha256)`` pairs (paths relative to the lake, confined to it)."""
        root = Path(lake_root).resolve()
        return cls(root, {confined_path(root, p): str(h) for p, h in rows})

    @classmethod
    def from_table(cls, lake_root: str | Path, table) -> WeightsCatalog:
        """From the lake's ``checkpoints`` table (columns ``checkpoint_path`` and ``weights_sha256``)."""
        return cls.from_rows(lake_root, zip(table["checkpoint_path"], table["weights_sha256"], strict=True))

    def verify(self, path: str | Path) -> Path:
        """``path`` if it lies in the lake, is registered and its weights match; else refuse."""
        target = Path(path).resolve()
        if not target.is_relative_to(self.lake_root):
            raise CheckpointIntegrityError(f"checkpoint {path} lies outside the lake {self.lake_root}")
        if target not in self.expected:
            raise CheckpointIntegrityError(
                f"checkpoint {path} is not registered in the catalog; refusing to evaluate or promote it"
            )
        verify_weights(target, self.expected[target])
        return target

    def verify_all(self, under: str | Path | None = None) -> int:
        """Check every registered checkpoint still on disk (below ``under``, if given); returns how many.

        A run folder that was deleted to train afresh is fine; one whose files changed is refused
        (training resumes from these files and would otherwise re-register changed weights).
        """
        base = None if under is None else Path(under).resolve()
        checked = 0
        for path, expected in sorted(self.expected.items()):
            if (base is None or path.is_relative_to(base)) and path.exists():
                verify_weights(path, expected)
                checked += 1
        return checked
