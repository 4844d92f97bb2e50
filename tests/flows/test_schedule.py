"""prefect.yaml's deployments: they name real flows with valid parameters, and `alignops schedule` serves them."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import time

import pytest

from alignops.config import ConfigError, list_presets
from flows.schedule import deployments, runner_deployments
from tests.support import processes


def test_prefect_yaml_names_real_flows_presets_and_crons() -> None:
    from prefect import Flow
    from prefect.schedules import Cron

    found = {d.name: d for d in deployments()}
    assert set(found) == {"weekly-training", "nightly-feedback"}
    for d in found.values():
        flow = d.flow()
        assert isinstance(flow, Flow)
        inspect.signature(flow.fn).bind(**d.parameters)  # the parameters fit the flow
        assert d.parameters["preset"] in list_presets()
        assert d.crons and all(Cron(c) for c in d.crons)
    assert found["nightly-feedback"].flow().name == "alignops-feedback"
    with pytest.raises(ConfigError, match="No deployment named"):
        deployments(["nope"])


def test_runner_deployments_carry_schedule_and_parameters() -> None:
    made = {d.name: d for d in runner_deployments(deployments())}
    weekly = made["weekly-training"]
    assert weekly.parameters == {"preset": "small"}
    assert [s.schedule.cron for s in weekly.schedules] == ["0 2 * * 0"]


def test_alignops_schedule_serves_the_deployments(prefect_harness) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    cmd = [sys.executable, "-m", "alignops.cli", "schedule", "--only", "nightly-feedback"]
    proc = processes.start(cmd, env, subprocess.PIPE)
    try:
        deadline, found = time.monotonic() + 120, None
        with get_client(sync_client=True) as client:
            while found is None and time.monotonic() < deadline and proc.poll() is None:
                try:
                    found = client.read_deployment_by_name("alignops-feedback/nightly-feedback")
                except Exception:  # not registered yet
                    time.sleep(1)
        assert found is not None, proc.stdout.read().decode() if proc.poll() is not None else "not served in 120 s"
        assert found.parameters == {"preset": "small"}
        assert [s.schedule.cron for s in found.schedules] == ["0 3 * * *"]
    finally:
        processes.stop(proc, signal.SIGINT)  # what Ctrl-C sends: `serve` shuts down cleanly


def test_without_a_prefect_yaml_the_error_says_where_to_run(tmp_path) -> None:
    from flows.schedule import prefect_yaml

    # as in an installed wheel run outside a checkout: neither folder holds a prefect.yaml
    with pytest.raises(FileNotFoundError, match="run `alignops schedule` in a checkout"):
        prefect_yaml((tmp_path, tmp_path / "site-packages"))
    (tmp_path / "prefect.yaml").write_text("deployments: []\n")
    assert prefect_yaml((tmp_path,)) == tmp_path / "prefect.yaml"
