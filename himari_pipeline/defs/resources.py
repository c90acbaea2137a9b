"""Resources: the lake, configured by root, catalog and data path (local DuckDB file by default)."""

from __future__ import annotations

import dagster as dg

from himari_pipeline.config import lake_root
from himari_pipeline.storage.lake import Lake


class LakeResource(dg.ConfigurableResource):
    """The versioned lake. ``catalog``/``data_path`` may point at PostgreSQL and object storage."""

    root: str = ""
    catalog: str | None = None
    data_path: str | None = None

    def get(self) -> Lake:
        return Lake(self.root or lake_root(), catalog=self.catalog, data_path=self.data_path)


class PipelineSettings(dg.ConfigurableResource):
    """Knobs shared by the data assets."""

    raw_dir: str = ""
    synthetic_seed: int = 7
    synthetic_start: str = "2020-01-01"
    synthetic_end: str = "2025-12-31"
    truncation_prefixes: int = 6
