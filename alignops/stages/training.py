"""What the training stages share: the Lightning Trainer from config, the tokenizer they need, and the stage
folder that makes a killed stage resume where it stopped.

A stage folder, ALIGNOPS_HOME/stages/<stage>-<key>, is keyed by everything that decides the result (stage
config, model shape, data version, tokenizer, parent model): re-running the same stage after a crash finds
its checkpoints and its MLflow run there and continues both; a changed config gets a new folder.

Several devices or nodes (trainer.devices, num_nodes, strategy 'ddp' or 'fsdp'): Lightning's launcher starts the
other ranks by running the same command again, so each rank runs the whole stage. Every rank builds the same
model and data and trains in step, each on its own share of every batch (alignops.data.loaders); only global
rank 0 writes: its MLflow run, the stage folder's state, checkpoints, the model folder and the registered
version (tracking.is_rank_zero). On the other ranks a stage returns its metrics with run_id, model_uri,
version and model_dir None.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignops import settings, tracking
from alignops.config import ConfigError, OptimConfig, PipelineConfig, TrainConfig
from alignops.data.tokenizer import META_FILE, TOKENIZER_FILE
from alignops.precision import resolve_precision
from alignops.stages.finite import require_finite


@dataclass(frozen=True)
class TrainResult:
    run_id: str | None  # None (and so the model fields) on the non-zero ranks of a distributed run
    model_uri: str | None  # models:/<name>/<version>
    version: str | None
    metrics: dict[str, float]
    model_dir: Path | None


def file_sha256(path: Path) -> str | None:
    """The sha256 of a file's bytes; None when there is no such file."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def tokenizer_path(cfg: PipelineConfig) -> tuple[Path, str]:
    """The trained tokenizer and its sha256; a clear error when it has not been trained yet."""
    folder = cfg.tokenizer.output_dir or settings.home() / "tokenizer"
    path, meta = folder / TOKENIZER_FILE, folder / META_FILE
    if not path.is_file() or not meta.is_file():
        raise FileNotFoundError(f"No tokenizer in {folder}. Train it first: alignops tokenizer train")
    return path, json.loads(meta.read_text(encoding="utf-8"))["sha256"]


class StageDir:
    """Checkpoints and the MLflow run id of one stage invocation; the basis of resume."""

    def __init__(self, stage: str, key_parts: dict[str, Any]) -> None:
        key = hashlib.sha256(json.dumps(key_parts, sort_keys=True, default=str).encode()).hexdigest()[:12]
        self.path = settings.home() / "stages" / f"{stage}-{key}"
        self.checkpoints = self.path / "checkpoints"
        self._state = self.path / "state.json"

    def resume_point(self) -> tuple[str | None, Path | None]:
        """(MLflow run id, last checkpoint) of an unfinished earlier attempt, or (None, None) to start anew."""
        if not self._state.is_file():
            return None, None
        state = json.loads(self._state.read_text(encoding="utf-8"))
        if state.get("complete"):
            if tracking.is_rank_zero():  # the other ranks of a distributed run only read the folder
                shutil.rmtree(self.path)  # a finished stage run again trains again, from scratch
            return None, None
        return state.get("run_id"), self._last_complete_checkpoint()

    def _last_complete_checkpoint(self) -> Path | None:
        """last.ckpt, or the newest periodic one if a kill cut last.ckpt short while it was being written.

        A torch checkpoint is a zip archive whose directory is written last: a truncated one does not open."""
        candidates = [self.checkpoints / "last.ckpt"]
        candidates += sorted(self.checkpoints.glob("step-*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
        for path in candidates:
            try:
                with zipfile.ZipFile(path):
                    return path
            except (OSError, zipfile.BadZipFile):
                continue
        return None

    def started(self, run_id: str | None) -> None:
        if tracking.is_rank_zero():
            self.path.mkdir(parents=True, exist_ok=True)
            self._write_state({"run_id": run_id, "complete": False})

    def completed(self, run_id: str | None) -> None:
        if tracking.is_rank_zero():
            self._write_state({"run_id": run_id, "complete": True})
            shutil.rmtree(self.checkpoints, ignore_errors=True)  # the registered model is the result

    def _write_state(self, state: dict[str, Any]) -> None:
        # whole or not at all: the other ranks of a distributed run may be reading it
        partial = self._state.with_suffix(".json.partial")
        partial.write_text(json.dumps(state), encoding="utf-8")
        partial.replace(self._state)


def resolve_strategy(cfg: PipelineConfig) -> Any:
    """trainer.strategy as Lightning takes it. 'fsdp' shards each transformer block (models.gpt.Block) as its own
    FSDP unit, so a rank gathers one block's full weights at a time; Lightning's bare 'fsdp' would make the whole
    model one unit and gather all of it for every forward. Checkpoints stay single full files (state_dict_type
    'full'), which resume on any number of devices and which StageDir can check."""
    if cfg.trainer.strategy != "fsdp":
        return cfg.trainer.strategy
    from lightning.pytorch.strategies import FSDPStrategy

    from models.gpt import Block

    return FSDPStrategy(auto_wrap_policy={Block}, state_dict_type="full")


def sharded_strategy() -> Any:
    """trainer.strategy 'fsdp' for the RL stages: FSDP2 (torch's fully_shard) through Lightning's
    ModelParallelStrategy, every rank data-parallel, the module sharding itself in configure_model (models.sharding:
    PPOModule shards its policy, reference and reward model block by block). Unlike Lightning's FSDPStrategy (FSDP1,
    which needs a GPU) it runs on CPUs over gloo too. Checkpoints are single full files, as resolve_strategy's, of
    the trained weights only: a module's frozen_keys() (PPOModule's reference, reward model and LoRA base) are
    neither gathered nor saved, and must be all a checkpoint lacks when it is loaded."""
    from pathlib import Path

    import torch
    from lightning.pytorch.strategies import ModelParallelStrategy
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    class DataParallelFSDP(ModelParallelStrategy):
        def setup_environment(self) -> None:
            # every process one data-parallel rank: the mesh ModelParallelStrategy's "auto" sizes would make a
            # tensor-parallel one of a node's devices
            self._data_parallel_size, self._tensor_parallel_size = self.num_nodes * self.num_processes, 1
            super().setup_environment()

        def lightning_module_state_dict(self) -> dict[str, Any]:
            # whole tensors on rank 0 only; the frozen models are left where they are, not gathered to be dropped
            options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
            return get_model_state_dict(self.model, options=options)

        def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> dict[str, Any]:
            # the module loads non-strictly (its frozen weights are not in the file): what may be missing is checked
            # here, against the file's keys (memory-mapped, so not read)
            path = Path(self.broadcast(checkpoint_path))
            module = self.lightning_module
            saved = set(torch.load(path, map_location="cpu", mmap=True, weights_only=False)["state_dict"])
            own = set(module.state_dict())
            frozen = module.frozen_keys() if hasattr(module, "frozen_keys") else set()
            missing, unexpected = own - saved - frozen, saved - own
            if missing or unexpected:
                raise KeyError(
                    f"{path} does not fit this module: missing {sorted(missing)[:5]}, unexpected "
                    f"{sorted(unexpected)[:5]}: resume with the settings (LoRA or not, method) it was saved with"
                )
            return super().load_checkpoint(path, weights_only)

    return DataParallelFSDP(save_distributed_checkpoint=False)


def build_trainer(
    cfg: PipelineConfig,
    train: TrainConfig,
    stage_dir: StageDir,
    logger,
    log_every_n_steps: int | None = None,
    strategy: Any = None,
):
    """A Lightning Trainer for `train` steps on the configured hardware, checkpointing into stage_dir; strategy, when
    given, in place of resolve_strategy's (sharded_strategy for RL under FSDP)."""
    import lightning as L

    kwargs = trainer_kwargs(cfg, train, stage_dir, logger, log_every_n_steps)
    return L.Trainer(**(kwargs if strategy is None else kwargs | {"strategy": strategy}))


def trainer_kwargs(
    cfg: PipelineConfig, train: TrainConfig, stage_dir: StageDir, logger, log_every_n_steps: int | None = None
) -> dict[str, Any]:
    """What build_trainer() gives Lightning's Trainer; built without the hardware, which the Trainer checks.

    train.batch_size is per device: with N devices a step sees N times as many sequences."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    checkpoint = ModelCheckpoint(
        dirpath=stage_dir.checkpoints,
        filename="step-{step}",
        every_n_train_steps=train.checkpoint_every_n_steps,
        save_last=True,
        save_top_k=1,  # with no monitor: keep only the newest periodic checkpoint beside last.ckpt
    )
    callbacks = [checkpoint, *early_stopping(train, stage_dir)]
    t = cfg.trainer
    return dict(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=resolve_strategy(cfg),
        use_distributed_sampler=False,  # the loaders shard themselves, resumably (alignops.data.loaders)
        precision=resolve_precision(t.precision, t.accelerator),  # None/auto: bf16 where the hardware has it
        max_steps=train.max_steps,
        accumulate_grad_batches=train.grad_accum,
        gradient_clip_val=train.grad_clip or None,  # under FSDP the modules clip (models.lm)
        val_check_interval=train.val_every_n_steps * train.grad_accum,  # counted in batches, not steps
        check_val_every_n_epoch=None,
        limit_val_batches=train.val_batches,
        num_sanity_val_steps=0,
        log_every_n_steps=log_every_n_steps or t.log_every_n_steps,
        logger=logger,
        callbacks=callbacks,
        default_root_dir=stage_dir.path,
        enable_model_summary=False,
    )


BEST_CHECKPOINT = "best"  # early stopping: the stage folder's best.ckpt, the one a stage publishes


def early_stopping(train: TrainConfig, stage_dir: StageDir) -> list[Any]:
    """With train.early_stopping_metric: stop after early_stopping_patience validations without improvement, and
    keep the best validation's checkpoint (best.ckpt), which trained() publishes. Else no callbacks."""
    if train.early_stopping_metric is None:
        return []
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    metric, mode, patience = train.early_stopping_metric, train.early_stopping_mode, train.early_stopping_patience
    return [
        EarlyStopping(monitor=metric, mode=mode, patience=patience, check_on_train_epoch_end=False),
        ModelCheckpoint(dirpath=stage_dir.checkpoints, filename=BEST_CHECKPOINT, monitor=metric, mode=mode,
                        save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False),
    ]  # fmt: skip


def best_checkpoint(trainer: Any) -> Path | None:
    """The best validation's checkpoint when early stopping kept one; None otherwise (publish the last weights)."""
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor is not None and callback.best_model_path:
            return Path(callback.best_model_path)
    return None


def trained(trainer: Any, module: Any) -> Any:
    """The trained LightningModule with its weights whole, on the CPU: what a stage publishes. With early stopping
    these are the best validation's weights, not the last. Under FSDP each rank holds a shard of the weights, so
    every rank must call this (a collective gathers them onto rank 0, which gets a fresh copy of the module holding
    them); the other ranks get `module` back as it is, not to be run."""
    import torch
    from lightning.pytorch.strategies import FSDPStrategy

    best = best_checkpoint(trainer)
    if not isinstance(trainer.strategy, FSDPStrategy):
        whole = module.cpu()
    else:
        state = trainer.strategy.lightning_module_state_dict()  # full tensors on rank 0, {} elsewhere
        if not trainer.is_global_zero:
            return module
        whole = type(module)(**module.hparams)  # every module here saves its constructor arguments
        whole.load_state_dict(state)
    if best is not None:  # a full state dict (FSDP state_dict_type "full"), read on rank 0 only
        whole.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["state_dict"])
    return whole


def optim_hparams(train: TrainConfig) -> dict[str, Any]:
    """The module arguments of a training section: its OptimConfig whole (as a dict, saved with the weights) and
    the step count its schedule spans."""
    optim = OptimConfig.model_validate(train.model_dump(include=set(OptimConfig.model_fields)))
    return {"optim": optim.model_dump(), "max_steps": train.max_steps}


def finetune_hparams(section: Any) -> dict[str, Any]:
    """The module arguments of a fine-tuning section: optim_hparams plus its LoRA settings (None: full fine-tuning),
    as the modules take them (models.lm.BackboneModule)."""
    lora = None if section.lora is None else section.lora.model_dump()
    return optim_hparams(section) | {"lora": lora}


def parameter_counts(model: Any) -> dict[str, float]:
    """The metrics of what a stage trains: model/trainable_params and model/params (tied tensors once)."""
    from models.lora import count_parameters

    trainable, total = count_parameters(model)
    return {"model/trainable_params": trainable, "model/params": total}


@dataclass(kw_only=True)
class Start:
    """Where a training stage starts and what its published model records about it: the stage and its config
    section, the stage folder (and an unfinished earlier attempt to resume), the data version, the tokenizer the
    published folder carries (a tokenizer.json path, or a Hugging Face tokenizer), and the parent model."""

    cfg: PipelineConfig
    stage: str
    section: Any
    stage_dir: StageDir
    data_version: str | None
    resume_run_id: str | None
    checkpoint: Path | None
    tokenizer: Any  # saved into the published folder by artifacts.save_model
    tokenizer_sha256: str | None
    parent: str | None = None  # the model URI (or package) it starts from; None: trained from scratch
    run_id: str | None = None  # the stage's MLflow run, once started()

    def started(self, run_id: str | None) -> None:
        """The stage's run has begun: remember it (publish completes it) and mark the stage folder unfinished."""
        self.run_id = run_id
        self.stage_dir.started(run_id)


@dataclass(kw_only=True)
class BaseStart(Start):
    """A fine-tuning stage's start: the base model too (pinned URI = parent, folder, loaded, its ChatTokenizer)."""

    folder: Path
    model: Any  # alignops.artifacts.LoadedModel
    chat: Any  # alignops.chat.ChatTokenizer of the base's tokenizer: template, EOS and pad

    @property
    def uri(self) -> str:
        return self.parent or ""


def begin(
    cfg: PipelineConfig,
    stage: str,
    section: Any,
    key: dict[str, Any],
    *,
    data_version: str | None,
    tokenizer: Any,
    tokenizer_sha256: str | None,
    parent: str | None = None,
) -> Start:
    """A stage's Start: its folder keyed by `key` (everything that decides the result), the run and checkpoint an
    unfinished earlier attempt left there (None, None: start anew), with every RNG seeded."""
    import lightning as L

    stage_dir = StageDir(stage, key)
    resume_run_id, checkpoint = stage_dir.resume_point()
    L.seed_everything(cfg.seed, verbose=False)
    return Start(
        cfg=cfg, stage=stage, section=section, stage_dir=stage_dir, data_version=data_version,
        resume_run_id=resume_run_id, checkpoint=checkpoint, tokenizer=tokenizer, tokenizer_sha256=tokenizer_sha256,
        parent=parent,
    )  # fmt: skip


def start_from_base(cfg: PipelineConfig, stage: str, section: Any, default: str = "base") -> BaseStart:
    """Resolve section.base_model (default: the newest <prefix>-<default>), load it, find a run to resume, seed."""
    from alignops.artifacts import HF_FORMAT, load_model, read_meta
    from alignops.artifacts import META_FILE as MODEL_META_FILE
    from alignops.chat import chat_tokenizer
    from alignops.data import versioning

    uri = tracking.pin_uri(section.base_model or f"models:/{cfg.tracking.model_prefix}-{default}/latest")
    folder = tracking.resolve_model(uri)
    data_version = versioning.read_version(cfg.data.data_dir)  # what this run reads, not what data.dvc says
    key = {"cfg": section, "base": uri, "trainer": cfg.trainer, "data": data_version, "seed": cfg.seed}
    meta = read_meta(folder / MODEL_META_FILE)
    # the published folder carries the base's tokenizer: its tokenizer.json (own GPT) or its transformers tokenizer
    hf = meta.format == HF_FORMAT
    # a Hugging Face base's tokenizer is named by its tokenizer.json's hash, so models of two bases never mix (PPO)
    tokenizer_sha256 = meta.tokenizer_sha256 or file_sha256(folder / TOKENIZER_FILE)
    start = begin(
        cfg, stage, section, key, data_version=data_version, tokenizer=None if hf else folder / TOKENIZER_FILE,
        tokenizer_sha256=tokenizer_sha256, parent=uri,
    )  # fmt: skip
    model = load_model(folder)
    if hf:
        start.tokenizer = model.tokenizer
    return BaseStart(**vars(start), folder=folder, model=model, chat=chat_tokenizer(model.tokenizer))


@dataclass
class PreferenceData:
    """The ranked pairs of every split, with a loader each, tokenized for the base model."""

    rankings: dict[str, list[dict]]
    pairs: dict[str, list]  # split -> list[preferences.Pair]
    loaders: dict[str, Any]


def preference_data(
    cfg: PipelineConfig, section: Any, start: BaseStart, by_ranking: bool = False, empty_negatives: bool = False
) -> PreferenceData:
    """Rankings (of section.sources) -> pairs (weighted by human agreement if section.weight_by_agreement) ->
    loaders; the train split limited to section.max_train_rankings, val and test to max_eval_rankings. by_ranking:
    a batch holds section.batch_size whole rankings, each with all its pairs (preferences.RankingBatches).
    empty_negatives: the train pairs gain preferences.with_empty_negatives."""
    from alignops.data import datasets
    from alignops.data.loaders import resumable_loader
    from alignops.data.preferences import (
        PairDataset,
        RankingBatches,
        collate_pairs,
        collate_rankings,
        expand_rankings,
        with_empty_negatives,
    )

    weight_by = "agreement" if section.weight_by_agreement else None
    rankings = {
        s: of_sources(datasets.load_split(cfg.data.data_dir, "rankings", s), section.sources) for s in datasets.SPLITS
    }
    rankings["train"] = spread(rankings["train"], section.max_train_rankings)
    for split in ("val", "test"):
        rankings[split] = spread(rankings[split], section.max_eval_rankings)
    pairs = {s: expand_rankings(records, weight_by=weight_by) for s, records in rankings.items()}
    if empty_negatives:
        pairs["train"] = with_empty_negatives(pairs["train"])
    max_len = section.max_len or start.model.gpt.max_positions
    collate = (collate_rankings if by_ranking else collate_pairs)(start.chat.pad_id)
    group = (lambda p, d: RankingBatches(p, d)) if by_ranking else (lambda p, d: d)
    loaders = {
        s: resumable_loader(
            group(p, PairDataset(p, start.chat, max_len)), section.batch_size, seed=cfg.seed,
            shuffle=s == "train", collate_fn=collate,
        )
        for s, p in pairs.items()
    }  # fmt: skip
    return PreferenceData(rankings, pairs, loaders)


def publish(
    start: Start,
    model: Any,
    *,
    registered: str,
    kind: str,
    extra: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    head: Any = None,
    labels: list[str] | None = None,
) -> tuple[str, str, Path] | tuple[None, None, None]:
    """The end of every training stage: write the model folder (its metadata built here from `start`: stage, data
    version, tokenizer, parent, the stage's settings plus `extra`), register it as <prefix>-<registered> with its
    lineage (plus `tags`), and mark the stage folder complete. Returns (model URI, version, folder); (None, None,
    None) on the non-zero ranks of a distributed run, which publish nothing."""
    from alignops.artifacts import ModelMeta, model_format, save_model

    if not tracking.is_rank_zero():
        return None, None, None

    # checked before anything is written
    require_finite(start.stage, {"model": model, "head": head}, tracking.run_metrics(start.run_id))
    meta = ModelMeta(
        kind=kind,
        stage=start.stage,
        labels=labels,
        data_version=start.data_version,
        tokenizer_sha256=start.tokenizer_sha256,
        parent=start.parent,
        extra=saved_hparams(start.cfg, start.stage) | (extra or {}),
        format=model_format(model),
    )
    model_dir = save_model(start.stage_dir.path / "model", model, start.tokenizer, meta, head)
    lineage = tracking.lineage_tags(start.stage, start.cfg, start.section) | (tags or {})
    name = f"{start.cfg.tracking.model_prefix}-{registered}"
    uri, version = tracking.register_model(model_dir, name, lineage, meta.parent)
    start.stage_dir.completed(start.run_id)
    return uri, version, model_dir


def saved_hparams(cfg: PipelineConfig, stage: str) -> dict[str, Any]:
    """The settings saved beside the weights (alignops.json), so a model folder says how it was made."""
    return {"config": cfg.model_dump(mode="json", include={stage, "model", "trainer", "seed"})}


def of_sources(records: list[dict], sources: list[str] | None) -> list[dict]:
    """The records whose source starts with one of `sources` (a source or a family: "vadersentiment/"); all when
    None. A ConfigError when none is left, naming what the data holds."""
    if sources is None:
        return records
    kept = [r for r in records if r["source"].startswith(tuple(sources))]
    if records and not kept:
        held = ", ".join(sorted({r["source"] for r in records}))
        raise ConfigError(f"sources {sources}: no record matches; the data holds {held}.")
    return kept


def spread(records: list[dict], limit: int | None) -> list[dict]:
    """At most `limit` records taken evenly across the list (the sets are ordered by source)."""
    if limit is None or limit >= len(records):
        return records
    step = len(records) / limit
    return [records[int(i * step)] for i in range(limit)]
