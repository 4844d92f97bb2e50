"""Records tell the truth and nothing non-finite is registered: a NaN run is refused at publish with nothing
registered and its run FAILED, not RUNNING; a failed attempt with other trainer settings is never resumed by a
good one; a model trained on another data folder carries that folder's md5, not data.dvc's."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest

from alignops import tracking
from alignops.config import PipelineConfig
from alignops.data import versioning
from alignops.errors import ModelError
from alignops.stages import pretrain


def changed(cfg: PipelineConfig, section: str, **values) -> PipelineConfig:
    return cfg.model_copy(update={section: getattr(cfg, section).model_copy(update=values)})


def pretrain_runs() -> list:
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    return [r for r in runs if r.info.run_name == "pretrain"]


@pytest.mark.slow  # about 70 s on 2 cores: a data build, a tokenizer, four short pretrain runs
def test_records_tell_the_truth(built: PipelineConfig, tmp_path: Path) -> None:
    short = changed(built, "pretrain", max_steps=4, val_every_n_steps=2, warmup_steps=0)
    client = mlflow.MlflowClient(tracking.tracking_uri())

    # 1. a diverging run (the update is lr-sized: 1e30, so the next forward overflows) is refused at publish
    with pytest.raises(ModelError, match=r"^pretrain: .*(nan|inf).*Nothing was registered"):
        pretrain.run(changed(short, "pretrain", lr=1e30, grad_clip=0.0))
    assert client.search_registered_models() == []
    assert [r.info.status for r in pretrain_runs()] == ["FAILED"]

    # 2. an attempt that fails on a trainer setting leaves its stage folder; the good run must not resume it
    with pytest.raises(Exception, match="bogus"):
        pretrain.run(changed(short, "trainer", strategy="bogus"))
    failed = {r.info.run_id for r in pretrain_runs()}
    good = pretrain.run(short)
    assert good.run_id not in failed
    assert client.get_run(good.run_id).data.params["trainer.strategy"] == "auto"

    # 3. another data folder (one corpus val text fewer): its md5 is in the lineage, not data.dvc's
    other = tmp_path / "other-data"
    shutil.copytree(built.data.data_dir, other)
    val = next(other.glob("corpus/val*"))
    val.write_text("".join(val.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]), encoding="utf-8")
    elsewhere = pretrain.run(changed(short, "data", data_dir=other))
    assert elsewhere.run_id != good.run_id  # not a resume of the run on data/
    tags = client.get_model_version("alignops-base", elsewhere.version).tags
    assert tags["alignops.data_version"] == versioning.read_version(other) != versioning.data_version()
    ours = client.get_model_version("alignops-base", good.version).tags
    assert ours["alignops.data_version"] == versioning.data_version()  # data/ is what data.dvc records


def test_read_version_is_dvc_md5(tmp_path: Path) -> None:
    """The digest DVC 3 wrote into data.dvc (`dvc add data`) for exactly these two files."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "x.jsonl").write_text("a\n", encoding="utf-8")
    (tmp_path / "sub" / "y.jsonl").write_text("bb\n", encoding="utf-8")
    assert versioning.read_version(tmp_path) == "d74b9c0e7a8ed476b6a27209ec9da599.dir"
    assert versioning.read_version(tmp_path / "absent") is None
