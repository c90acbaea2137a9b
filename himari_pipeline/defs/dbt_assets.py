"""The dbt marts over the lake as Dagster assets (dagster-dbt); dbt tests become asset checks."""

import contextlib
import fcntl
import os
import shutil
import sys
from pathlib import Path

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from himari_pipeline.dbt_project import dbt_project_dir, prepare_dbt_env
from himari_pipeline.defs.data_assets import POOL
from himari_pipeline.defs.resources import LakeResource

MANIFEST = dbt_project_dir() / "target" / "manifest.json"


def _manifest_stale() -> bool:
    sources = [
        p for p in dbt_project_dir().rglob("*") if p.suffix in {".sql", ".yml"} and "target" not in p.parts
    ]
    return not MANIFEST.exists() or any(p.stat().st_mtime > MANIFEST.stat().st_mtime for p in sources)


def ensure_manifest(force: bool = False) -> Path:
    """Run ``dbt parse`` when the manifest is missing or older than a model, test or config file.

    Several processes may load the definitions at once (run workers, the webserver): a file lock
    makes one of them parse while the others wait and then reuse its manifest.
    """
    if not (force or _manifest_stale()):
        return MANIFEST
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    with open(MANIFEST.parent / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force or _manifest_stale():
            from dbt.cli.main import dbtRunner

            os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
            args = [
                "parse",
                "--project-dir",
                str(dbt_project_dir()),
                "--profiles-dir",
                str(dbt_project_dir()),
            ]
            res = dbtRunner().invoke([*args, "--quiet"])
            if not res.success:
                raise RuntimeError(f"dbt parse failed: {res.exception}")
    return MANIFEST


class _Translator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props) -> str:
        return "marts"


@dbt_assets(
    manifest=ensure_manifest(),
    dagster_dbt_translator=_Translator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
    pool=POOL,
    retry_policy=dg.RetryPolicy(max_retries=3, delay=5),
)
def dbt_marts(context: dg.AssetExecutionContext, dbt: DbtCliResource, lake: LakeResource):
    """`dbt build` over the lake (read-only attach) into ``<lake>/marts.duckdb``."""
    with _environ(prepare_dbt_env(lake.get().root)):  # the dbt subprocess reads the lake location from env
        yield from dbt.cli(["build"], context=context).stream()


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def dbt_resource() -> DbtCliResource:
    """dbt from this interpreter's environment (the venv need not be activated), else from PATH."""
    beside = Path(sys.executable).parent / "dbt"
    executable = str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")
    return DbtCliResource(
        project_dir=str(dbt_project_dir()), profiles_dir=str(dbt_project_dir()), dbt_executable=executable
    )
