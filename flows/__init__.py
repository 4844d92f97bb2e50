"""Prefect flows: they wire the stages of alignops.stages together (retries, runs, schedules) and compute nothing."""
