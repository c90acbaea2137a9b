"""The modules whose code shapes a validation report, by name (an asset's code version hashes them).

Named, not imported, so the Dagster definitions hash them without importing torch
(:func:`himari_pipeline.storage.hashing.code_version` reads the files).
"""

REPORT_CODE_MODULES: tuple[str, ...] = tuple(
    f"himari_pipeline.evaluation.{name}"
    for name in (
        "report.build",
        "report.checkpoints",
        "report.document",
        "report.evidence",
        "report.probes",
        "report.sections",
        "report.segments",
        "report.store",
        "attribution",
        "backtest",
        "baselines",
        "html",
        "leakage",
        "metrics",
        "replay",
        "report_plots",
        "significance",
        "verdict",
    )
)
