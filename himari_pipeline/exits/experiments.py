"""Frozen exit experiments: one YAML file per experiment under ``experiments/exits/``, validated strictly.

::

    name: exit_default                 # must equal the file name's stem
    description: ...
    dataset: SYNTH-PLANTED_1h          # its default dataset
    torch_threads: 1                   # optional
    entries: {rule: breakout, lookback: 48, min_gap: 24}       # EntryRule fields
    exit: {stop_loss: 0.03, max_hold: 96, ...}                 # ExitConfig fields
    policy: {hidden: 64, layers: 2}                            # ExitPolicyConfig fields (not n_obs)
    ppo: {total_timesteps: ..., num_envs: 256, ...}            # PPOConfig algorithm fields
    selection: {eval_every: ..., patience: ..., select_metric: greedy_sharpe}

Unknown keys raise ``ValueError`` naming the file and the key (the trading experiments' rules, the
same checks). ``smoke*`` experiments are test-only. :meth:`ExitExperiment.config_hash` is the sha256
of the canonical JSON of :meth:`ExitExperiment.to_dict` (defaults filled in).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from himari_pipeline.exits.configs import EntryRule, ExitConfig
from himari_pipeline.market.bars import validate_name
from himari_pipeline.rl.configs import PPOConfig
from himari_pipeline.rl.experiments import (
    ALGO_FIELDS,
    EXPERIMENTS_DIR,
    SELECTION_FIELDS,
    canonical_fields,
    check_keys,
    coerce_values,
    list_experiments,
)

EXIT_EXPERIMENTS_DIR = EXPERIMENTS_DIR / "exits"
_TOP = ("name", "description", "dataset", "torch_threads", "entries", "exit", "policy", "ppo", "selection")
_POLICY = ("hidden", "layers")
_UNSUPPORTED_PPO = ("seeds", "mirror", "bootstrap_truncated")  # trading-only options


def _fields(cls) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@dataclass
class ExitExperiment:
    """A frozen exit experiment (see the module doc). Build with :func:`load_exit_experiment`."""

    name: str
    dataset: str
    description: str = ""
    torch_threads: int | None = 1
    entries: dict = field(default_factory=dict)
    exit: dict = field(default_factory=dict)
    policy: dict = field(default_factory=dict)
    ppo: dict = field(default_factory=dict)
    selection: dict = field(default_factory=dict)
    source: str | None = field(default=None, compare=False)

    def entry_rule(self) -> EntryRule:
        return EntryRule(**self.entries)

    def exit_config(self) -> ExitConfig:
        return ExitConfig(**self.exit)

    def ppo_config(self) -> PPOConfig:
        return PPOConfig(exp_name=self.name, **self.ppo, **self.selection)

    def to_dict(self) -> dict:
        """The canonical form: every section with its defaults filled in."""
        ppo = dataclasses.asdict(self.ppo_config())
        return {
            "name": self.name,
            "description": self.description,
            "dataset": self.dataset,
            "torch_threads": self.torch_threads,
            "entries": self.entry_rule().to_dict(),
            "exit": dataclasses.asdict(self.exit_config()),
            "policy": {"hidden": 64, "layers": 2, **self.policy},
            "ppo": {k: ppo[k] for k in ALGO_FIELDS if k not in _UNSUPPORTED_PPO},
            "selection": canonical_fields(ppo, tuple(k for k in SELECTION_FIELDS if k != "bars_per_year")),
        }

    def config_hash(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_dict(cls, d: dict, source: str | None = None) -> ExitExperiment:
        where = source or "exit experiment"
        if not isinstance(d, dict):
            raise ValueError(f"{where}: an exit experiment is a mapping")
        check_keys(where, "the top level", d, _TOP)
        for key in ("name", "dataset"):
            if not d.get(key):
                raise ValueError(f"{where}: missing required key {key!r}")
        sections = {}
        for section, allowed, cls_ in (
            ("entries", _fields(EntryRule), EntryRule),
            ("exit", _fields(ExitConfig), ExitConfig),
            ("ppo", tuple(k for k in ALGO_FIELDS if k not in _UNSUPPORTED_PPO), PPOConfig),
            ("selection", tuple(k for k in SELECTION_FIELDS if k != "bars_per_year"), PPOConfig),
        ):
            values = d.get(section) or {}
            if not isinstance(values, dict):
                raise ValueError(f"{where}: {section} must be a mapping")
            check_keys(where, section, values, allowed)
            sections[section] = coerce_values(where, section, values, cls_)
        policy = d.get("policy") or {}
        if not isinstance(policy, dict):
            raise ValueError(f"{where}: policy must be a mapping")
        check_keys(where, "policy", policy, _POLICY)
        exp = cls(name=validate_name("experiment name", str(d["name"])), dataset=str(d["dataset"]),
                  description=str(d.get("description", "")), torch_threads=d.get("torch_threads", 1),
                  policy=dict(policy), source=source, **sections)  # fmt: skip
        try:  # every section builds
            exp.entry_rule(), exp.exit_config(), exp.ppo_config()
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None
        return exp


def list_exit_experiments(include_test: bool | None = None) -> list[str]:
    """Names of the exit experiments (``smoke*`` only with ``include_test`` or the test env var)."""
    return list_experiments(EXIT_EXPERIMENTS_DIR, include_test)


def is_exit_experiment(name: str) -> bool:
    return (EXIT_EXPERIMENTS_DIR / f"{name}.yaml").is_file()


def load_exit_experiment(name_or_path: str | Path) -> ExitExperiment:
    """``experiments/exits/NAME.yaml`` (or a path), validated."""
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        validate_name("experiment name", str(name_or_path))
        p = EXIT_EXPERIMENTS_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        known = ", ".join(list_exit_experiments(include_test=True)) or "none"
        raise FileNotFoundError(f"no exit experiment file {p} (known: {known})")
    exp = ExitExperiment.from_dict(yaml.safe_load(p.read_text()), source=str(p))
    if exp.name != p.stem:
        raise ValueError(f"{p}: name {exp.name!r} must equal the file name {p.stem!r}")
    return exp
