"""The one Definitions object (``dagster dev -m himari_pipeline.definitions`` or ``workspace.yaml``)."""

import dagster as dg

from himari_pipeline.defs.automation import SCHEDULES, SENSORS
from himari_pipeline.defs.data_assets import DATA_ASSETS
from himari_pipeline.defs.data_checks import DATA_CHECKS
from himari_pipeline.defs.dbt_assets import dbt_marts, dbt_resource
from himari_pipeline.defs.exit_assets import EXIT_ASSETS, EXIT_CHECKS, exit_job
from himari_pipeline.defs.jobs import data_job, marts_job, train_job, validate_job
from himari_pipeline.defs.pair_assets import PAIR_ASSETS, pair_job
from himari_pipeline.defs.progress import LOGGERS
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.defs.strategy_assets import STRATEGY_ASSETS, strategy_job
from himari_pipeline.defs.training_assets import TRAINING_ASSETS, TRAINING_CHECKS
from himari_pipeline.defs.validation_assets import VALIDATION_ASSETS, VALIDATION_CHECKS
from himari_pipeline.ui_settings import settings_overrides

defs = dg.Definitions(
    assets=[
        *DATA_ASSETS,
        *TRAINING_ASSETS,
        *VALIDATION_ASSETS,
        *STRATEGY_ASSETS,
        *PAIR_ASSETS,
        *EXIT_ASSETS,
        dbt_marts,
    ],
    asset_checks=[*DATA_CHECKS, *TRAINING_CHECKS, *VALIDATION_CHECKS, *EXIT_CHECKS],
    jobs=[data_job, train_job, validate_job, marts_job, strategy_job, pair_job, exit_job],
    schedules=SCHEDULES,
    sensors=SENSORS,
    loggers=LOGGERS,
    resources={
        "lake": LakeResource(),
        "settings": PipelineSettings(**settings_overrides()),
        "dbt": dbt_resource(),
    },
)
