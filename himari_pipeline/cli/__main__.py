"""``python -m himari_pipeline.cli``: the ``himari`` command."""

from himari_pipeline.cli import app

app()
