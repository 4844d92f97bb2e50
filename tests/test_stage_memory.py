"""Each stage run logs its own peak memory (alignops.memory), also when it fails: what a machine needs to run it."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from alignops import tracking
from alignops.config import load_config
from alignops.memory import peak_memory_mib


def _peak_of(run_id: str) -> float:
    return mlflow.MlflowClient(tracking.tracking_uri()).get_run(run_id).data.metrics["sys/peak_rss_mib"]


def test_a_stage_run_logs_its_own_peak_rss(home: Path) -> None:
    cfg = load_config("tiny")
    with tracking.stage_run("big", cfg) as run:
        block = bytearray(400 * 2**20)  # 400 MiB, touched so that it is resident
        block[::4096] = b"x" * len(block[::4096])
        big = run.run_id
    del block
    with tracking.stage_run("small", cfg) as run:
        small = run.run_id
    # the second stage's figure is its own, not the first one's peak carried over
    assert _peak_of(big) >= _peak_of(small) + 350

    with pytest.raises(RuntimeError), tracking.stage_run("failing", cfg) as run:
        failed = run.run_id
        raise RuntimeError("out of data")
    assert _peak_of(failed) > 0


def test_peak_memory_names_what_it_measured() -> None:
    with peak_memory_mib() as out:
        pass
    assert set(out) in ({"sys/peak_rss_mib"}, {"sys/process_peak_rss_mib"})  # the reset refused: the process's
