"""Stages: each a plain function `run(cfg) -> result` that the CLI and the Prefect flows call."""
