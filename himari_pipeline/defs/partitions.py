"""Partitions: one per dataset, keyed ``SYMBOL_TIMEFRAME`` (added by ingest, the sensor or the CLI)."""

import dagster as dg

datasets_partitions = dg.DynamicPartitionsDefinition(name="datasets")
