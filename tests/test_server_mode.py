"""Server mode on this machine, without Docker: a real `mlflow server` on localhost with a PostgreSQL backend
store and artifacts proxied by the server into a local folder (the compose stack puts MinIO there), and the tiny
pipeline, data build to PPO, logging to it over HTTP with nothing but MLFLOW_TRACKING_URI set. Everything is
read back over HTTP through alignops.tracking: the nested runs, metrics, artifacts, registered versions with
their lineage, and the models themselves.

    pytest tests/test_server_mode.py -m slow      # about 4 min on 2 cores; needs PostgreSQL (.ci/run installs it)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from alignops import tracking
from alignops.artifacts import load_model
from alignops.config import load_config
from alignops.inference import Generator, decoding
from alignops.stages import data, ppo, pretrain, reward, sft, tokenizer
from tests.support import processes

STAGES = ["data-build", "data-validate", "tokenizer", "pretrain", "sft", "reward", "ppo"]


def _new_database(server_url: str, name: str) -> str:
    """A database of its own on the session's PostgreSQL server: MLflow's migrations keep their alembic_version
    table, which the preference store's migrations (other tests, same server) would share in one database."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@contextmanager
def mlflow_server(backend_store_uri: str, artifacts: Path, log: Path) -> Iterator[str]:
    """`mlflow server` in its own process group, serving artifacts from `artifacts`; yields its http:// URL."""
    port = processes.free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri,
           "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # about 11 s to start instead of 40 (stack-notes)
    with log.open("w") as out:
        proc = processes.start(cmd, env, out)
    try:
        if not processes.wait_healthy(proc, f"{url}/health", 180, ok=lambda body: body == b"OK"):
            pytest.fail(f"mlflow server did not come up (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
        yield url
    finally:
        processes.stop(proc)


@pytest.mark.slow
def test_tiny_pipeline_on_a_tracking_server_with_postgres(
    postgres_url: str,
    home: Path,
    dvc_repo: Path,
    source_cache: Path,
    tiny_overrides: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = _new_database(postgres_url, f"mlflow_{os.getpid()}_{time.monotonic_ns()}")
    artifacts = tmp_path / "server-artifacts"
    with mlflow_server(store, artifacts, tmp_path / "mlflow-server.log") as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)  # the only change server mode needs
        assert tracking.tracking_uri() == url
        cfg = load_config("tiny", [f"data.cache_dir={source_cache}", *tiny_overrides])
        with tracking.pipeline_run(cfg) as parent:
            data.build(cfg, parent_run_id=parent)
            data.validate(cfg, parent_run_id=parent)
            tokenizer.run(cfg, parent_run_id=parent)
            base = pretrain.run(cfg, parent)
            tuned = sft.run(cfg, parent)
            rm = reward.run(cfg, parent)
            policy = ppo.run(cfg, parent)
        assert tracking.tracking_uri() == url  # still the server after every stage, not a local fallback

        # runs: one parent, one nested finished run per stage, with lineage tags
        runs = tracking.search_runs()
        by_stage = {r.stage: r for r in runs}
        assert sorted(r.stage for r in runs) == sorted(["pipeline", *STAGES])
        for stage in STAGES:
            run = by_stage[stage]
            assert run.parent_run_id == parent and run.status == "FINISHED", stage
            assert run.tags["alignops.data_version"].endswith(".dir") and run.tags["alignops.config_hash"], stage
        assert by_stage["pipeline"].status == "FINISHED"

        # metrics: step-wise from Lightning's logger and summaries from the stages, all over HTTP
        losses = [value for _, _, value in tracking.metric_history(base.run_id, "train/loss")]
        assert len(losses) >= cfg.pretrain.max_steps // cfg.trainer.log_every_n_steps - 1
        assert losses[-1] < losses[0]
        assert tracking.metric_history(base.run_id, "val/loss")
        assert len(tracking.metric_history(policy.run_id, "ppo/kl")) == cfg.ppo.iterations
        assert by_stage["reward"].metrics["reward/accuracy"] == pytest.approx(rm.metrics["reward/accuracy"])
        assert by_stage["sft"].metrics["final/val_loss"] == pytest.approx(tuned.metrics["val/loss"])

        # artifacts: proxied by the server into its folder, none written to a local store
        assert yaml.safe_load(tracking.read_artifact(parent, "config.yaml"))["name"] == "tiny"
        assert "datasheet/datasheet.md" in tracking.artifact_paths(by_stage["data-build"].run_id)
        assert "validation/report.json" in tracking.artifact_paths(by_stage["data-validate"].run_id)
        assert "tokenizer/tokenizer.json" in tracking.artifact_paths(by_stage["tokenizer"].run_id)
        assert "samples/sft_samples.json" in tracking.artifact_paths(tuned.run_id)
        assert list(artifacts.rglob("sft_samples.json")) and list(artifacts.rglob("tokenizer.json"))
        assert not (home / "mlflow.db").exists() and not (home / "mlartifacts").exists()

        # registered versions and their lineage, base -> sft -> reward -> policy
        models = {m.name: m for m in tracking.registered_models()}
        assert {"alignops-base", "alignops-sft", "alignops-reward", "alignops-policy"} <= set(models)
        versions = {name: m.versions[0] for name, m in models.items()}
        assert versions["alignops-base"].uri == base.model_uri and versions["alignops-sft"].uri == tuned.model_uri
        assert versions["alignops-sft"].tags["alignops.parent_model"] == base.model_uri
        assert versions["alignops-reward"].tags["alignops.parent_model"] == tuned.model_uri
        assert versions["alignops-policy"].tags["alignops.reward_model"] == rm.model_uri
        assert versions["alignops-policy"].run_id == policy.run_id

        # models come back from the server: downloaded into a new folder, loaded, and they generate
        download = tmp_path / "downloaded"
        folder = tracking.resolve_model("models:/alignops-policy/latest", dst=download)
        assert folder.is_relative_to(download)
        loaded = load_model(folder)
        assert loaded.meta.parent == tuned.model_uri
        greedy = decoding("greedy", max_new_tokens=4)
        (completion,) = Generator(loaded.gpt, loaded.tokenizer).complete(["Say hi"], greedy)
        assert isinstance(completion, str)
        assert load_model(tracking.resolve_model(rm.model_uri)).head is not None

    # the runs are rows in PostgreSQL, not in a file next to the server
    from sqlalchemy import create_engine, text

    engine = create_engine(store)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM runs")).scalar_one() == len(STAGES) + 1
        assert connection.execute(text("SELECT count(*) FROM model_versions")).scalar_one() >= 4
    engine.dispose()
