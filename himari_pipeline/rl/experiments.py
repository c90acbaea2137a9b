"""Frozen experiment configs: one YAML file per experiment under ``experiments/``, validated strictly.

An experiment names everything a training run depends on besides the data itself::

    name: default                      # must equal the file name's stem
    description: ...
    dataset: SYNTH-PLANTED_1h          # its default dataset (``himari run -e NAME -d KEY`` picks another)
    features_key: features_denoised    # or features_raw
    features: [logret_96, ...]         # optional: the policy sees only these columns (default: all 44)
    split: default                     # fractions preset: default (60/20/20) or bear (40/40/20)
    torch_threads: 1                   # optional; null leaves torch's default
    policy: small                      # a preset (small, full) or {preset: small, <PolicyConfig field>: ...}
    env: {<EnvConfig field>: ...}
    ppo: {<PPOConfig field>: ...}      # algorithm fields
    selection: {<PPOConfig field>: ...}  # evaluation / selection / early-stop / collapse fields

Unknown keys anywhere raise ``ValueError`` naming the file and the key. A YAML file may not set
``bars_per_year`` (in ``env`` or ``selection``): bars per year are a property of the dataset (its calendar
and timeframe), set by :meth:`Experiment.on_dataset` for the dataset a run trains on, so that the env's
carry and borrow per bar, the training-time selection Sharpe and the report all use the same number.
Experiments whose name starts with ``smoke`` are test-only: :func:`list_experiments` leaves them out
unless asked (or ``HIMARI_TEST_EXPERIMENTS=1``), so they do not clutter the UI's partitions.
:meth:`Experiment.config_hash` is the sha256 of the canonical JSON of :meth:`Experiment.to_dict` (after
defaults are filled in), so two files that differ only in formatting, key order or spelled-out
defaults hash the same.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from himari_pipeline.datasets.splits import FRACTION_PRESETS, DatasetSplits
from himari_pipeline.features.catalog import FEATURE_NAMES
from himari_pipeline.market.bars import validate_name
from himari_pipeline.rl.configs import EnvConfig, PolicyConfig, PPOConfig

__all__ = [
    "EXPERIMENTS_DIR",
    "FEATURES_KEYS",
    "SELECTION_FIELDS",
    "TEST_EXPERIMENTS_ENV",
    "Experiment",
    "is_test_experiment",
    "list_experiments",
    "load_experiment",
    "include_test_experiments",
]

EXPERIMENTS_DIR = Path(__file__).resolve().parents[2] / "experiments"
TEST_EXPERIMENTS_ENV = "HIMARI_TEST_EXPERIMENTS"
TEST_PREFIX = "smoke"
DATASET_KEYS = ("bars_per_year",)  # set from the dataset, never by a YAML file
FEATURES_KEYS = ("features_denoised", "features_raw")
POLICY_PRESETS = ("small", "full")
SELECTION_FIELDS = (
    "eval_every",
    "eval_start",
    "eval_temperature",
    "eval_greedy",
    "eval_seed",
    "bars_per_year",
    "select_metric",
    "select_mode",
    "patience",
    "collapse_max_share",
    "collapse_entropy_floor",
    "stop_on_collapse",
)
_PPO_FIELDS = tuple(f.name for f in dataclasses.fields(PPOConfig))
ALGO_FIELDS = tuple(n for n in _PPO_FIELDS if n not in SELECTION_FIELDS and n not in ("device", "exp_name"))
# fields left out of the canonical config while at their default, so adding them kept every hash
_OMIT_AT_DEFAULT = {"seeds": None, "mirror": False, "eval_start": None}


def canonical_fields(ppo: dict, names: tuple[str, ...]) -> dict:
    """``ppo``'s ``names`` without the fields at their omitted default (:data:`_OMIT_AT_DEFAULT`)."""
    return {k: ppo[k] for k in names if not (k in _OMIT_AT_DEFAULT and ppo[k] == _OMIT_AT_DEFAULT[k])}


_ENV_FIELDS = tuple(f.name for f in dataclasses.fields(EnvConfig))
_POLICY_FIELDS = tuple(f.name for f in dataclasses.fields(PolicyConfig))
_TOP_FIELDS = (
    "name",
    "description",
    "dataset",
    "features_key",
    "features",
    "split",
    "torch_threads",
    "policy",
    "env",
    "ppo",
    "selection",
)
_REQUIRED = ("name", "dataset")


def check_keys(where: str, section: str, keys, allowed) -> None:
    bad = sorted(set(keys) - set(allowed))
    if bad:
        raise ValueError(
            f"{where}: unknown key {bad[0]!r} in {section}"
            + (f" (and {bad[1:]})" if len(bad) > 1 else "")
            + f"; allowed: {', '.join(sorted(allowed))}"
        )


def coerce_values(where: str, section: str, values: dict, cls: type) -> dict:
    """Check each value against ``cls``'s field type (YAML reads ``1e-3`` as a string); ints -> floats."""
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        hint = hints[key]
        options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        bases = {typing.get_origin(o) or o for o in options}
        ok = value is None and type(None) in bases
        if not ok and not isinstance(value, bool) and isinstance(value, int | float):
            if float in bases and math.isfinite(value):
                value, ok = float(value), True
            elif int in bases and isinstance(value, int):
                ok = True
        elif not ok:
            ok = any(
                b is not float and b is not int and isinstance(value, b) for b in bases if b is not type(None)
            )
            ok = ok or (tuple in bases and isinstance(value, list))
        if not ok:
            raise ValueError(
                f"{where}: {section}.{key} must be {hint}, got {value!r} ({type(value).__name__})"
            )
        out[key] = value
    return out


def _policy_dict(policy: str | dict, where: str) -> dict:
    """A preset name or mapping -> the full PolicyConfig dict (with ``preset`` kept for readability)."""
    if isinstance(policy, str):
        policy = {"preset": policy}
    if not isinstance(policy, dict):
        raise ValueError(f"{where}: policy must be a preset name or a mapping, got {type(policy).__name__}")
    check_keys(where, "policy", policy, (*_POLICY_FIELDS, "preset"))
    preset = policy.get("preset", "full")
    if preset not in POLICY_PRESETS:
        raise ValueError(f"{where}: unknown policy preset {preset!r}; choose one of {POLICY_PRESETS}")
    overrides = coerce_values(
        where, "policy", {k: v for k, v in policy.items() if k != "preset"}, PolicyConfig
    )
    try:
        cfg = getattr(PolicyConfig, preset)(**overrides)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: invalid policy: {e}") from e
    return {"preset": preset, **cfg.to_dict()}


@dataclass
class Experiment:
    """A frozen experiment (see the module docstring). Build with :func:`load_experiment`."""

    name: str
    dataset: str
    description: str = ""
    features_key: str = "features_denoised"
    features: list[str] | None = None
    split: str = "default"
    torch_threads: int | None = None
    policy: dict = field(default_factory=lambda: {"preset": "small"})
    env: dict = field(default_factory=dict)
    ppo: dict = field(default_factory=dict)
    selection: dict = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = self.source or f"experiment {self.name!r}"
        validate_name("experiment name", self.name)
        validate_name("dataset", self.dataset)
        if self.features_key not in FEATURES_KEYS:
            raise ValueError(
                f"{where}: features_key must be one of {FEATURES_KEYS}, got {self.features_key!r}"
            )
        self.features = _feature_list(self.features, where)
        if self.split not in FRACTION_PRESETS:
            raise ValueError(f"{where}: split must be one of {sorted(FRACTION_PRESETS)}, got {self.split!r}")
        if self.torch_threads is not None and int(self.torch_threads) < 1:
            raise ValueError(f"{where}: torch_threads must be >= 1 or null")
        self.policy = _policy_dict(self.policy, where)
        for section, allowed in (
            ("env", _ENV_FIELDS),
            ("ppo", ALGO_FIELDS),
            ("selection", SELECTION_FIELDS),
        ):
            value = getattr(self, section) or {}
            if not isinstance(value, dict):
                raise ValueError(f"{where}: {section} must be a mapping")
            check_keys(where, section, value, allowed)
            setattr(
                self,
                section,
                coerce_values(where, section, value, EnvConfig if section == "env" else PPOConfig),
            )
        try:  # fill in defaults so the hash does not depend on which defaults were spelled out
            env = dataclasses.asdict(EnvConfig(**self.env))
            ppo = dataclasses.asdict(PPOConfig(**self.ppo, **self.selection))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from e
        self.env = env
        self.ppo = canonical_fields(ppo, ALGO_FIELDS)
        self.selection = canonical_fields(ppo, SELECTION_FIELDS)

    # ------------------------------------------------------------------ configs
    def policy_config(self, **overrides: Any) -> PolicyConfig:
        d = {k: v for k, v in self.policy.items() if k != "preset"}
        return PolicyConfig.from_dict({**d, **overrides})

    def env_config(self) -> EnvConfig:
        return EnvConfig(**self.env)

    def ppo_config(self, device: str = "cpu") -> PPOConfig:
        return PPOConfig(**self.ppo, **self.selection, device=device, exp_name=self.name)

    def input_splits(self, splits: DatasetSplits) -> DatasetSplits:
        """``splits`` cut to the feature columns the policy sees (:attr:`features`; all when None)."""
        try:
            return splits.select_features(self.features)
        except ValueError as e:
            raise ValueError(f"{self.source or f'experiment {self.name!r}'}: features: {e}") from e

    def on_dataset(self, dataset: str | None, bars_per_year: float) -> Experiment:
        """This experiment trained on ``dataset`` (its default when None), annualized with the dataset's
        ``bars_per_year`` (env carry/borrow per bar and the selection Sharpe; the config hash changes)."""
        if not (
            isinstance(bars_per_year, int | float) and math.isfinite(bars_per_year) and bars_per_year > 0
        ):
            raise ValueError(f"bars_per_year must be a positive number, got {bars_per_year!r}")
        return dataclasses.replace(
            self,
            dataset=dataset or self.dataset,
            env={**self.env, "bars_per_year": float(bars_per_year)},
            selection={**self.selection, "bars_per_year": None},
        )

    # ------------------------------------------------------------------ identity
    def to_dict(self) -> dict:
        """The canonical config (every default filled in); the source path is not part of it."""
        d = {k: getattr(self, k) for k in _TOP_FIELDS if not (k == "features" and self.features is None)}
        return json.loads(json.dumps(d, sort_keys=True))

    def config_hash(self) -> str:
        """sha256 of the canonical JSON of :meth:`to_dict` (sorted keys, no whitespace)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    @classmethod
    def from_dict(cls, d: dict, source: str | None = None) -> Experiment:
        where = source or "experiment"
        if not isinstance(d, dict):
            raise ValueError(f"{where}: an experiment must be a YAML mapping, got {type(d).__name__}")
        check_keys(where, "the experiment", d, _TOP_FIELDS)
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise ValueError(f"{where}: missing required key {missing[0]!r}")
        return cls(**d, source=source)


def _feature_list(features, where: str) -> list[str] | None:
    """``features:`` checked: None, or distinct names from the feature catalog."""
    if features is None:
        return None
    if not isinstance(features, list) or not features or not all(isinstance(f, str) for f in features):
        raise ValueError(f"{where}: features must be a non-empty list of feature names, got {features!r}")
    unknown = [f for f in features if f not in FEATURE_NAMES]
    if unknown:
        known = ", ".join(FEATURE_NAMES)
        raise ValueError(f"{where}: unknown feature(s) {unknown} in features; known: {known}")
    if len(set(features)) != len(features):
        raise ValueError(f"{where}: features lists a name twice: {features}")
    return list(features)


def _resolve(path_or_name: str | Path, root: Path) -> Path:
    p = Path(path_or_name)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    validate_name("experiment name", str(path_or_name))
    return root / f"{path_or_name}.yaml"


def load_experiment(path_or_name: str | Path, root: str | Path | None = None) -> Experiment:
    """Read ``experiments/<name>.yaml`` (or a path) with ``yaml.safe_load`` and validate it strictly."""
    root = Path(root) if root is not None else EXPERIMENTS_DIR
    path = _resolve(path_or_name, root)
    if not path.is_file():
        known = ", ".join(list_experiments(root, include_test=True)) or "none"
        raise FileNotFoundError(f"no experiment file {path} (known experiments: {known})")
    data = yaml.safe_load(path.read_text())
    _reject_dataset_keys(data, str(path))
    exp = Experiment.from_dict(data, source=str(path))
    if exp.name != path.stem:
        raise ValueError(f"{path}: name {exp.name!r} must equal the file name {path.stem!r}")
    return exp


def _reject_dataset_keys(data, where: str) -> None:
    """A YAML file may not restate what the dataset decides (bars per year)."""
    if not isinstance(data, dict):
        return
    for section in ("env", "selection"):
        values = data.get(section)
        for key in DATASET_KEYS:
            if isinstance(values, dict) and key in values:
                raise ValueError(
                    f"{where}: {section}.{key} may not be set in an experiment: bars per year come from "
                    f"the dataset (its calendar and timeframe, see `himari datasets`); remove the key"
                )


def is_test_experiment(name: str) -> bool:
    """Test-only experiments (``smoke*``): tiny configs the tests train in seconds."""
    return name.startswith(TEST_PREFIX)


def include_test_experiments() -> bool:
    """Whether ``HIMARI_TEST_EXPERIMENTS`` asks for the test-only experiments."""
    return os.environ.get(TEST_EXPERIMENTS_ENV, "").strip().lower() in ("1", "true", "yes")


def list_experiments(root: str | Path | None = None, include_test: bool | None = None) -> list[str]:
    """Names of the experiment files under ``root`` (default ``experiments/``), sorted.

    Test-only experiments are listed when ``include_test`` is True, or when it is None (the default)
    and ``HIMARI_TEST_EXPERIMENTS=1``.
    """
    root = Path(root) if root is not None else EXPERIMENTS_DIR
    names = sorted(p.stem for p in root.glob("*.yaml")) if root.is_dir() else []
    if include_test is None:
        include_test = include_test_experiments()
    return [n for n in names if include_test or not is_test_experiment(n)]
