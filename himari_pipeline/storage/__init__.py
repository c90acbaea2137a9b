"""Storage: the versioned lake (DuckLake catalog + Parquet files)."""
