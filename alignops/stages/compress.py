"""Compression: int8, pruned and distilled versions of a causal LM, each registered under the original's
registered model (tag alignops.compression = int8 | pruned-<sparsity> | distilled, the original as parent) so
it can compete for `champion`, and each measured against the original the same way.

    result = run(load_config("tiny"))                       # or: alignops compress --preset tiny
    result = run(cfg, model="models:/alignops-policy@champion", methods=["int8", "prune"])
    print(result.table())

Methods (models/compression.py, models/distill.py):
  int8     dynamic int8 quantization of every Linear (blocks and lm_head); CPU inference; model.int8.safetensors
  prune    magnitude pruning of every block weight matrix to exactly compress.sparsity zeros (per matrix);
           stored dense, so only a compressed archive gets smaller
  distill  a smaller student (compress.distill: layers, width, heads) trained with Lightning on the original's
           temperature-softened next-token distributions plus the LM loss, on corpus blocks and SFT pairs; on
           one device (a GPU when there is one) whatever trainer.devices says: the stage runs in one process

Figures, the same for the original and every version (logged to each method's nested run as compress/...; the
table to the parent run as compression.json and compression.md):
  size_mb        bytes of the weight files on disk / 1e6; gzip_mb: those files gzip-compressed (level 6)
  tokens_per_s   greedy decoding on the CPU with one thread, batch 1, the eval prompts, max_new_tokens each with
                 EOS ignored (every model generates the same count); the faster of two passes
  params, nonzero_share   stored weights (the tied wte/lm_head matrix once) and the share of them not zero
  test_loss, test_ppl     next-token loss on the corpus test split (alignops.evaluation.scoring.lm_loss)
  agreement, exact_match  greedy outputs (EOS honoured) against the original's: the share of positions with the
                 same token over the longer output, and the share of prompts with identical outputs
"""

from __future__ import annotations

import dataclasses
import gzip
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignops import tracking
from alignops.artifacts import TOKENIZER_FILE, WEIGHT_FILES, ModelMeta, load_model, save_model
from alignops.config import PipelineConfig
from alignops.data import datasets, versioning
from alignops.errors import ModelError
from alignops.stages import training
from alignops.stages.data import require_valid
from alignops.stages.finite import require_finite

METHODS = ("int8", "prune", "distill")


class CompressionError(ModelError):
    """A model that cannot be compressed here (not a causal LM, already int8, not registered)."""


@dataclass(frozen=True)
class _Source:
    uri: str  # models:/<name>/<version>
    registered: str  # <name>: where the compressed versions go
    folder: Path
    model: Any  # alignops.artifacts.LoadedModel


@dataclass(frozen=True)
class Figures:
    size_mb: float
    gzip_mb: float
    tokens_per_s: float
    params: int
    nonzero_share: float
    test_loss: float
    test_ppl: float
    agreement: float
    exact_match: float

    def metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class Compressed:
    method: str  # int8 | prune | distill
    tag: str  # the version's alignops.compression tag
    model_uri: str  # models:/<name>/<version>
    version: str
    run_id: str
    model_dir: Path
    figures: Figures
    metrics: dict[str, float]  # the method's own: pruning sparsity, distillation loss and KL before/after


@dataclass(frozen=True)
class CompressResult:
    run_id: str  # the parent "compress" run; each method has a nested run
    source_uri: str
    original: Figures
    versions: list[Compressed]

    def rows(self) -> list[dict[str, Any]]:
        """The trade-off table: one row per model, figures plus ratios to the original."""
        o = self.original
        rows = [{"model": "original", "uri": self.source_uri, **dataclasses.asdict(o)}]
        for v in self.versions:
            f = v.figures
            rows.append(
                {"model": v.tag, "uri": v.model_uri, **dataclasses.asdict(f), "size_ratio": f.size_mb / o.size_mb,
                 "speedup": f.tokens_per_s / o.tokens_per_s, "test_loss_delta": f.test_loss - o.test_loss}
            )  # fmt: skip
        return rows

    def table(self) -> str:
        """The trade-off table as Markdown."""
        columns = ["model", "version", "size MB", "gzip MB", "tokens/s", "params", "nonzero", "test loss", "ppl",
                   "agreement", "exact"]  # fmt: skip
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in self.rows():
            ratio = f" ({row['size_ratio']:.2f}x)" if "size_ratio" in row else ""
            speed = f" ({row['speedup']:.2f}x)" if "speedup" in row else ""
            delta = f" ({row['test_loss_delta']:+.3f})" if "test_loss_delta" in row else ""
            lines.append(
                f"| {row['model']} | {row['uri']} | {row['size_mb']:.2f}{ratio} | {row['gzip_mb']:.2f} "
                f"| {row['tokens_per_s']:.0f}{speed} | {row['params'] / 1e6:.2f}M | {row['nonzero_share']:.1%} "
                f"| {row['test_loss']:.3f}{delta} | {row['test_ppl']:.1f} | {row['agreement']:.2f} "
                f"| {row['exact_match']:.2f} |"
            )
        return "\n".join(lines)


def source_uri(cfg: PipelineConfig, model: str | None = None) -> str:
    """The exact version to compress: `model`, else compress.source_model, else the newest uncompressed
    <prefix>-policy, else <prefix>-sft (aliases and latest pinned to a version)."""
    uri = model or cfg.compress.source_model
    if uri:
        if not uri.startswith("models:/"):
            raise CompressionError(
                f"{uri!r}: compress registers its versions beside the original, so it needs a registered version "
                "(models:/<name>/<version>, /latest or @<alias>), not a folder or run URI."
            )
        return tracking.version_uri(uri)
    prefix = cfg.tracking.model_prefix
    for name in (f"{prefix}-policy", f"{prefix}-sft"):
        found = tracking.latest_uncompressed(name)
        if found:
            return found
    raise FileNotFoundError(
        f"No {prefix}-policy or {prefix}-sft version to compress: run alignops sft (and ppo or dpo) first, "
        "or pass --model models:/<name>/<version>."
    )


def run(
    cfg: PipelineConfig,
    model: str | None = None,
    methods: list[str] | None = None,
    parent_run_id: str | None = None,
) -> CompressResult:
    """Compress one registered causal LM by each method; register, measure and log every version."""
    require_valid(cfg)
    cc = cfg.compress
    methods = list(methods or cc.methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise CompressionError(f"Unknown compression method(s) {unknown}: choose from {list(METHODS)}.")
    source = source_uri(cfg, model)
    folder = tracking.resolve_model(source)
    original = load_model(folder)
    if original.meta.kind != "causal_lm":
        raise CompressionError(f"{source} is a {original.meta.kind} model; compress works on causal LMs.")
    if original.meta.quantization is not None:
        raise CompressionError(f"{source} is already int8; compress its fp32 original ({original.meta.parent}).")
    src = _Source(source, source[len("models:/") :].rsplit("/", 1)[0], folder, original)
    bench = _Bench.build(cfg, original)

    with tracking.stage_run("compress", cfg, cc, parent_run_id) as parent:
        parent.set_tags({"alignops.parent_model": source})
        base = bench.measure_original(original.gpt, folder)
        parent.log_metrics(base.metrics("compress/original/"))
        versions = []
        for method in methods:
            version = _METHODS[method](cfg, src, bench, parent.run_id)
            versions.append(version)
            parent.log_metrics(version.figures.metrics(f"compress/{method}/"))
        result = CompressResult(parent.run_id, source, base, versions)
        parent.log_dict({"rows": result.rows()}, "compression.json")
        parent.log_text(result.table() + "\n", "compression.md")
        return result


def _int8(cfg: PipelineConfig, src: _Source, bench: _Bench, parent_run_id: str) -> Compressed:
    from models.compression import INT8, quantize_int8

    with tracking.stage_run("compress-int8", cfg, cfg.compress, parent_run_id) as stage:
        gpt = quantize_int8(src.model.gpt)
        meta = _meta(src, "int8", data_version=src.model.meta.data_version, quantization=INT8)
        return _publish(cfg, stage, "int8", gpt, src, meta, bench, {})


def _prune(cfg: PipelineConfig, src: _Source, bench: _Bench, parent_run_id: str) -> Compressed:
    from models.compression import prune_magnitude

    sparsity = cfg.compress.sparsity
    tag = f"pruned-{sparsity:g}"
    with tracking.stage_run("compress-prune", cfg, cfg.compress, parent_run_id) as stage:
        gpt, shares = prune_magnitude(src.model.gpt, sparsity)
        stage.log_dict(shares, "pruning/sparsity_per_matrix.json")
        metrics = {"prune/sparsity_min": min(shares.values()), "prune/sparsity_max": max(shares.values())}
        meta = _meta(src, tag, data_version=src.model.meta.data_version)
        return _publish(cfg, stage, "prune", gpt, src, meta, bench, metrics)


def _distill(cfg: PipelineConfig, src: _Source, bench: _Bench, parent_run_id: str) -> Compressed:
    import lightning as L
    from torch.utils.data import ConcatDataset

    from alignops.data import loaders
    from models.distill import DistillModel

    dc, original = cfg.compress.distill, src.model
    teacher = original.gpt.config
    heads = dc.heads or teacher.n_head
    width = dc.width or teacher.n_embd
    if width % heads:
        raise CompressionError(
            f"compress.distill: width {width} is not divisible by {heads} heads; set compress.distill.heads."
        )
    student = dataclasses.replace(teacher, n_layer=dc.layers or max(1, teacher.n_layer // 2), n_embd=width,
                                  n_head=heads, dropout=cfg.model.dropout)  # fmt: skip
    data_version = versioning.read_version(cfg.data.data_dir)  # what this run reads, not what data.dvc says
    stage_dir = training.StageDir(
        "compress-distill",
        {"cfg": dc, "source": src.uri, "trainer": cfg.trainer, "data": data_version, "seed": cfg.seed},
    )
    resume_run_id, ckpt = stage_dir.resume_point()
    L.seed_everything(cfg.seed, verbose=False)

    tok, block = original.tokenizer, teacher.block_size

    def split(name: str, docs: int | None, examples: int | None) -> ConcatDataset:
        corpus = training.spread(datasets.load_split(cfg.data.data_dir, "corpus", name), docs)
        sft = training.spread(datasets.load_split(cfg.data.data_dir, "sft", name), examples)
        return ConcatDataset(
            [
                loaders.PackedBlocks(loaders.encode_corpus([r["text"] for r in corpus], tok), block),
                loaders.SFTDataset(sft, tok, block),
            ]
        )

    train_set = split("train", dc.max_train_docs, dc.max_train_examples)
    val_set = split("val", None, None)
    collate = loaders.collate_right_pad(loaders.pad_id(tok))
    train_loader = loaders.resumable_loader(train_set, dc.batch_size, seed=cfg.seed, collate_fn=collate)
    val_loader = loaders.resumable_loader(val_set, dc.batch_size, seed=cfg.seed, shuffle=False, collate_fn=collate)
    module = DistillModel.from_teacher(
        original.gpt, student, temperature=dc.temperature, alpha=dc.alpha,
        compile=cfg.trainer.compile, **training.optim_hparams(dc),
    )  # fmt: skip

    with tracking.stage_run("compress-distill", cfg, cfg.compress, parent_run_id, resume_run_id) as stage:
        stage_dir.started(stage.run_id)
        # one process, one device: the other methods and the measures are not rank-aware, and Lightning's DDP
        # launcher would run this whole stage again on every other rank
        one = cfg.trainer.model_copy(update={"devices": 1, "num_nodes": 1, "strategy": "auto"})
        logger = tracking.lightning_logger(stage.run_id)
        trainer = training.trainer(cfg.model_copy(update={"trainer": one}), dc, stage_dir, logger)
        metrics: dict[str, float] = {}
        if resume_run_id is None:
            stage.log_params({"student": dataclasses.asdict(student)})
            stage.log_metrics(
                {"data/train_sequences": len(train_set), "model/student_params": module.model.num_params()}
            )
            before = trainer.validate(module, val_loader, verbose=False)[0]
            metrics |= {
                "distill/val_loss_start": float(before["val/loss"]),
                "distill/val_kl_start": float(before["val/kl"]),
            }
            stage.log_metrics(metrics)  # in the run at once: a resumed run no longer knows them
        trainer.fit(module, train_loader, val_loader, ckpt_path=ckpt)
        best = training.best_checkpoint(trainer)  # early stopping: measure and publish the best checkpoint
        after = trainer.validate(module, val_loader, ckpt_path=best, verbose=False)[0]
        metrics |= {"distill/val_loss": float(after["val/loss"]), "distill/val_kl": float(after["val/kl"])}
        meta = _meta(src, "distilled", data_version=data_version)
        meta = dataclasses.replace(meta, extra={**meta.extra, "student": dataclasses.asdict(student)})
        student_gpt = training.trained(trainer, module).model.eval()
        version = _publish(cfg, stage, "distill", student_gpt, src, meta, bench, metrics)
        stage_dir.completed(stage.run_id)
        return version


_METHODS = {"int8": _int8, "prune": _prune, "distill": _distill}


def _meta(src: _Source, tag: str, data_version: str | None, quantization: str | None = None) -> ModelMeta:
    return ModelMeta(
        kind="causal_lm",
        stage="compress",
        data_version=data_version,
        tokenizer_sha256=src.model.meta.tokenizer_sha256,
        parent=src.uri,
        quantization=quantization,
        extra={"compression": tag, "source_stage": src.model.meta.stage},
    )


def _publish(cfg: PipelineConfig, stage, method: str, gpt, src: _Source, meta: ModelMeta, bench: _Bench,
             metrics: dict[str, float]) -> Compressed:  # fmt: skip
    """Save the folder, measure it against the original, register it beside the original with its lineage."""
    from alignops import settings

    tag = meta.extra["compression"]
    require_finite(f"compress {method}", {"model": gpt}, metrics)  # before anything is written or registered
    folder = settings.home() / "stages" / f"compress-{stage.run_id}" / "model"
    model_dir = save_model(folder, gpt, src.folder / TOKENIZER_FILE, meta)
    figures = bench.measure(gpt, model_dir)
    stage.log_metrics(metrics | figures.metrics("compress/") | _deltas(figures, bench.original))
    stage.set_tags({tracking.COMPRESSION_TAG: tag, "alignops.parent_model": src.uri})
    lineage = tracking.lineage_tags("compress", cfg, cfg.compress) | {
        tracking.COMPRESSION_TAG: tag,
        "alignops.tokenizer_hash": (src.model.meta.tokenizer_sha256 or "")[:12],
    }
    uri, version = tracking.register_model(model_dir, src.registered, lineage, src.uri)
    return Compressed(method, tag, uri, version, stage.run_id, model_dir, figures, metrics)


def _deltas(figures: Figures, original: Figures) -> dict[str, float]:
    return {
        "compress/size_ratio": figures.size_mb / original.size_mb,
        "compress/speedup": figures.tokens_per_s / original.tokens_per_s,
        "compress/test_loss_delta": figures.test_loss - original.test_loss,
        "compress/test_ppl_delta": figures.test_ppl - original.test_ppl,
    }


class _Bench:
    """What every model is measured on: the corpus test tokens, the eval prompts, the original's greedy outputs."""

    def __init__(self, cfg: PipelineConfig, tokens, prompts: list, eos: int, pad: int) -> None:
        self.cfg, self.tokens, self.prompts, self.eos, self.pad = cfg, tokens, prompts, eos, pad
        self.reference: list[list[int]] = []  # the original's greedy outputs (measure_original)
        self.original: Figures

    def measure_original(self, gpt, folder: Path) -> Figures:
        """The original's figures; its greedy outputs become the reference of agreement."""
        self.reference = self._greedy(gpt, self.prompts, stop_at_eos=True)
        self.original = self.measure(gpt, folder)
        return self.original

    @classmethod
    def build(cls, cfg: PipelineConfig, original) -> _Bench:
        import torch

        from alignops.data.loaders import encode_corpus, pad_id, special_id
        from alignops.data.tokenizer import chat_template

        cc, tok = cfg.compress, original.tokenizer
        room = original.gpt.config.block_size - cc.max_new_tokens
        if room < 1:
            raise CompressionError(
                f"compress.max_new_tokens={cc.max_new_tokens} leaves no room for a prompt in the model's "
                f"{original.gpt.config.block_size}-token context; lower it."
            )
        tokens = encode_corpus([r["text"] for r in datasets.load_split(cfg.data.data_dir, "corpus", "test")], tok)
        records = training.spread(datasets.load_split(cfg.data.data_dir, "eval_prompts", "test"), cc.eval_prompts)
        prompts = [
            torch.tensor([e.ids[-room:]]) for e in tok.encode_batch([chat_template(r["prompt"]) for r in records])
        ]
        if not prompts or len(tokens) < 2:
            raise CompressionError(f"The eval prompts or the corpus test split under {cfg.data.data_dir} are empty.")
        return cls(cfg, tokens, prompts, special_id(tok, "<|endoftext|>"), pad_id(tok))

    def measure(self, gpt, folder: Path) -> Figures:
        """The figures of one model (the docstring of this module says what each is)."""
        import math

        from alignops.evaluation.scoring import lm_loss
        from models.compression import count_parameters

        agreement, exact = _agreement(self._greedy(gpt, self.prompts, stop_at_eos=True), self.reference)
        loss, _ = lm_loss(gpt, self.tokens, batch_size=8, max_tokens=self.cfg.compress.max_lm_tokens)
        params, nonzero = count_parameters(gpt)
        size, packed = _size_on_disk(folder)
        return Figures(size / 1e6, packed / 1e6, self._tokens_per_s(gpt), params, nonzero / params, loss,
                       math.exp(loss), agreement, exact)  # fmt: skip

    def _greedy(self, gpt, prompts: list, stop_at_eos: bool) -> list[list[int]]:
        import torch

        from models.generation import GenerationConfig, generate

        config = GenerationConfig(max_new_tokens=self.cfg.compress.max_new_tokens, pad_token_id=self.pad,
                                  eos_token_id=self.eos if stop_at_eos else None)  # fmt: skip
        gpt.eval()
        out = []
        with torch.no_grad():
            for ids in prompts:  # batch 1: an int8 model's activation scale would depend on the batch
                sequences, lengths = generate(gpt, ids, None, config)
                out.append(sequences[0, ids.size(1) : ids.size(1) + int(lengths[0])].tolist())
        return out

    def _tokens_per_s(self, gpt) -> float:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # comparable across machines and models; a loaded 2-core box swings less
        try:
            self._greedy(gpt, self.prompts[:1], stop_at_eos=False)  # warm-up: allocator, kernels' first calls
            best = float("inf")
            for _ in range(2):
                start = time.perf_counter()
                self._greedy(gpt, self.prompts, stop_at_eos=False)  # every model makes max_new_tokens per prompt
                best = min(best, time.perf_counter() - start)
        finally:
            torch.set_num_threads(threads)
        return len(self.prompts) * self.cfg.compress.max_new_tokens / best


def _agreement(outputs: list[list[int]], reference: list[list[int]]) -> tuple[float, float]:
    """(mean share of positions with the same token, over the longer output; share of identical outputs)."""
    shares = []
    for a, b in zip(outputs, reference, strict=True):
        longer = max(len(a), len(b))
        shares.append(sum(x == y for x, y in zip(a, b, strict=False)) / longer if longer else 1.0)
    exact = sum(a == b for a, b in zip(outputs, reference, strict=True))
    return sum(shares) / len(shares), exact / len(outputs)


def _size_on_disk(folder: Path) -> tuple[int, int]:
    """(bytes of the weight files, bytes of the same gzip-compressed at level 6)."""
    size = packed = 0
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            data = path.read_bytes()
            size += len(data)
            packed += len(gzip.compress(data, compresslevel=6))
    return size, packed
