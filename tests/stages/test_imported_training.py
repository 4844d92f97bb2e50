"""A team's own data through the pipeline: a JSONL of chats and a Parquet of preference pairs imported into a
built project, SFT and the reward model trained on them on CPU, and the registered models lead back to the
imported files' sha256 through the data version."""

from __future__ import annotations

import hashlib
import json

import mlflow
import pytest

from alignops import tracking
from alignops.artifacts import load_model
from alignops.config import PipelineConfig
from alignops.data import datasets, imports
from alignops.data.loaders import SFTDataset
from alignops.stages import pretrain, reward, sft
from tests.data.test_imports import CHATS, PAIRS, write


@pytest.mark.slow
def test_sft_and_reward_trained_on_imported_data(built: PipelineConfig, tmp_path) -> None:
    chats = write(tmp_path / "chats.jsonl", CHATS, "jsonl")
    pairs = write(tmp_path / "pairs.parquet", PAIRS, "parquet")
    imports.import_file(built, chats, "sft", source="team-chats", split="train")
    result = imports.import_file(built, pairs, "rankings", source="team-prefs", split="train")
    assert result.counts["train"] == len(PAIRS)

    # every training example is used, so the imported ones are trained on
    cfg = built.model_copy(update={"sft": built.sft.model_copy(update={"max_train_examples": None}),
                                   "reward": built.reward.model_copy(update={"max_train_rankings": None,
                                                                             "min_accuracy": 0.0})})  # fmt: skip
    train = datasets.load_split(cfg.data.data_dir, "sft", "train")
    team = [r for r in train if r["source"] == "team-chats"]
    assert len(team) == len(CHATS) and all(r["messages"] for r in team)

    pretrain.run(cfg)
    tuned = sft.run(cfg)
    rm = reward.run(cfg)
    tokenizer = load_model(tracking.resolve_model(tuned.model_uri)).tokenizer
    rendered = SFTDataset(team, tokenizer, 512)
    assert len(rendered) == len(CHATS) and rendered.truncated == 0

    client = mlflow.MlflowClient(tracking.tracking_uri())
    sheet = json.loads((cfg.data.data_dir / "datasheet.json").read_text(encoding="utf-8"))
    digests = {e["file"]: e["sha256"] for e in sheet["imports"]}
    assert digests == {
        "chats.jsonl": hashlib.sha256(chats.read_bytes()).hexdigest(),
        "pairs.parquet": hashlib.sha256(pairs.read_bytes()).hexdigest(),
    }
    for model in (tuned, rm):
        name, version = model.model_uri.removeprefix("models:/").split("/")
        assert client.get_model_version(name, version).tags["alignops.data_version"] == result.data_version
    [import_run] = client.search_runs(
        [r.info.experiment_id for r in [client.get_run(rm.run_id)]],
        f"tags.`alignops.import_sha256` = '{digests['pairs.parquet']}'",
    )
    assert import_run.data.tags["alignops.data_version"] == result.data_version
