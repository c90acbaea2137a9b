"""Where a dataset's bars come from: the built-in synthetic market or files under ``raw/``.

A dataset is identified by its key ``SYMBOL_TIMEFRAME``. ``SYNTH-PLANTED_*`` and ``SYNTH-NULL_*``
are the built-in synthetic market (planted-signal positive control and null negative control);
every other key reads the files in ``<raw>/<SYMBOL>/<TIMEFRAME>/`` (Binance kline CSV/ZIP, generic
CSV/Parquet), validated as a whole before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from himari_pipeline.market.bars import parse_dataset_key
from himari_pipeline.market.readers import canonical, load_bars
from himari_pipeline.market.synthetic import SyntheticConfig, generate_synthetic_bars
from himari_pipeline.market.validation import BarValidationError
from himari_pipeline.storage.hashing import file_sha256

SYNTHETIC_VARIANTS = {"SYNTH-PLANTED": "planted", "SYNTH-NULL": "null"}
SUPPORTED_SUFFIXES = (".csv", ".zip", ".parquet", ".pq")


@dataclass
class LoadedBars:
    """Validated bars plus where they came from (file sha256s or the generator config)."""

    key: str
    bars: pd.DataFrame
    provenance: dict = field(default_factory=dict)
    gaps: list = field(default_factory=list)


def is_synthetic(key: str) -> bool:
    return parse_dataset_key(key)[0] in SYNTHETIC_VARIANTS


def dataset_files(key: str, raw_root: Path) -> list[Path]:
    """The raw files of a file-backed dataset, sorted by name."""
    symbol, timeframe = parse_dataset_key(key)
    folder = Path(raw_root) / symbol / timeframe
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and _supported(p))


def _supported(path: Path) -> bool:
    name = path.name.lower()
    return not name.startswith(".") and any(name.endswith(s) for s in SUPPORTED_SUFFIXES)


def load_files(paths: list[Path], timeframe: str, gap_policy: str = "error") -> tuple[pd.DataFrame, list]:
    """Read, merge and validate files; raises :class:`BarValidationError` naming file, row and rule."""
    if not paths:
        raise BarValidationError(None, None, "no_files", "no files given")
    merged, report = load_bars([str(p) for p in paths], timeframe, gap_policy=gap_policy)
    return canonical(merged), list(report.gaps)


def load_dataset(
    key: str, raw_root: Path, gap_policy: str = "error", seed: int = 7, span: tuple[str, str] | None = None
) -> LoadedBars:
    """Load the bars of dataset ``key`` from its source (``span`` = synthetic start/end dates)."""
    symbol, timeframe = parse_dataset_key(key)
    if symbol in SYNTHETIC_VARIANTS:
        dates = {"start": span[0], "end": span[1]} if span else {}
        cfg = SyntheticConfig(seed=seed, variant=SYNTHETIC_VARIANTS[symbol], timeframe=timeframe, **dates)
        bars = generate_synthetic_bars(cfg)
        prov = {
            "source": "synthetic",
            "variant": cfg.variant,
            "seed": seed,
            "start": cfg.start,
            "end": cfg.end,
        }
        return LoadedBars(key, bars, prov)
    paths = dataset_files(key, raw_root)
    if not paths:
        raise FileNotFoundError(
            f"dataset {key}: no files in {Path(raw_root) / symbol / timeframe}; use `himari ingest` or drop "
            "Binance kline CSV/ZIP or CSV/Parquet files there"
        )
    bars, gaps = load_files(paths, timeframe, gap_policy)
    prov = {"source": "files", "files": {p.name: file_sha256(p) for p in paths}}
    return LoadedBars(key, bars, prov, gaps)
