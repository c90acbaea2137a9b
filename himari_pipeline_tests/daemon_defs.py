"""The project's definitions plus one test schedule that ticks every minute (for ``test_daemon``).

``every_minute_append_schedule`` evaluates exactly what ``daily_append_schedule`` does (``data_job``
for every dataset partition), on a cron the daemon reaches within a minute instead of at 00:15 UTC.
"""

import dagster as dg

from himari_pipeline import definitions
from himari_pipeline.defs.automation import daily_append_schedule
from himari_pipeline.defs.jobs import data_job

TEST_SCHEDULE = "every_minute_append_schedule"


@dg.schedule(
    name=TEST_SCHEDULE,
    cron_schedule="* * * * *",
    execution_timezone="UTC",
    job=data_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def every_minute_append_schedule(context: dg.ScheduleEvaluationContext):
    return daily_append_schedule(context)


defs = dg.Definitions.merge(definitions.defs, dg.Definitions(schedules=[every_minute_append_schedule]))
