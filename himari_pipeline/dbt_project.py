"""Where the dbt project lives and the environment its ``profiles.yml`` reads (no Dagster import).

dbt reads the lake (DuckLake) read-only and writes its own DuckDB file, ``<lake root>/marts.duckdb``,
so it never takes the lake's single writer lock. Typical use::

    env = prepare_dbt_env(lake.root)
    subprocess.run(["dbt", "build"], cwd=dbt_project_dir(), env={**os.environ, **env}, check=True)
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from himari_pipeline.storage.lake import Lake, load_ducklake

_DBT_DIR = Path(__file__).resolve().parent.parent / "dbt"
MARTS_FILE = "marts.duckdb"


def dbt_project_dir() -> Path:
    """The dbt project folder (holds ``dbt_project.yml`` and ``profiles.yml``)."""
    return _DBT_DIR


def ensure_ducklake_installed() -> None:
    """Install the DuckLake extension offline (from its wheel) once, so dbt-duckdb can ``LOAD`` it."""
    con = duckdb.connect()
    try:
        load_ducklake(con)
    finally:
        con.close()


def prepare_dbt_env(
    lake_root: str | Path,
    *,
    marts_path: str | Path | None = None,
    target_path: str | Path | None = None,
) -> dict[str, str]:
    """Environment variables for a dbt run over the lake at ``lake_root`` (merge into ``os.environ``).

    Honours ``HIMARI_LAKE_CATALOG`` / ``HIMARI_LAKE_DATA_PATH`` like :class:`Lake`. ``marts_path``
    defaults to ``<lake root>/marts.duckdb``; ``target_path`` (dbt's artifacts: manifest, run
    results) defaults to ``dbt/target``. Also makes sure the DuckLake extension is installed.
    """
    ensure_ducklake_installed()
    lake = Lake(lake_root)
    env = {
        "HIMARI_LAKE_ROOT": str(lake.root),
        "HIMARI_LAKE_CATALOG": lake.catalog,
        "HIMARI_LAKE_DATA_PATH": lake.data_path.rstrip("/") + "/",
        "HIMARI_DBT_DUCKDB": str(Path(marts_path) if marts_path else lake.root / MARTS_FILE),
        "DBT_PROFILES_DIR": str(_DBT_DIR),
        "DBT_PROJECT_DIR": str(_DBT_DIR),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    if target_path is not None:
        env["DBT_TARGET_PATH"] = str(target_path)
    return env
