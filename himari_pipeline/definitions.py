"""The one Definitions object (``dagster dev -m himari_pipeline.definitions`` or ``workspace.yaml``)."""

import dagster as dg

from himari_pipeline.defs.data_assets import DATA_ASSETS
from himari_pipeline.defs.data_checks import DATA_CHECKS
from himari_pipeline.defs.jobs import data_job, train_job
from himari_pipeline.defs.resources import LakeResource, PipelineSettings
from himari_pipeline.defs.training_assets import TRAINING_ASSETS, TRAINING_CHECKS
from himari_pipeline.ui_settings import settings_overrides

defs = dg.Definitions(
    assets=[*DATA_ASSETS, *TRAINING_ASSETS],
    asset_checks=[*DATA_CHECKS, *TRAINING_CHECKS],
    jobs=[data_job, train_job],
    resources={"lake": LakeResource(), "settings": PipelineSettings(**settings_overrides())},
)
