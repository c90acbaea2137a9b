"""Thin Dagster layer: assets, checks, resources, jobs, schedules and sensors."""
