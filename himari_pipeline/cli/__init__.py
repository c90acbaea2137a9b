"""The ``himari`` command: run the pipeline, ingest files, evaluate strategies, list versions, start the UI.

One module per command group; the commands are registered here, in the order ``himari --help`` lists
them.
"""

from himari_pipeline.cli.common import app
from himari_pipeline.cli.data import datasets, ingest, versions
from himari_pipeline.cli.operations import doctor, ui
from himari_pipeline.cli.pairs import pairs
from himari_pipeline.cli.pipeline import experiments, report, run
from himari_pipeline.cli.strategy import evaluate

for _command in (run, experiments, report, evaluate, pairs, ingest, datasets, versions, ui, doctor):
    app.command()(_command)

__all__ = [
    "app",
    "datasets",
    "doctor",
    "evaluate",
    "experiments",
    "ingest",
    "pairs",
    "report",
    "run",
    "ui",
    "versions",
]
