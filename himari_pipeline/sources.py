"""Where a dataset's bars come from: the built-in synthetic market or files under ``raw/``.

A dataset is identified by its key ``SYMBOL_TIMEFRAME``. ``SYNTH-PLANTED_*`` and ``SYNTH-NULL_*``
are the built-in synthetic market (planted-signal positive control and null negative control), and
``SYNTH-PLANTED-S<n>_*`` / ``SYNTH-NULL-S<n>_*`` the same markets drawn with market seed ``n``;
every other key reads the files in ``<raw>/<SYMBOL>/<TIMEFRAME>/`` (Binance kline CSV/ZIP, generic
CSV/Parquet), validated as a whole before anything is written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from himari_pipeline.market.bars import dataset_key, parse_dataset_key
from himari_pipeline.market.readers import canonical, load_bars
from himari_pipeline.market.settings import DatasetSettings, read_settings, settings_path
from himari_pipeline.market.synthetic import SyntheticConfig, generate_synthetic_bars
from himari_pipeline.market.validation import BarValidationError, ValidationReport
from himari_pipeline.storage.hashing import file_sha256

SYNTHETIC_VARIANTS = {"SYNTH-PLANTED": "planted", "SYNTH-NULL": "null"}
#: ``SYNTH-PLANTED-S3``: the planted variant drawn with market seed 3 (no suffix: the settings' seed, 7)
_SYNTHETIC_SYMBOL = re.compile(r"^(SYNTH-PLANTED|SYNTH-NULL)(?:-S(\d{1,9}))?$")
SUPPORTED_SUFFIXES = (".csv", ".zip", ".parquet", ".pq")


@dataclass
class LoadedBars:
    """Validated bars (``RAW_COLUMNS``: the bar schema + ``gap_before``) and where they came from."""

    key: str
    bars: pd.DataFrame
    provenance: dict = field(default_factory=dict)
    gaps: list = field(default_factory=list)
    settings: DatasetSettings = field(default_factory=DatasetSettings)
    report: ValidationReport | None = None

    @property
    def bars_per_year(self) -> float:
        return self.settings.bars_per_year(parse_dataset_key(self.key)[1])


def synthetic_market(key: str) -> tuple[str, int | None] | None:
    """``(variant, market seed or None)`` of a built-in synthetic dataset key, None for other keys.

    ``SYNTH-PLANTED_1h`` is the planted variant at the default seed; ``SYNTH-NULL-S4_1h`` the null
    variant drawn with seed 4 (each seed is its own market, so its own dataset in the lake).
    """
    m = _SYNTHETIC_SYMBOL.match(parse_dataset_key(key)[0])
    if m is None:
        return None
    return SYNTHETIC_VARIANTS[m.group(1)], None if m.group(2) is None else int(m.group(2))


def is_synthetic(key: str) -> bool:
    return synthetic_market(key) is not None


def dataset_folder(key: str, raw_root: Path) -> Path:
    """``<raw_root>/<SYMBOL>/<TIMEFRAME>``: the dataset's files and its ``dataset.json``."""
    symbol, timeframe = parse_dataset_key(key)
    return Path(raw_root) / symbol / timeframe


def dataset_settings(key: str, raw_root: Path) -> DatasetSettings:
    """The dataset's stored settings (defaults for synthetic datasets and datasets without a file)."""
    if is_synthetic(key):
        return DatasetSettings()
    return read_settings(dataset_folder(key, raw_root))


def dataset_calendar(key: str, raw_root: Path) -> str:
    """The dataset's trading calendar: ``24/7``, ``24/5`` or an exchange (``XNYS``, ...)."""
    return dataset_settings(key, raw_root).calendar


def dataset_bars_per_year(key: str, raw_root: Path) -> float:
    """Bars per year of the dataset, from its calendar and timeframe (synthetic and unknown: 24/7)."""
    _, timeframe = parse_dataset_key(key)
    return dataset_settings(key, raw_root).bars_per_year(timeframe)


def dataset_files(key: str, raw_root: Path) -> list[Path]:
    """The raw files of a file-backed dataset, sorted by name."""
    symbol, timeframe = parse_dataset_key(key)
    folder = Path(raw_root) / symbol / timeframe
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and is_supported(p))


def raw_dataset_keys(raw_root: Path) -> list[str]:
    """Keys of the file-backed datasets with at least one supported file under ``raw_root``."""
    keys = []
    root = Path(raw_root)
    if not root.is_dir():
        return keys
    for tf_dir in sorted(root.glob("*/*")):
        try:
            key = dataset_key(tf_dir.parent.name, tf_dir.name)
        except ValueError:
            continue
        if tf_dir.is_dir() and not is_synthetic(key) and dataset_files(key, root):
            keys.append(key)
    return keys


def is_supported(path: Path) -> bool:
    """A file the data job reads: a supported suffix (case-insensitive), not a dot-file."""
    name = path.name.lower()
    return not name.startswith(".") and any(name.endswith(s) for s in SUPPORTED_SUFFIXES)


def with_gap_column(bars: pd.DataFrame, report: ValidationReport) -> pd.DataFrame:
    """``bars`` (canonical columns) plus ``gap_before``: missing expected bars just before each bar."""
    out = canonical(bars)
    out["gap_before"] = report.gap_before.astype("int64") if len(report.gap_before) else 0
    return out


def load_files(
    paths: list[Path], timeframe: str, settings: DatasetSettings | None = None
) -> tuple[pd.DataFrame, ValidationReport]:
    """Read, merge and validate files under ``settings`` (calendar, gap policy).

    Returns the bars with ``gap_before`` and the validation report; raises
    :class:`BarValidationError` naming file, row and rule.
    """
    settings = settings or DatasetSettings()
    if not paths:
        raise BarValidationError(None, None, "no_files", "no files given")
    merged, report = load_bars(
        [str(p) for p in paths],
        timeframe,
        gap_policy=settings.gap_policy,
        calendar=settings.calendar,
        max_gap_bars=settings.max_gap_bars,
    )
    return with_gap_column(merged, report), report


def load_dataset(key: str, raw_root: Path, seed: int = 7, span: tuple[str, str] | None = None) -> LoadedBars:
    """Load the bars of dataset ``key`` from its source with its stored settings (``span`` = synthetic
    start/end dates)."""
    symbol, timeframe = parse_dataset_key(key)
    settings = dataset_settings(key, raw_root)
    market = synthetic_market(key)
    if market is not None:
        variant, key_seed = market
        seed = seed if key_seed is None else key_seed
        dates = {"start": span[0], "end": span[1]} if span else {}
        cfg = SyntheticConfig(seed=seed, variant=variant, timeframe=timeframe, symbol=symbol, **dates)
        bars = generate_synthetic_bars(cfg)
        bars = bars.assign(gap_before=np.zeros(len(bars), dtype=np.int64))
        prov = {
            "source": "synthetic",
            "variant": cfg.variant,
            "seed": seed,
            "start": cfg.start,
            "end": cfg.end,
        }
        return LoadedBars(key, bars, prov, settings=settings)
    paths = dataset_files(key, raw_root)
    if not paths:
        raise FileNotFoundError(
            f"dataset {key}: no files in {Path(raw_root) / symbol / timeframe}; use `himari ingest` or drop "
            "Binance kline CSV/ZIP or CSV/Parquet files there"
        )
    bars, report = load_files(paths, timeframe, settings)
    prov = {"source": "files", "files": {p.name: file_sha256(p) for p in paths}}
    settings_file = settings_path(dataset_folder(key, raw_root))
    if settings_file.is_file():
        prov["settings"] = {settings_file.name: file_sha256(settings_file)}
    return LoadedBars(key, bars, prov, list(report.gaps), settings, report)
